"""Dr. GRPO: GRPO done right (arXiv 2503.20783).

Removes GRPO's two length and difficulty biases: advantages are r - mean(r) without the std
division, and the loss sums tokens and divides by a constant (num_seqs * max_new_tokens) instead of
each response's own length.
"""

from __future__ import annotations

from typing import Optional

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig


class DrGRPOConfig(RLVRConfig):
    """Dr. GRPO's defaults (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        super().__init__(algo_class=algo_class or DrGRPO)
        self.advantage_estimator = "dr_grpo"  # r - mean(r)
        self.epsilon_pos = 0.2
        self.epsilon_neg = 0.2
        self.loss_agg_mode = "seq-mean-token-sum-norm"  # divide by a constant length


class DrGRPO(RLVRAlgorithm):
    """Dr. GRPO as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> DrGRPOConfig:
        return DrGRPOConfig()

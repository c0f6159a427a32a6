"""Dr. GRPO: GRPO done right (arXiv 2503.20783).

Removes GRPO's two length and difficulty biases: advantages are r - mean(r) without the std
division, and the loss sums tokens and divides by a constant (num_seqs * max_new_tokens) instead of
each response's own length.

The NGRPO paper has no Dr. GRPO run, so this preset takes the shared setup of its official scripts
(``official.OFFICIAL_SETUP``: 4 mini-batch steps per batch, lr 1e-6, weight decay 0.01, entropy
0.001) and keeps the two changes of the Dr. GRPO paper, which it would otherwise override: the
constant-length aggregation and no KL.
"""

from __future__ import annotations

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.official import apply_official_setup


class DrGRPOConfig(RLVRConfig):
    """Dr. GRPO's defaults (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or DrGRPO)
        apply_official_setup(self)
        self.advantage_estimator = "dr_grpo"  # r - mean(r)
        self.epsilon_pos = 0.2
        self.epsilon_neg = 0.2
        self.loss_agg_mode = "seq-mean-token-sum-norm"  # divide by a constant length


class DrGRPO(RLVRAlgorithm):
    """Dr. GRPO as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> DrGRPOConfig:
        return DrGRPOConfig()

"""GRPO: Group Relative Policy Optimization (DeepSeekMath, arXiv 2402.03300).

Advantages are rewards normalised within each prompt's group, (r - mean) / (std + 1e-6) with the
unbiased std; symmetric clipping 0.2; the loss is averaged per sequence, then over sequences. The
paper's KL penalty (beta = 0.04) is off by default, as in most current recipes, so that GRPO and
NGRPO differ only in what the papers change: set ``kl_coef=0.04`` for the original.
"""

from __future__ import annotations

from typing import Optional

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig


class GRPOConfig(RLVRConfig):
    """GRPO's defaults (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        super().__init__(algo_class=algo_class or GRPO)
        self.advantage_estimator = "grpo"
        self.epsilon_pos = 0.2
        self.epsilon_neg = 0.2
        self.loss_agg_mode = "seq-mean-token-mean"  # the original GRPO objective


class GRPO(RLVRAlgorithm):
    """GRPO as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> GRPOConfig:
        return GRPOConfig()

"""DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization (arXiv 2503.14476).

Clip-higher (epsilon_neg = 0.2, epsilon_pos = 0.28), dynamic sampling (groups whose rewards are all
equal are dropped and prompts are oversampled until ``prompts_per_step`` groups remain, at most
``max_sampling_rounds`` rounds, with a warning rather than a crash when the cap is hit), the
token-level loss, and the soft overlong penalty.
"""

from __future__ import annotations

from typing import Optional

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig


class DAPOConfig(RLVRConfig):
    """DAPO's defaults (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        super().__init__(algo_class=algo_class or DAPO)
        self.advantage_estimator = "grpo"
        self.epsilon_pos = 0.28  # clip-higher
        self.epsilon_neg = 0.2
        self.loss_agg_mode = "token-mean"
        self.group_filter = "drop_homogeneous"  # dynamic sampling
        self.max_sampling_rounds = 4
        # Soft overlong punishment over the last quarter of the default 16 new tokens (the
        # paper: a 4096-token buffer under a 20480-token maximum). Scale it with max_new_tokens.
        self.overlong_buffer = 4
        self.overlong_penalty_factor = 1.0


class DAPO(RLVRAlgorithm):
    """DAPO as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> DAPOConfig:
        return DAPOConfig()

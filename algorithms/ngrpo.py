"""NGRPO: Negative-enhanced Group Relative Policy Optimization (arXiv 2509.18851).

GRPO's group-normalised advantage is zero for every response of an all-wrong group, so those groups
teach nothing. NGRPO adds a virtual sample with the maximum reward to the group's mean and std:
an all-wrong group of 8 gets advantage -1/3 for each response, and mixed groups are recalibrated.
Asymmetric clipping (epsilon_pos = 0.24 above, epsilon_neg = 0.16 below) steadies the extra
negative push. As in the released code, groups whose responses are all correct are dropped (their
NGRPO advantage is 0 anyway) and the loss is the token mean.
"""

from __future__ import annotations

from typing import Optional

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig


class NGRPOConfig(RLVRConfig):
    """NGRPO's defaults; every field can still be overridden (see ``RLVRConfig``)."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        super().__init__(algo_class=algo_class or NGRPO)
        self.advantage_estimator = "ngrpo"  # the virtual maximum-reward sample
        self.virtual_reward = 1.0  # r_max of 0/1 rewards
        self.epsilon_pos = 0.24  # paper, section 3.3
        self.epsilon_neg = 0.16
        self.loss_agg_mode = "token-mean"
        self.group_filter = "drop_all_correct"  # the released code's filter
        self.entropy_coef = 0.001  # the released code's entropy coefficient


class NGRPO(RLVRAlgorithm):
    """NGRPO as an RLlib ``Algorithm``: ``NGRPOConfig().build_algo().train()``."""

    @classmethod
    def get_default_config(cls) -> NGRPOConfig:
        return NGRPOConfig()

"""NGRPO: Negative-enhanced Group Relative Policy Optimization (arXiv 2509.18851).

GRPO's group-normalised advantage is zero for every response of an all-wrong group, so those groups
teach nothing. NGRPO adds a virtual sample with the maximum reward to the group's mean and std:
an all-wrong group of 8 gets advantage -1/3 for each response, and mixed groups are recalibrated.
Asymmetric clipping (epsilon_pos = 0.24 above, epsilon_neg = 0.16 below) steadies the extra
negative push.

The preset reproduces the official script, nangongrui-ngr/NGRPO at e7a3804,
``train_scripts/train_qwen2.5-math-7b_ngrpo.sh``: ``adv_estimator=ngrpo`` with ``max_reward=1.0`` and
``add_max_reward_num=1`` (l. 10-11, 27-29), ``clip_ratio_low=0.16`` / ``clip_ratio_high=0.24``
(l. 16-17, 50-51), groups filtered with ``strategy=all_correct`` (l. 18-19, 30-31: all-correct groups
are dropped, their NGRPO advantage is 0 anyway), ``kl_coef=0.0`` (l. 22), plus the setup every
algorithm shares (``official.OFFICIAL_SETUP``: 4 mini-batch steps per batch, lr 1e-6, weight decay
0.01, entropy 0.001, token-mean). The paper's text (section 3.3) gives the same epsilons.
"""

from __future__ import annotations

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.official import apply_official_setup


class NGRPOConfig(RLVRConfig):
    """NGRPO's defaults; every field can still be overridden (see ``RLVRConfig``)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or NGRPO)
        apply_official_setup(self)
        self.advantage_estimator = "ngrpo"  # the virtual maximum-reward sample
        self.virtual_reward = 1.0  # max_reward
        self.num_virtual_samples = 1  # add_max_reward_num
        self.epsilon_pos = 0.24  # clip_ratio_high
        self.epsilon_neg = 0.16  # clip_ratio_low
        self.group_filter = "drop_all_correct"  # filter_groups.strategy=all_correct


class NGRPO(RLVRAlgorithm):
    """NGRPO as an RLlib ``Algorithm``: ``NGRPOConfig().build_algo().train()``."""

    @classmethod
    def get_default_config(cls) -> NGRPOConfig:
        return NGRPOConfig()

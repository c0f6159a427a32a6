"""GRPO: Group Relative Policy Optimization (DeepSeekMath, arXiv 2402.03300).

Advantages are rewards normalised within each prompt's group, (r - mean) / (std + 1e-6) with the
unbiased std; symmetric clipping 0.2.

The preset reproduces the NGRPO paper's GRPO baseline, nangongrui-ngr/NGRPO at e7a3804,
``train_scripts/train_qwen2.5-math-7b_grpo.sh``: ``adv_estimator=grpo`` (l. 19), the KL to the
reference in the loss (``use_kl_loss=True``, ``kl_loss_coef=0.001``, ``kl_loss_type=low_var_kl``,
l. 14 and 36-38: the k3 estimator clamped to [-10, 10], ``verl/trainer/ppo/core_algos.py``
l. 486-490), clip 0.2 (``clip_ratio`` in ``verl/trainer/config/ppo_trainer.yaml`` l. 34), plus the
setup every algorithm shares (``official.OFFICIAL_SETUP``: token-mean loss, entropy 0.001, 4
mini-batch steps, lr 1e-6, weight decay 0.01).

Where it differs from the original GRPO paper: DeepSeekMath averages each response's token losses
and then the responses (``loss_agg_mode="seq-mean-token-mean"``) and uses a KL coefficient of 0.04
and no entropy bonus; set those three fields for the original objective.
"""

from __future__ import annotations

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.official import apply_official_setup


class GRPOConfig(RLVRConfig):
    """GRPO's defaults as the NGRPO paper ran them (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or GRPO)
        apply_official_setup(self)
        self.advantage_estimator = "grpo"
        self.epsilon_pos = 0.2
        self.epsilon_neg = 0.2
        self.kl_coef = 0.001  # kl_loss_coef
        self.kl_estimator = "k3"  # low_var_kl
        self.kl_clamp = 10.0  # low_var_kl clamps the estimate to [-10, 10]


class GRPO(RLVRAlgorithm):
    """GRPO as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> GRPOConfig:
        return GRPOConfig()

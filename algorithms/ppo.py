"""PPO with a critic: the NGRPO paper's PPO baseline (Schulman et al., arXiv 1707.06347).

Per-token advantages by GAE from a learned value function, the clipped surrogate, and a clipped
value loss. The critic is a separate model (``ngrpo_rl.critic.Critic``, a token-classification head
on a copy of the policy's network) rather than a value head on the policy, because that is what the
official script trains: its own model initialised from the policy's weights, with its own optimizer
and a learning rate ten times the policy's, so the two never share gradients or step sizes.

The preset reproduces nangongrui-ngr/NGRPO at e7a3804, ``train_scripts/train_qwen2.5-math-7b_ppo.sh``:
``critic.optim.lr=1e-5`` and ``critic.model.path`` = the policy's (l. 44-46), the KL to the reference
in the reward with ``kl_ctrl.kl_coef=0.001`` (l. 14, 52; estimator ``kl_penalty: kl``, i.e. k1, in
``verl/trainer/config/ppo_trainer.yaml`` l. 175, applied by ``verl/trainer/ppo/ray_trainer.py``
l. 191-220), GAE with ``gamma = lam = 1`` (yaml l. 164-165) and advantages whitened over the batch
(``verl/trainer/ppo/core_algos.py`` l. 70-108), ``cliprange_value: 0.5`` (yaml l. 134), clip 0.2,
plus the setup every algorithm shares (``official.OFFICIAL_SETUP``: entropy 0.001, 4 mini-batch
steps, lr 1e-6, weight decay 0.01, token-mean). The critic's weight decay, betas and gradient clip
are the policy's, as in verl.

Where it differs from the PPO paper: that paper's control tasks discount with gamma = 0.99 and
lambda = 0.95 and have no reference policy; the per-token KL in the reward comes from RLHF practice
(InstructGPT, arXiv 2203.02155) as verl implements it.
"""

from __future__ import annotations

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.official import apply_official_setup


class PPOConfig(RLVRConfig):
    """PPO's defaults as the NGRPO paper ran them (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or PPO)
        apply_official_setup(self)
        self.advantage_estimator = "gae"  # builds the critic
        self.gamma = 1.0
        self.gae_lambda = 1.0
        self.whiten_advantages = True
        self.epsilon_pos = 0.2
        self.epsilon_neg = 0.2
        self.critic_lr = 1e-5
        self.value_clip = 0.5
        self.kl_coef = 0.001  # kl_ctrl.kl_coef
        self.kl_estimator = "k1"  # kl_penalty: kl
        self.kl_in_reward = True


class PPO(RLVRAlgorithm):
    """PPO with a critic as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> PPOConfig:
        return PPOConfig()

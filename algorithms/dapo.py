"""DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization (arXiv 2503.14476).

Clip-higher (epsilon_neg = 0.2, epsilon_pos = 0.28), dynamic sampling (groups whose responses are
all correct or all wrong are dropped and prompts are oversampled until ``prompts_per_step`` groups
remain, at most ``max_sampling_rounds`` rounds, with a warning rather than a crash when the cap is
hit), the token-level loss, and the soft overlong penalty as a reward shaper.

The preset reproduces the NGRPO paper's DAPO baseline, nangongrui-ngr/NGRPO at e7a3804,
``train_scripts/train_qwen2.5-math-7b_dapo.sh``: ``clip_ratio_low=0.2`` / ``clip_ratio_high=0.28``
(l. 12-13, 49-50), ``reward_manager=dapo`` (l. 14, 34: the overlong penalty of
``verl/workers/reward_manager/dapo.py`` l. 73-77 with ``buffer_length: 1024`` of a 3072-token
maximum, ``verl/trainer/config/ppo_trainer.yaml`` l. 155-157, so by default the last third of
``max_new_tokens``, whatever it is set to),
``filter_groups`` with ``strategy=all`` (l. 15-16, 25-26), ``kl_coef=0.0`` (l. 19: the KL loss is on
with weight 0, i.e. off), plus the setup every algorithm shares (``official.OFFICIAL_SETUP``:
entropy 0.001, 4 mini-batch steps, lr 1e-6, weight decay 0.01, token-mean).

Where it differs from the DAPO paper: the paper's overlong buffer is 4096 of 20480 tokens (a fifth)
and it trains without an entropy bonus.
"""

from __future__ import annotations

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.official import apply_official_setup


class DAPOConfig(RLVRConfig):
    """DAPO's defaults as the NGRPO paper ran them (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or DAPO)
        apply_official_setup(self)
        self.advantage_estimator = "grpo"
        self.epsilon_pos = 0.28  # clip_ratio_high
        self.epsilon_neg = 0.2  # clip_ratio_low
        self.group_filter = "drop_homogeneous"  # filter_groups.strategy=all
        self.max_sampling_rounds = 4
        self.reward_shaping = ("overlong_penalty",)  # reward_manager=dapo
        # None: buffer_length 1024 of max_response_length 3072, a third of max_new_tokens.
        self.overlong_buffer = None
        self.overlong_penalty_factor = 1.0


class DAPO(RLVRAlgorithm):
    """DAPO as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> DAPOConfig:
        return DAPOConfig()

"""PSR-NSR / W-REINFORCE ("The Surprising Effectiveness of Negative Reinforcement in LLM
Reasoning", arXiv 2506.01347).

No group statistics: a correct response gets +lambda (0.1), an incorrect one -1, so training leans
on negative samples. ``advantage_estimator="psr"`` or ``"nsr"`` trains on only the correct or only
the incorrect responses: the other samples are dropped from the batch, so they leave the token-mean
denominator too (``drop_zero_advantage_samples``, on by default for those two estimators).

The preset reproduces the NGRPO paper's PSR-NSR baseline, nangongrui-ngr/NGRPO at e7a3804,
``train_scripts/train_qwen2.5-math-7b_psr_nsr.sh``: ``advantage="weighted"`` with
``positive_advantage_weight=0.1`` (l. 10-13, 23-24, 62; the advantages of
``verl/trainer/ppo/core_algos.py`` l. 111-153), ``kl_coef=0.0`` (l. 18), PSR / NSR subsetting the
batch to the correct / incorrect samples (``verl/trainer/ppo/ray_trainer.py`` l. 1230-1240), plus
the setup every algorithm shares (``official.OFFICIAL_SETUP``: clip 0.2, entropy 0.001, 4
mini-batch steps, lr 1e-6, weight decay 0.01, token-mean). With 4 mini-batch steps the clipped
surrogate is no longer plain REINFORCE after the first step, as in the official runs.
"""

from __future__ import annotations

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.official import apply_official_setup


class PSRNSRConfig(RLVRConfig):
    """W-REINFORCE's defaults (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: type | None = None) -> None:
        super().__init__(algo_class=algo_class or PSRNSR)
        apply_official_setup(self)
        self.advantage_estimator = "w_reinforce"  # advantage="weighted"
        self.positive_weight = 0.1  # positive_advantage_weight


class PSRNSR(RLVRAlgorithm):
    """PSR-NSR (W-REINFORCE) as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> PSRNSRConfig:
        return PSRNSRConfig()

"""PSR-NSR / W-REINFORCE ("The Surprising Effectiveness of Negative Reinforcement in LLM
Reasoning", arXiv 2506.01347).

No group statistics: a correct response gets +lambda (0.1), an incorrect one -1, so training leans
on negative samples. ``advantage_estimator="psr"`` or ``"nsr"`` trains on only the correct or only
the incorrect responses. With one epoch the clipped surrogate is exactly REINFORCE.
"""

from __future__ import annotations

from typing import Optional

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig


class PSRNSRConfig(RLVRConfig):
    """W-REINFORCE's defaults (see ``RLVRConfig`` for every field)."""

    def __init__(self, algo_class: Optional[type] = None) -> None:
        super().__init__(algo_class=algo_class or PSRNSR)
        self.advantage_estimator = "w_reinforce"
        self.positive_weight = 0.1  # lambda
        self.loss_agg_mode = "token-mean"


class PSRNSR(RLVRAlgorithm):
    """PSR-NSR (W-REINFORCE) as an RLlib ``Algorithm``."""

    @classmethod
    def get_default_config(cls) -> PSRNSRConfig:
        return PSRNSRConfig()

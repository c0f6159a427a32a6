"""The algorithms, each an RLlib ``Algorithm`` with its ``AlgorithmConfig``.

Each is a preset of the shared components (``RLVRConfig``); ``ALGORITHMS`` maps a name to the
pair, for the CLI and for comparisons.
"""

from ngrpo_rl.algorithms.base import RLVRAlgorithm
from ngrpo_rl.algorithms.config import RLVRConfig
from ngrpo_rl.algorithms.dapo import DAPO, DAPOConfig
from ngrpo_rl.algorithms.dr_grpo import DrGRPO, DrGRPOConfig
from ngrpo_rl.algorithms.grpo import GRPO, GRPOConfig
from ngrpo_rl.algorithms.ngrpo import NGRPO, NGRPOConfig
from ngrpo_rl.algorithms.ppo import PPO, PPOConfig
from ngrpo_rl.algorithms.psr_nsr import PSRNSR, PSRNSRConfig

ALGORITHMS: dict[str, tuple[type[RLVRAlgorithm], type[RLVRConfig]]] = {
    "ngrpo": (NGRPO, NGRPOConfig),
    "grpo": (GRPO, GRPOConfig),
    "dapo": (DAPO, DAPOConfig),
    "dr_grpo": (DrGRPO, DrGRPOConfig),
    "psr_nsr": (PSRNSR, PSRNSRConfig),
    "ppo": (PPO, PPOConfig),
}

__all__ = [
    "ALGORITHMS",
    "DAPO",
    "GRPO",
    "NGRPO",
    "PPO",
    "PSRNSR",
    "DAPOConfig",
    "DrGRPO",
    "DrGRPOConfig",
    "GRPOConfig",
    "NGRPOConfig",
    "PPOConfig",
    "PSRNSRConfig",
    "RLVRAlgorithm",
    "RLVRConfig",
]

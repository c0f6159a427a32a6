"""ngrpo_rl: reinforcement learning with verifiable rewards for math reasoning.

The core modules (``ngrpo_rl.advantages``, ``ngrpo_rl.losses``, ``ngrpo_rl.metrics``, ...) import
only torch. The names below are re-exported lazily (PEP 562), so ``import ngrpo_rl`` and importing a
core module never start Ray, transformers or gymnasium.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access.
_LAZY_EXPORTS = {
    "NGRPO": "ngrpo_rl.algorithms",
    "NGRPOConfig": "ngrpo_rl.algorithms",
    "GRPO": "ngrpo_rl.algorithms",
    "GRPOConfig": "ngrpo_rl.algorithms",
    "DAPO": "ngrpo_rl.algorithms",
    "DAPOConfig": "ngrpo_rl.algorithms",
    "DrGRPO": "ngrpo_rl.algorithms",
    "DrGRPOConfig": "ngrpo_rl.algorithms",
    "PSRNSR": "ngrpo_rl.algorithms",
    "PSRNSRConfig": "ngrpo_rl.algorithms",
    "PPO": "ngrpo_rl.algorithms",
    "PPOConfig": "ngrpo_rl.algorithms",
    "load_problems": "ngrpo_rl.envs",
    "score": "ngrpo_rl.envs",
}

__all__ = sorted(_LAZY_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'ngrpo_rl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

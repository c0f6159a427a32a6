"""Sampling responses with their log-probs: the backend interface, the Hugging Face backend, and
(lazily, since it needs Ray) :class:`GenerationPool`, which runs backends in Ray actors.

    from ngrpo_rl.generation import SamplingParams, create_backend
    backend = create_backend("hf", "/path/to/model")
    out = backend.generate(["1+2="], SamplingParams(n=8, temperature=1.0))
"""

from __future__ import annotations

from typing import Any

from ngrpo_rl.generation.backend import GenerationBackend, backends, create_backend
from ngrpo_rl.generation.hf import HFBackend
from ngrpo_rl.generation.types import GenerationOutput, SamplingParams, derive_seed
from ngrpo_rl.generation.vllm_backend import VLLMBackend  # noqa: F401 - registers "vllm"
from ngrpo_rl.models.forward import pad_batch, response_logprobs, token_logprobs

# GenerationPool is left out of __all__ so that a star import never imports Ray.
__all__ = [
    "GenerationBackend",
    "GenerationOutput",
    "HFBackend",
    "SamplingParams",
    "backends",
    "create_backend",
    "derive_seed",
    "pad_batch",
    "response_logprobs",
    "token_logprobs",
]


def __getattr__(name: str) -> Any:
    if name == "GenerationPool":  # imports Ray, so only on first use
        from ngrpo_rl.generation.workers import GenerationPool

        return GenerationPool
    raise AttributeError(f"module 'ngrpo_rl.generation' has no attribute {name!r}")

"""The generation backend interface and its registry.

A backend owns one copy of the policy and turns prompts into sampled responses with their
log-probs. Three methods are the whole contract, so a vLLM backend (or any other engine) can be
registered beside the Hugging Face one::

    @backends.register("my_engine")
    class MyBackend(GenerationBackend):
        def __init__(self, model_name_or_path, *, device="cpu", dtype=None, seed=0, **options): ...
        def generate(self, prompts, params): ...
        def load_state_dict(self, state_dict): ...
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl.generation.types import GenerationOutput, SamplingParams
from ngrpo_rl.registry import Registry


class GenerationBackend(abc.ABC):
    """One copy of the policy that samples responses.

    Constructor: ``(model_name_or_path, *, device="cpu", dtype=None, seed=0, **options)`` where
    ``model_name_or_path`` is a local Hugging Face directory, ``dtype`` the weights' dtype (None:
    as stored), ``seed`` starts the backend's own random stream (used when a call gives no seed),
    and ``options`` are backend-specific (e.g. ``batch_size``).

    Attributes:
        tokenizer: the model's tokenizer (prompts are encoded with
            :func:`ngrpo_rl.models.tokenizer.encode_prompts`).
    """

    tokenizer: Any

    @abc.abstractmethod
    def __init__(
        self,
        model_name_or_path: str,
        *,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        seed: int = 0,
        **options: Any,
    ) -> None: ...

    @abc.abstractmethod
    def generate(self, prompts: list[str], params: SamplingParams) -> GenerationOutput:
        """``params.n`` responses for each prompt, flattened prompt-major."""

    @abc.abstractmethod
    def load_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Replaces the policy weights (weight sync after a learner update); names as in
        ``model.state_dict()``, any dtype or device."""


backends: Registry[type[GenerationBackend]] = Registry("generation backend")


def create_backend(name: str, model_name_or_path: str, **kwargs: Any) -> GenerationBackend:
    """Instantiates the backend registered as ``name`` (``kwargs`` go to its constructor)."""
    return backends.get(name)(model_name_or_path, **kwargs)

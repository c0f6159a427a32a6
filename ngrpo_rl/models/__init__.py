"""Models: the character-level tokenizer, tiny causal LMs, the supervised warm start, and saving /
loading Hugging Face directories (safetensors only, offline)."""

from __future__ import annotations

from ngrpo_rl.models.io import ModelLoadError, load_model, load_tokenizer, save_model
from ngrpo_rl.models.tiny import build_tiny_model, count_parameters
from ngrpo_rl.models.tokenizer import (
    char_tokenizer,
    encode_completion,
    encode_completions,
    encode_prompts,
)
from ngrpo_rl.models.warm_start import warm_start

__all__ = [
    "ModelLoadError",
    "build_tiny_model",
    "char_tokenizer",
    "count_parameters",
    "encode_completion",
    "encode_completions",
    "encode_prompts",
    "load_model",
    "load_tokenizer",
    "save_model",
    "warm_start",
]

"""Tiny causal language models built from a transformers config (no weights to download).

:func:`build_tiny_model` returns a randomly initialised Qwen2 or Llama model of about 0.3 to 3 M
parameters with tied input and output embeddings, sized for a character-level vocabulary; it is an
ordinary ``PreTrainedModel``, so everything downstream treats it exactly like a real checkpoint.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForCausalLM,
    GenerationConfig,
    LlamaConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

ARCHITECTURES = {"qwen2": Qwen2Config, "llama": LlamaConfig}


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase,
    *,
    architecture: str = "qwen2",
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    intermediate_size: int | None = None,
    max_position_embeddings: int = 256,
    seed: int = 0,
) -> PreTrainedModel:
    """A randomly initialised causal LM for ``tokenizer`` (fp32, eval mode, embeddings tied).

    Args:
        tokenizer: supplies the vocabulary size and the pad / bos / eos ids.
        architecture: ``"qwen2"`` or ``"llama"``.
        hidden_size: width of the residual stream; must be divisible by ``num_heads``.
        num_layers: number of transformer blocks.
        num_heads: attention heads (no grouped-query attention: key/value heads = ``num_heads``).
        intermediate_size: width of the SwiGLU MLP; defaults to ``4 * hidden_size``.
        max_position_embeddings: longest prompt + response the model is meant for.
        seed: initialisation seed (the caller's global RNG is left untouched).

    The defaults give about 1.1 M parameters.
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}; available: {', '.join(sorted(ARCHITECTURES))}"
        )
    if hidden_size % num_heads:
        raise ValueError(
            f"hidden_size ({hidden_size}) must be divisible by num_heads ({num_heads})"
        )
    special = {
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }
    if special["eos_token_id"] is None or special["pad_token_id"] is None:
        raise ValueError("the tokenizer needs both an eos and a pad token")
    config = ARCHITECTURES[architecture](
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        **special,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(**special)
    return model.eval()


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())

"""Shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real benchmark files beside the repository (``../shared/data``), or skip.

    ``NGRPO_RL_SHARED_DATA`` points elsewhere. Nothing is ever copied into the repository.
    """
    configured = os.environ.get("NGRPO_RL_SHARED_DATA")
    path = (
        Path(configured) if configured else Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    if not path.is_dir():
        pytest.skip(
            f"real benchmark files not found at {path} (set NGRPO_RL_SHARED_DATA to their folder)"
        )
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """An untrained tiny Qwen2 (hidden 32, one layer, seed 0) saved as a Hugging Face folder. Tests
    only read it."""
    from ngrpo_rl.models import build_tiny_model, char_tokenizer, save_model

    path = tmp_path_factory.mktemp("tiny") / "model"
    tokenizer = char_tokenizer()
    save_model(build_tiny_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2, seed=0), tokenizer, path)
    return str(path)

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

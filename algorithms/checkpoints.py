"""Checkpoint pieces of the algorithms: atomic folders and the learner / critic components."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.rllib.utils.checkpoints import Checkpointable

from ngrpo_rl.state_io import replace_directory


def write_atomically(path: str | os.PathLike, write: Callable[[str], Any]) -> str:
    """Runs ``write(tmp)`` on a temporary sibling folder, then puts it in place of ``path``
    (``state_io.replace_directory``), so a crash mid-save never leaves a half-written checkpoint at
    ``path`` and the previous one is deleted only after the new one is in place."""
    target = Path(path).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(str(tmp))
        replace_directory(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


class FolderCheckpoint(Checkpointable):
    """Checkpoints a learner or critic through its own ``save(path)`` / ``load(path)``: a Hugging
    Face model folder plus safetensors and JSON state, no pickle."""

    def __init__(self, owner: Any) -> None:
        self.owner = owner

    def get_state(self, components=None, *, not_components=None, **kwargs) -> dict:
        return {}

    def set_state(self, state: dict) -> None:
        pass

    def get_ctor_args_and_kwargs(self):
        return (), {}

    def get_checkpointable_components(self) -> list:
        return []

    def save_to_path(self, path=None, *, state=None, filesystem=None, use_msgpack=False) -> str:
        self.owner.save(path)
        return str(path)

    def restore_from_path(self, path, *, component=None, filesystem=None, **kwargs) -> None:
        self.owner.load(path)

"""Checkpoint helpers shared by the learner and the critic: tensors go to safetensors, the rest to JSON.

Nothing here pickles. An optimizer's ``state_dict`` is split into flat tensors
(``state/<param index>/<name>``, for a safetensors file) and its ``param_groups`` (JSON); Python's
``random`` state becomes a JSON list; :func:`atomic_write` writes any file through a temporary
sibling and renames it into place, so a reader sees either the old file or the new one, and
:func:`replace_directory` does the same for a folder written beside its target.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Union

import torch

PathLike = Union[str, "os.PathLike[str]"]
RandomState = tuple[int, tuple[int, ...], float | None]


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Splits ``optimizer.state_dict()`` into ``(tensors, meta)`` for safetensors + JSON.

    ``tensors`` maps ``state/<param index>/<name>`` (e.g. ``state/0/exp_avg``, ``state/0/step``) to
    contiguous CPU tensors; Python numbers in the state become 0-d tensors. ``meta`` is
    ``{"param_groups": [...]}`` made JSON-safe with :func:`jsonable`. Sharded (DTensor) states are
    gathered whole, so under FSDP2 every rank must call it.
    Inverse: :func:`optimizer_from_tensors`.
    """
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, param_state in state["state"].items():
        for name, value in param_state.items():
            value = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            if hasattr(value, "full_tensor"):  # a sharded (FSDP2) state: a collective gather
                value = value.full_tensor()
            tensors[f"state/{index}/{name}"] = value.detach().to("cpu").contiguous()
    return tensors, {"param_groups": jsonable(state["param_groups"])}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer,
    tensors: Mapping[str, torch.Tensor],
    meta: Mapping[str, Any],
) -> None:
    """Loads into ``optimizer`` what :func:`optimizer_to_tensors` produced.

    Keys of ``tensors`` not starting with ``state/`` are ignored (a checkpoint file may also hold RNG
    states). ``betas`` lists from JSON become tuples again. ``Optimizer.load_state_dict`` moves the
    state to each parameter's device.
    """
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith("state/"):
            continue
        _, index, name = key.split("/", 2)
        state.setdefault(int(index), {})[name] = value
    param_groups = [dict(group) for group in meta["param_groups"]]
    for group in param_groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": param_groups})


def random_state_to_json(state: RandomState) -> list[Any]:
    """``random.getstate()`` as a JSON-safe list ``[version, [internal...], gauss_next]``."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def random_state_from_json(state: list[Any]) -> RandomState:
    """The inverse of :func:`random_state_to_json`: a tuple ``random.setstate`` accepts."""
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def jsonable(value: Any) -> Any:
    """``value`` with dict keys as strings, tuples as lists and unknown objects as ``str(obj)``."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def atomic_write(target: PathLike, write: Callable[[str], Any]) -> None:
    """Calls ``write(tmp_path)`` on a temporary file beside ``target``, then renames it to ``target``.

    The temporary file lives in the same folder (so the rename is atomic) and is removed if
    ``write`` raises. The folder must exist.
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def replace_directory(source: PathLike, target: PathLike) -> None:
    """Renames ``source`` to ``target``; an existing ``target`` is moved aside first, then deleted.

    ``os.replace`` cannot replace a non-empty directory, so there is a moment in which ``target``
    does not exist; readers then fail cleanly rather than reading a mix of two versions, and the
    old one is deleted only once the new one is in place.
    """
    source, target = Path(source), Path(target)
    if not target.exists():
        os.replace(source, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.retired-", dir=target.parent))
    os.replace(target, retired / target.name)
    os.replace(source, target)
    shutil.rmtree(retired, ignore_errors=True)

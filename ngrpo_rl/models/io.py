"""Saving and loading models as ordinary Hugging Face directories (safetensors only, offline).

:func:`save_model` writes the model, its generation config and its tokenizer to a temporary
directory next to the target and renames it into place, so a reader never sees a half-written
model. :func:`load_model` opens any local Hugging Face causal-LM directory with
``AutoModelForCausalLM`` / ``AutoTokenizer``, never touches the network, never unpickles weights,
and names the directory in every error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.utils import logging as transformers_logging

from ngrpo_rl.state_io import replace_directory

PathLike = Union[str, "os.PathLike[str]"]

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")


class ModelLoadError(OSError):
    """A model directory is missing, incomplete or unreadable; the message names the path."""


@contextlib.contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """Hides transformers' per-file progress bars ("Loading weights", "Writing model shards")."""
    was_enabled = transformers_logging.is_progress_bar_enabled()
    if was_enabled:
        transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    path: PathLike,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> str:
    """Writes ``model`` and ``tokenizer`` to the directory ``path`` atomically; returns the path.
    ``state_dict`` replaces the model's own weights (the gathered weights of a sharded model).

    The files (``config.json``, ``generation_config.json``, ``model.safetensors``, the tokenizer
    files) are written to a temporary sibling directory which then replaces ``path``. An existing
    directory at ``path`` is replaced as a whole.
    """
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"cannot save a model to {target}: it exists and is not a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.saving-", dir=target.parent))
    try:
        with quiet_progress_bars():
            model.save_pretrained(staging, state_dict=state_dict)
            tokenizer.save_pretrained(staging)
        pickled = [p.name for p in staging.iterdir() if p.name.endswith(PICKLED_SUFFIXES)]
        if pickled or not any((staging / name).exists() for name in WEIGHT_FILES):
            raise RuntimeError(
                f"save_pretrained did not write safetensors weights to {staging} (found {pickled})"
            )
        replace_directory(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return str(target)


def check_model_dir(path: PathLike) -> Path:
    """Returns ``path`` as a ``Path`` if it looks like a loadable model directory, else raises.

    A loadable directory has ``config.json`` and safetensors weights (one file or a sharded index).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ModelLoadError(
            f"no model directory at {str(path)!r} (it does not exist or is a file)"
        )
    missing = []
    if not (directory / "config.json").is_file():
        missing.append("config.json")
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        pickled = sorted(p.name for p in directory.iterdir() if p.name.endswith(PICKLED_SUFFIXES))
        hint = (
            f"; it holds pickled weights ({', '.join(pickled)}), which are never loaded"
            if pickled
            else ""
        )
        missing.append(f"model.safetensors{hint}")
    if missing:
        raise ModelLoadError(
            f"{str(path)!r} is not a complete Hugging Face model directory: "
            f"missing {', '.join(missing)}"
        )
    return directory


def load_model(
    path: PathLike,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Loads ``(model, tokenizer)`` from a local Hugging Face directory, in eval mode.

    Args:
        path: a directory written by :func:`save_model` or any ``save_pretrained`` causal LM.
        dtype: parameter dtype (``torch.float32``, ``"bfloat16"``, ...); None keeps the dtype
            stored in the checkpoint.
        device: where to put the model.

    The tokenizer pads on the left; if it has no pad token, eos is used as pad.
    Raises :class:`ModelLoadError` (naming ``path``) if the directory is missing, incomplete or
    corrupt, or if any model weight is absent from the checkpoint.
    """
    directory = check_model_dir(path)
    tokenizer = load_tokenizer(directory)
    try:
        with quiet_progress_bars():
            model, info = AutoModelForCausalLM.from_pretrained(
                directory,
                dtype=dtype if dtype is not None else "auto",
                use_safetensors=True,
                local_files_only=True,
                output_loading_info=True,
            )
    except Exception as error:  # transformers, safetensors and json raise many unrelated types
        raise ModelLoadError(f"could not load the model in {str(path)!r}: {error}") from error
    if info.get("missing_keys"):
        raise ModelLoadError(
            f"the checkpoint in {str(path)!r} lacks weights {sorted(info['missing_keys'])[:5]}; "
            "it is incomplete or was written for another architecture"
        )
    return model.to(device).eval(), tokenizer


def load_tokenizer(path: PathLike) -> PreTrainedTokenizerBase:
    """The tokenizer of a local model directory, padding on the left, eos as pad if it has none."""
    try:
        with quiet_progress_bars():
            tokenizer = AutoTokenizer.from_pretrained(check_model_dir(path), local_files_only=True)
    except ModelLoadError:
        raise
    except Exception as error:
        raise ModelLoadError(f"could not load the tokenizer in {str(path)!r}: {error}") from error
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer

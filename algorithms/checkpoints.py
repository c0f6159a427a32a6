"""Checkpoint pieces of the algorithms: atomic folders, the manifest, the state file, and the
learner / critic components.

An algorithm checkpoint is a folder:

- ``ngrpo_rl_checkpoint.json`` (:class:`Manifest`, JSON): the format version, the algorithm class
  and the shape of its models, read and checked before anything else is loaded;
- ``algorithm_state.msgpack`` (msgpack): the iteration, the counters, the data stream's position
  and the groups a filter carried over (:func:`write_state` / :func:`read_state`);
- ``learner/`` and, with a critic, ``critic/``: Hugging Face folders plus safetensors and JSON
  (``Learner.save``, ``Critic.save``); ``learner/policy`` opens with
  ``AutoModelForCausalLM.from_pretrained``;
- RLlib's ``rllib_checkpoint.json`` (JSON) and ``class_and_ctor_args.pkl`` (a pickle of the
  algorithm class and its config, which RLlib always writes; only ``Algorithm.from_checkpoint``
  reads it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray.rllib.utils.checkpoints import Checkpointable

from ngrpo_rl.state_io import atomic_write, replace_directory

MANIFEST_FILE = "ngrpo_rl_checkpoint.json"
STATE_FILE = "algorithm_state.msgpack"
FORMAT_VERSION = 1
"""The checkpoint layout this code writes and reads; bumped when the layout changes."""

# The model config fields that fix the shape of the weights (HF ``config.json`` keys).
MODEL_SHAPE_KEYS = (
    "architectures",
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "vocab_size",
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be restored here: unreadable, or written for another algorithm,
    another model shape or a newer format. The message names the path, the reason and the fix."""


# -- atomic folders ----------------------------------------------------------------------------


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


# -- the manifest ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """What a checkpoint is, in JSON: checked before any of its state is loaded.

    Attributes:
        format_version: the checkpoint layout (:data:`FORMAT_VERSION` when written).
        algorithm: the algorithm's class name, e.g. ``"NGRPO"``.
        algorithm_bases: the names of that class and its base classes, most derived first (so
            ``RLVRAlgorithm.from_checkpoint`` accepts any preset's checkpoint).
        models: the shape of each trained model (``"policy"``, ``"critic"``): the
            :data:`MODEL_SHAPE_KEYS` of its Hugging Face config.
        ngrpo_rl_version: the package version that wrote it.
        iteration: training iterations done when it was written.
    """

    format_version: int
    algorithm: str
    algorithm_bases: list[str]
    models: dict[str, dict[str, Any]]
    ngrpo_rl_version: str
    iteration: int = 0


def model_shape(model_dir: str | os.PathLike | None) -> dict[str, Any]:
    """The :data:`MODEL_SHAPE_KEYS` of the Hugging Face folder's ``config.json`` ({} without one)."""
    if model_dir is None:
        return {}
    config_file = Path(model_dir) / "config.json"
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return {}
    return {key: config[key] for key in MODEL_SHAPE_KEYS if key in config}


def write_manifest(path: str | os.PathLike, manifest: Manifest) -> None:
    """Writes ``path/ngrpo_rl_checkpoint.json`` (atomically)."""
    text = json.dumps(asdict(manifest), indent=1)
    atomic_write(Path(path) / MANIFEST_FILE, lambda tmp: Path(tmp).write_text(text))


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The manifest of the checkpoint at ``path``.

    Raises:
        CheckpointError: no manifest (not an ngrpo_rl checkpoint), an unreadable one, or one of a
            newer format than this code reads.
    """
    manifest_file = Path(path) / MANIFEST_FILE
    if not manifest_file.is_file():
        raise CheckpointError(
            f"{path} is not an ngrpo_rl checkpoint: it has no {MANIFEST_FILE} (every checkpoint "
            f"that algo.save_to_path writes has one); pass the folder save_to_path returned"
        )
    try:
        data = json.loads(manifest_file.read_text())
        version = int(data["format_version"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"unreadable checkpoint manifest {manifest_file}: {error}; the checkpoint is damaged, "
            f"restore an earlier one"
        ) from error
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"the checkpoint at {path} has format version {version}, newer than this ngrpo_rl "
            f"reads ({FORMAT_VERSION}); it was written by ngrpo_rl "
            f"{data.get('ngrpo_rl_version', '?')}: upgrade ngrpo_rl to restore it"
        )
    try:
        return Manifest(
            format_version=version,
            algorithm=str(data["algorithm"]),
            algorithm_bases=[str(name) for name in data["algorithm_bases"]],
            models={str(k): dict(v) for k, v in data["models"].items()},
            ngrpo_rl_version=str(data["ngrpo_rl_version"]),
            iteration=int(data.get("iteration", 0)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"unreadable checkpoint manifest {manifest_file}: missing or malformed field {error}; "
            f"the checkpoint is damaged, restore an earlier one"
        ) from error


def check_algorithm(manifest: Manifest, path: str | os.PathLike, algorithm: type) -> None:
    """Refuses to restore the checkpoint at ``path`` into an instance of ``algorithm`` unless it
    was written by that class or one of its base classes (by name)."""
    own = [cls.__name__ for cls in algorithm.__mro__]
    if manifest.algorithm not in own:
        raise CheckpointError(
            f"the checkpoint at {path} is a {manifest.algorithm} checkpoint and cannot be restored "
            f"into {algorithm.__name__}: restore it into a {manifest.algorithm} algorithm "
            f"({manifest.algorithm}.from_checkpoint(path)), or start {algorithm.__name__} afresh"
        )


def check_loadable_as(manifest: Manifest, path: str | os.PathLike, cls: type) -> None:
    """Refuses ``cls.from_checkpoint(path)`` unless the checkpoint's class is ``cls`` or a
    subclass of it (``RLVRAlgorithm.from_checkpoint`` takes any preset's checkpoint)."""
    if cls.__name__ not in manifest.algorithm_bases:
        raise CheckpointError(
            f"the checkpoint at {path} is a {manifest.algorithm} checkpoint, not a "
            f"{cls.__name__} one: use {manifest.algorithm}.from_checkpoint(path) (or "
            f"Algorithm.from_checkpoint(path))"
        )


def check_models(
    manifest: Manifest, path: str | os.PathLike, models: Mapping[str, Mapping[str, Any]]
) -> None:
    """Refuses a checkpoint whose models have another shape than ``models`` (name -> shape); a
    field missing on either side is not compared."""
    for name, shape in models.items():
        saved = manifest.models.get(name)
        if saved is None:
            if shape:
                raise CheckpointError(
                    f"the checkpoint at {path} holds no {name} model, but this algorithm trains "
                    f"one: restore it into an algorithm configured like the one that wrote it"
                )
            continue
        differ = {
            key: (saved[key], shape[key])
            for key in MODEL_SHAPE_KEYS
            if key in saved and key in shape and saved[key] != shape[key]
        }
        if differ:
            details = ", ".join(f"{key} {old!r} (this config: {new!r})" for key, (old, new) in differ.items())
            raise CheckpointError(
                f"the checkpoint at {path} holds a {name} model of another shape: {details}; "
                f"configure model_name_or_path with the model the checkpoint was trained from"
            )


# -- the algorithm's own state -----------------------------------------------------------------


def write_state(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Writes the algorithm's own state (plain numbers, strings, lists and dicts) to
    ``path/algorithm_state.msgpack``, the file RLlib reads for msgpack checkpoints."""
    import msgpack

    try:
        data = msgpack.packb(dict(state), use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as error:
        raise TypeError(
            f"the algorithm state holds a value msgpack cannot write ({error}); get_state() must "
            f"return plain numbers, strings, lists and dicts"
        ) from error
    atomic_write(Path(path) / STATE_FILE, lambda tmp: Path(tmp).write_bytes(data))


def read_state(path: str | os.PathLike) -> dict[str, Any]:
    """The state :func:`write_state` wrote; a missing or damaged file raises
    :class:`CheckpointError` naming it."""
    import msgpack

    state_file = Path(path) / STATE_FILE
    try:
        state = msgpack.unpackb(state_file.read_bytes(), raw=False, strict_map_key=False)
    except (OSError, ValueError, msgpack.UnpackException) as error:
        raise CheckpointError(
            f"unreadable algorithm state {state_file}: {error}; the checkpoint is damaged, "
            f"restore an earlier one"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"unreadable algorithm state {state_file}: not a mapping")
    return state


def files_that_pickle(path: str | os.PathLike) -> list[Path]:
    """The files under ``path`` in a pickle format (``.pkl``, ``.pickle``, ``.bin``, ``.pt``,
    ``.pth``), for tests and audits."""
    suffixes = (".pkl", ".pickle", ".bin", ".pt", ".pth")
    return sorted(p for p in Path(path).rglob("*") if p.is_file() and p.name.endswith(suffixes))


# -- components --------------------------------------------------------------------------------


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


def checkpoint_folders(run_dir: str | os.PathLike, prefix: str = "checkpoint_") -> list[Path]:
    """The complete checkpoints ``run_dir/<prefix>NNNNNN`` (those with a manifest), oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for child in run_dir.iterdir():
        number = child.name.removeprefix(prefix)
        if child.name.startswith(prefix) and number.isdigit() and (child / MANIFEST_FILE).is_file():
            found.append((int(number), child))
    return [p for _, p in sorted(found)]


def prune_checkpoints(folders: Iterable[Path], keep: int) -> list[Path]:
    """Deletes all but the last ``keep`` of ``folders`` (oldest first); returns the deleted ones."""
    folders = list(folders)
    doomed = folders[: max(0, len(folders) - keep)]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed

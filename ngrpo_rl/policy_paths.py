"""Which Hugging Face folder a model argument names, checkpoints and run folders included.

``ngrpo-rl eval MODEL`` accepts, in this order:

- a checkpoint folder of this library: its policy, ``<checkpoint>/learner/policy``;
- the run folder of ``ngrpo-rl train``: the policy of its last complete ``checkpoint_NNNNNN``;
- anything ``model_name_or_path`` accepts: a Hugging Face model folder, a Hub id in the local
  Hugging Face cache (never downloaded), or ``ngrpo_rl/tiny-arithmetic`` (the bundled model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

POLICY_SUBFOLDER = Path("learner") / "policy"
"""Where a checkpoint keeps its policy, a plain Hugging Face folder."""
CHECKPOINT_PREFIX = "checkpoint_"
"""A run folder's checkpoints are ``checkpoint_NNNNNN`` (the iteration, six digits)."""
JOB_FILE = "job.json"
# ngrpo_rl.algorithms.checkpoints.MANIFEST_FILE, written last by a save (so its presence marks a
# complete checkpoint); not imported, since ngrpo_rl.algorithms imports Ray.
MANIFEST_FILE = "ngrpo_rl_checkpoint.json"


@dataclass(frozen=True)
class ResolvedPolicy:
    """A model argument resolved to a folder.

    Attributes:
        path: the Hugging Face folder to load.
        checkpoint: the checkpoint folder it came from, or None for a plain model.
    """

    path: str
    checkpoint: str | None = None


def resolve_policy(model: str | os.PathLike) -> ResolvedPolicy:
    """The folder that ``model`` designates (see the module docstring), never touching the network.

    Raises:
        FileNotFoundError: a run folder without a complete checkpoint yet, or (a
            ``ModelNotFoundError``) a value that is neither a folder nor a cached Hub id.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if (path / POLICY_SUBFOLDER).is_dir():
            return ResolvedPolicy(str((path / POLICY_SUBFOLDER).resolve()), str(path.resolve()))
        checkpoints = _complete_checkpoints(path)
        if checkpoints:
            last = checkpoints[-1]
            return ResolvedPolicy(str((last / POLICY_SUBFOLDER).resolve()), str(last.resolve()))
        if (path / JOB_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is a run folder of ngrpo-rl train without a complete "
                f"{CHECKPOINT_PREFIX}NNNNNN yet; wait for its first checkpoint (--checkpoint-every) "
                "or pass a model folder"
            )
        return ResolvedPolicy(str(path.resolve()))
    from ngrpo_rl.algorithms.default_model import resolve_model_path

    return ResolvedPolicy(str(Path(resolve_model_path(model)).resolve()))


def _complete_checkpoints(run_dir: Path) -> list[Path]:
    """``run_dir``'s checkpoints that hold a policy and a manifest, oldest first."""
    found = []
    for child in run_dir.iterdir():
        number = child.name.removeprefix(CHECKPOINT_PREFIX)
        if (
            child.name.startswith(CHECKPOINT_PREFIX)
            and number.isdigit()
            and (child / MANIFEST_FILE).is_file()
            and (child / POLICY_SUBFOLDER).is_dir()
        ):
            found.append((int(number), child))
    return [child for _, child in sorted(found)]

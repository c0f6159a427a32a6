"""The options ``ngrpo-rl compare`` and ``ngrpo-rl sweep`` share: the trials' settings, where
outputs go, and how Tune runs them."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser, *, iterations: int, seeds: Sequence[int], run_dir: str) -> None:
    parser.add_argument("--iterations", type=int, default=iterations,
                        help=f"training iterations per trial (default {iterations})")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(seeds),
                        help=f"seeds (default {' '.join(map(str, seeds))})")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a field of the shared job (docs/CONFIG.md), e.g. --set prompts_per_step=16 "
        "--set evaluation_num_problems=64; applied on top of the main job and the study's settings",
    )
    parser.add_argument("--output-dir", type=Path, default=Path(run_dir),
                        help=f"Tune's folder for the trials and their checkpoints (default {run_dir}); "
                        "rerunning the same command there resumes an interrupted run")
    parser.add_argument("--results-dir", type=Path, default=Path("docs/results"),
                        help="where the trial records and figures go (default docs/results)")
    parser.add_argument("--report", type=Path, default=Path("docs/results.md"),
                        help="the markdown report (default docs/results.md)")
    parser.add_argument("--checkpoint-every", type=int, default=25, metavar="N",
                        help="checkpoint each trial every N iterations and at its end (default 25)")
    parser.add_argument("--max-failures", type=int, default=1,
                        help="restarts of a trial whose process dies, from its last checkpoint (default 1)")
    parser.add_argument("--max-concurrent", type=int, metavar="N",
                        help="run at most N trials at once (default: as many as the CPUs allow)")


def shared_job(args: argparse.Namespace) -> dict[str, Any]:
    """The main job with the study's settings and the ``--set`` overrides."""
    from ngrpo_rl import cli, settings
    from ngrpo_rl.study.jobs import study_job

    overrides: dict[str, Any] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        try:
            overrides[key] = settings.parse_value(key, value) if key in settings.SETTINGS_BY_NAME else cli.parse_value(value)
        except ValueError as error:
            raise SystemExit(f"--set {item}: {error}") from None
    try:
        return study_job(cli.MAIN_JOB, overrides)
    except ValueError as error:
        raise SystemExit(str(error)) from None


def run_options(args: argparse.Namespace) -> dict[str, Any]:
    """The spec keywords every experiment takes from the shared options."""
    return {
        "seeds": tuple(args.seeds),
        "iterations": args.iterations,
        "checkpoint_every": args.checkpoint_every,
        "max_failures": args.max_failures,
        "max_concurrent_trials": args.max_concurrent,
    }


def command_line() -> str:
    """The command as typed (``ngrpo-rl compare ...``), for the report."""
    return " ".join(["ngrpo-rl", *(shlex.quote(a) for a in sys.argv[1:])])

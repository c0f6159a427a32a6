"""``ngrpo-rl``: the command line.

    ngrpo-rl train                       the main job: NGRPO on the bundled arithmetic task
    ngrpo-rl train --algorithm grpo --set lr=5e-5 --iterations 10
    ngrpo-rl train --config run.yaml     a YAML file of the same keys (see --help)
    ngrpo-rl train --output-dir RUN_DIR --checkpoint-every 25 --keep-checkpoints 3
    ngrpo-rl train --resume RUN_DIR      continue an interrupted run from its last checkpoint
    ngrpo-rl components                  the advantage table of DESIGN.md section 3 for G = 8
    ngrpo-rl algorithms                  the algorithms and their preset components
    ngrpo-rl eval MODEL BENCHMARK        held-out pass@k and Pass@k AUC, the paper's protocol
    ngrpo-rl plot A.json B.json          pass@k curves of several evaluations on one PNG
    ngrpo-rl compare                     the comparison study (variants x seeds) -> docs/results.md
    ngrpo-rl sweep                       the epsilon_pos x epsilon_neg sweep, with a heatmap

Commands beyond training live in their own modules (``COMMANDS``), each with ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``, which import their heavy dependencies only when run.
The CLI sits at the edge of the package: it may import everything, nothing imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ngrpo_rl import settings

# The embedded main job: the bundled tiny model (warm-started on first use), NGRPO on the
# arithmetic task's two-digit levels (3: dd+-d, 4: dd+-dd), where the warm start's pass@1 is far
# below its pass@8 and about half of all groups are all wrong, the regime NGRPO is for. The train
# split is large (10,000 problems) so that RL improves arithmetic rather than memorising answers;
# levels 1-2 hold too few distinct problems for that. About 3 minutes of RL on 2 CPU cores.
MAIN_JOB: dict[str, Any] = {
    "algorithm": "ngrpo",
    "iterations": 300,
    "env": "ngrpo_rl/Arithmetic-v0",
    "env_config": {"levels": [3, 4], "seed": 0, "num_problems": 10000},
    "seed": 0,
    "group_size": 8,
    "prompts_per_step": 64,
    "lr": 1e-4,
    "num_epochs": 1,
    "minibatch_size": 256,
    "max_new_tokens": 8,
    "temperature": 1.0,
    # Held-out pass@k (TensorBoard scalars and the curve as an image) at iterations 100, 200, 300:
    # about 1 s each on 2 CPU cores.
    "evaluation_interval": 100,
    "evaluation_num_problems": 300,
    "evaluation_samples_per_problem": 16,
    "evaluation_ks": [1, 2, 4, 8, 16],
    "evaluation_temperature": 1.0,
    "evaluation_top_p": 1.0,
    "weight_decay": 0.0,  # the main job's own tuning, whatever the NGRPO preset's
    "checkpoint_every": 50,
    "keep_checkpoints": 3,
}

# Subcommand -> module (HELP, add_arguments(parser), run(args) -> int). The modules import their
# heavy dependencies (matplotlib, Tune, models) inside run(), so listing them all stays cheap.
COMMANDS: dict[str, str] = {
    "eval": "ngrpo_rl.commands.evaluate",
    "plot": "ngrpo_rl.commands.plot",
    "sweep": "ngrpo_rl.commands.sweep",
    "compare": "ngrpo_rl.commands.compare",
}

# Keys that drive the run rather than configure the algorithm.
RUN_KEYS = ("algorithm", "iterations", "output_dir", "checkpoint_every", "keep_checkpoints", "evaluation")
# A run folder: the job's settings, written when the run starts (what --resume reads), and the
# held-out pass@k of the starting policy.
JOB_FILE = "job.json"
EVALUATION_BEFORE_FILE = "evaluation_before.json"
LOCK_FILE = ".lock"
CHECKPOINT_PREFIX = "checkpoint_"
# RLlib's own keys a job may set besides the fields of ngrpo_rl.settings.SETTINGS.
RLLIB_KEYS = ("env", "env_config", "seed")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ngrpo-rl", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an algorithm (default: the main job)")
    train.add_argument("--config", type=Path, help="YAML file of config keys (flat)")
    train.add_argument("--algorithm", help="ngrpo | grpo | dapo | dr_grpo | psr_nsr | ppo (ngrpo-rl algorithms lists them)")
    train.add_argument("--iterations", type=int, help="train() calls in all (a resumed run counts those done)")
    train.add_argument("--output-dir", type=Path, help="the run folder: job.json, checkpoints, events")
    train.add_argument(
        "--resume", type=Path, metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its last checkpoint, with the settings saved in "
        "RUN_DIR/job.json (only --iterations, --checkpoint-every, --keep-checkpoints and "
        "--no-evaluation may change)",
    )
    train.add_argument(
        "--checkpoint-every", type=int, metavar="N",
        help="save RUN_DIR/checkpoint_NNNNNN every N iterations, and at the end (default 50; 0: "
        "only at the end)",
    )
    train.add_argument(
        "--keep-checkpoints", type=int, metavar="K", help="keep only the last K checkpoints (default 3)"
    )
    train.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override one config field (docs/CONFIG.md), VALUE read by the field's type "
        "(e.g. --set epsilon_pos=0.3 --set evaluation_ks=[1,2] --set dual_clip_c=null)",
    )
    train.add_argument("--no-evaluation", action="store_true", help="skip the pass@k tables")

    commands.add_parser("components", help="print the advantage table for a sample group")
    commands.add_parser("algorithms", help="list the algorithms and their presets")
    for name, module_name in COMMANDS.items():
        add_command(commands, name, module_name)

    args = parser.parse_args(argv)
    if args.command in COMMANDS:
        return args.run(args)
    if args.command == "components":
        from ngrpo_rl.component_table import format_component_table

        print(format_component_table(group_size=8))
        return 0
    if args.command == "algorithms":
        print(describe_algorithms())
        return 0
    return run_training(args)


def add_command(commands: argparse._SubParsersAction, name: str, module_name: str) -> None:
    """Adds the subcommand ``name`` from ``module_name``; its parser's ``run`` default dispatches it."""
    import importlib

    module = importlib.import_module(module_name)
    sub = commands.add_parser(name, help=module.HELP, description=module.__doc__.split("\n\n")[0])
    module.add_arguments(sub)
    sub.set_defaults(run=module.run)


def describe_algorithms() -> str:
    from ngrpo_rl.algorithms import ALGORITHMS

    fields = ("advantage_estimator", "epsilon_pos", "epsilon_neg", "loss_agg_mode", "group_filter",
              "kl_coef", "entropy_coef")
    rows = [["algorithm", *fields]]
    for name, (_, config_class) in ALGORITHMS.items():
        config = config_class()
        rows.append([name, *(str(getattr(config, f)) for f in fields)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def load_job(config_file: Path | None, overrides: Sequence[str]) -> dict[str, Any]:
    """The main job, updated by the YAML file, then by ``--set`` overrides (each read by its
    field's declared type)."""
    import yaml

    job = dict(MAIN_JOB)
    if config_file is not None:
        try:
            loaded = yaml.safe_load(config_file.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise SystemExit(f"cannot read config file {config_file}: {error}")
        if not isinstance(loaded, dict):
            raise SystemExit(f"{config_file} must hold a mapping of config keys to values")
        job.update(loaded)
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        if key in settings.SETTINGS_BY_NAME:
            try:
                job[key] = settings.parse_value(key, value)
            except ValueError as error:
                raise SystemExit(f"--set {item}: {error}")
        else:
            job[key] = parse_value(value)
    return job


def parse_value(text: str) -> Any:
    """A value for a key that is no field (env_config, seed, iterations) as YAML, except that
    ``5e-5`` is a float (YAML 1.1 reads it as a string)."""
    import yaml

    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def build_config(job: dict[str, Any]):
    """An algorithm config from a flat job dict: each key a field of ``ngrpo_rl.settings.SETTINGS``
    (set through its section's builder method), ``env``, ``env_config`` or ``seed``. Unknown keys
    are refused with suggestions, invalid values with the field's message."""
    from ngrpo_rl.algorithms import ALGORITHMS

    name = job.get("algorithm", "ngrpo")
    if name not in ALGORITHMS:
        raise SystemExit(f"unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}")
    config = ALGORITHMS[name][1]()
    for key, value in job.items():
        if key in RUN_KEYS:
            continue
        if key == "env":
            config.environment(env=value)
        elif key == "env_config":
            config.environment(env_config=value)
        elif key == "seed":
            config.debugging(seed=value)
        elif key in settings.SETTINGS_BY_NAME:
            value = settings.coerce_value(key, value)
            try:
                settings.validate_value(key, value)
            except ValueError as error:
                raise SystemExit(f"invalid config: {error}")
            getattr(config, settings.SETTINGS_BY_NAME[key].section)(**{key: value})
        else:
            known = [*settings.SETTINGS_BY_NAME, *RLLIB_KEYS, *RUN_KEYS]
            close = difflib.get_close_matches(key, known, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise SystemExit(f"unknown config key {key!r}{hint} (the fields are listed in docs/CONFIG.md)")
    try:
        config.validate()
    except ValueError as error:
        raise SystemExit(f"invalid config: {error}")
    return name, config


def run_training(args: argparse.Namespace) -> int:
    """``ngrpo-rl train``: a new run, or with ``--resume`` the continuation of one. The run folder
    is locked while it runs."""
    with contextlib.ExitStack() as locks:
        job, run_dir, resuming = prepare_run(args, locks)
        return train_run(job, run_dir, resuming)


def train_run(job: dict[str, Any], run_dir: Path, resuming: bool) -> int:
    """Builds the job's algorithm, restores the run's last checkpoint when resuming, evaluates,
    trains with periodic checkpoints and evaluates again."""
    name, config = build_config(job)
    config.tensorboard_dir = str(run_dir / "tensorboard")
    total = int(job["iterations"])
    evaluate = bool(job.get("evaluation", True))

    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True,
             configure_logging=False)
    print(f"ngrpo-rl: {name} on {config.env}, {total} iterations, output in {run_dir}")
    started = time.perf_counter()
    algo = config.build_algo()
    try:
        if resuming:
            resume_from_last_checkpoint(algo, run_dir)
        before = starting_evaluation(algo, run_dir) if evaluate else None
        checkpoint = train_with_checkpoints(algo, name, job, run_dir)
        print(f"checkpoint: {checkpoint} (policy: {checkpoint}/learner/policy)")
        if evaluate:
            after = algo.evaluate_pass_at_k()
            print(after.format_table("held-out pass@k after RL:"))
            if before is not None:  # None: a resumed run whose start was not evaluated
                print(compare_pass_at_1(before, after))
            (run_dir / "evaluation.json").write_text(json.dumps(
                {"before": before.overall if before is not None else None, "after": after.overall}, indent=2
            ))
        print(f"done in {time.perf_counter() - started:.0f} s")
        print(f"TensorBoard: tensorboard --logdir {config.tensorboard_dir}")
    finally:
        algo.stop()
        ray.shutdown()
    return 0


def starting_evaluation(algo, run_dir: Path):
    """Held-out pass@k of the policy the run started from, printed: measured (and saved) at the
    start of a run, read back on ``--resume``; None for a resumed run whose start was not measured."""
    before = load_evaluation(run_dir / EVALUATION_BEFORE_FILE)
    if before is None and algo.iteration == 0:
        before = algo.evaluate_pass_at_k()
        save_evaluation(run_dir / EVALUATION_BEFORE_FILE, before)
    if before is not None:
        print(before.format_table(f"held-out pass@k before RL ({algo.model_path}):"))
    return before


def train_with_checkpoints(algo, name: str, job: dict[str, Any], run_dir: Path) -> str:
    """Trains from ``algo.iteration`` to the job's ``iterations``, saving a checkpoint every
    ``checkpoint_every`` iterations and after the last (``keep_checkpoints`` kept); returns the
    path of the run's last checkpoint."""
    from tqdm import tqdm

    total, every = int(job["iterations"]), int(job.get("checkpoint_every") or 0)
    keep = int(job.get("keep_checkpoints", 3))
    # Redrawn often on a terminal; in a log file (CI), a line every 10 s is enough.
    progress = tqdm(range(algo.iteration, total), desc=name, unit="it", initial=algo.iteration,
                    total=total, mininterval=0.1 if sys.stderr.isatty() else 10.0)
    checkpoint = None
    for _ in progress:
        result = algo.train()
        progress.set_postfix(
            reward=f"{result['reward'].get('mean', float('nan')):.3f}",
            all_wrong=f"{result['groups']['frac_all_incorrect']:.2f}",
            clip_up=f"{result.get('clip', {}).get('upper_frac', 0.0):.3f}",
            refresh=False,  # the bar redraws on its own schedule (every 10 s in a log file)
        )
        if checkpoint_due(algo.iteration, total, every):
            checkpoint = save_checkpoint(algo, run_dir, keep)
    # Nothing was left to train (a resumed run already at its end): save where it stands.
    return checkpoint if checkpoint is not None else save_checkpoint(algo, run_dir, keep)


def prepare_run(args: argparse.Namespace, locks: contextlib.ExitStack) -> tuple[dict[str, Any], Path, bool]:
    """``(job, run_dir, resuming)``, the run folder locked in ``locks`` (:func:`run_lock`). A new
    run writes its job to ``RUN_DIR/job.json`` before it starts; ``--resume RUN_DIR`` reads it
    back, with the few run flags that may change applied (and saved, so that a later ``--resume``
    sees them)."""
    run_flags = {
        "iterations": args.iterations,
        "checkpoint_every": args.checkpoint_every,
        "keep_checkpoints": args.keep_checkpoints,
        "evaluation": False if args.no_evaluation else None,
    }
    if args.resume is not None:
        fixed = [flag for flag, given in (("--config", args.config), ("--set", args.set),
                                          ("--algorithm", args.algorithm), ("--output-dir", args.output_dir)) if given]
        if fixed:
            raise SystemExit(
                f"--resume continues a run with the settings saved in {args.resume / JOB_FILE}; "
                f"{', '.join(fixed)} cannot change them (start a new run to change them)"
            )
        run_dir = args.resume.resolve()
        job = read_job(run_dir)
        locks.enter_context(run_lock(run_dir))
        job.update({key: value for key, value in run_flags.items() if value is not None})
        check_run_flags(job)
        write_job(run_dir, job)
        return job, run_dir, True
    job = load_job(args.config, args.set)
    if args.algorithm:
        job["algorithm"] = args.algorithm
    job.update({key: value for key, value in run_flags.items() if value is not None})
    check_run_flags(job)
    name = job.get("algorithm", "ngrpo")
    run_dir = Path(args.output_dir or job.get("output_dir") or f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}")
    run_dir = run_dir.resolve()
    if (run_dir / JOB_FILE).exists():
        raise SystemExit(
            f"{run_dir} already holds a run ({JOB_FILE}): continue it with "
            f"--resume {run_dir}, or choose another --output-dir"
        )
    build_config(job)  # refuse a bad job before the run folder is written
    job.pop("output_dir", None)
    locks.enter_context(run_lock(run_dir))
    write_job(run_dir, job)
    return job, run_dir, False


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Holds an exclusive lock on ``RUN_DIR/.lock`` (which names the holder's pid) while the run
    goes, so that a second ``ngrpo-rl train`` on the same folder (a ``--resume`` while the run is
    still alive) is refused instead of writing the same checkpoints. The system releases the lock
    when the process ends, however it ends. Without ``fcntl`` (Windows) nothing is locked."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise SystemExit(
                f"another ngrpo-rl train (pid {holder}) is running in {run_dir}; let it finish or "
                f"stop it before resuming"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield


def check_run_flags(job: dict[str, Any]) -> None:
    """Refuses run keys out of range, naming the flag."""
    for key, flag, least in (("iterations", "--iterations", 0), ("checkpoint_every", "--checkpoint-every", 0),
                             ("keep_checkpoints", "--keep-checkpoints", 1)):
        value = job.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < least):
            raise SystemExit(f"{flag} must be an integer >= {least}, got {value!r}")


def write_job(run_dir: Path, job: dict[str, Any]) -> None:
    """Saves the job (every key, run keys included) as ``RUN_DIR/job.json``."""
    from ngrpo_rl.state_io import atomic_write

    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(job, indent=1, sort_keys=True)
    atomic_write(run_dir / JOB_FILE, lambda tmp: Path(tmp).write_text(text))


def read_job(run_dir: Path) -> dict[str, Any]:
    """The job a run saved in ``RUN_DIR/job.json``."""
    job_file = run_dir / JOB_FILE
    try:
        job = json.loads(job_file.read_text())
    except FileNotFoundError:
        raise SystemExit(
            f"--resume {run_dir}: no {JOB_FILE} there; pass the folder a run of ngrpo-rl train "
            f"wrote (its --output-dir)"
        )
    except (OSError, ValueError) as error:
        raise SystemExit(f"--resume {run_dir}: cannot read {job_file}: {error}")
    if not isinstance(job, dict) or "iterations" not in job:
        raise SystemExit(
            f"--resume {run_dir}: {job_file} is not the job file of an ngrpo-rl run (a mapping of "
            f"config keys with 'iterations')"
        )
    return job


def resume_from_last_checkpoint(algo, run_dir: Path) -> None:
    """Restores the newest complete checkpoint of the run (none yet: the run starts over)."""
    from ngrpo_rl.algorithms.checkpoints import CheckpointError, checkpoint_folders

    folders = checkpoint_folders(run_dir, CHECKPOINT_PREFIX)
    if not folders:
        print(f"ngrpo-rl: no checkpoint in {run_dir} yet; starting the run from the beginning")
        return
    try:
        algo.restore_from_path(str(folders[-1]))
    except CheckpointError as error:
        raise SystemExit(f"--resume {run_dir}: {error}") from error
    print(f"ngrpo-rl: resumed from {folders[-1]} (iteration {algo.iteration})")


def checkpoint_due(iteration: int, total: int, every: int) -> bool:
    """A checkpoint after every ``every`` iterations (0: never) and after the last one."""
    return iteration >= total or (every > 0 and iteration % every == 0)


def save_checkpoint(algo, run_dir: Path, keep: int) -> str:
    """Saves ``RUN_DIR/checkpoint_NNNNNN`` (the iteration, six digits), then deletes all but the
    last ``keep`` checkpoints; returns the new one's path."""
    from ngrpo_rl.algorithms.checkpoints import checkpoint_folders, prune_checkpoints

    path = algo.save_to_path(str(run_dir / f"{CHECKPOINT_PREFIX}{algo.iteration:06d}"))
    prune_checkpoints(checkpoint_folders(run_dir, CHECKPOINT_PREFIX), keep)
    return path


def save_evaluation(path: Path, result) -> None:
    """A ``PassAtKResult`` as JSON (group names and ks keep their types)."""
    data = {
        "ks": list(result.ks),
        "overall": [[k, v] for k, v in result.overall.items()],
        "by_group": [[group, [[k, v] for k, v in row.items()]] for group, row in result.by_group.items()],
        "num_problems": result.num_problems,
        "samples_per_problem": result.samples_per_problem,
        "correct_counts": list(result.correct_counts),
        "problem_ids": list(result.problem_ids),
    }
    path.write_text(json.dumps(data))


def load_evaluation(path: Path):
    """The ``PassAtKResult`` :func:`save_evaluation` wrote, or None when there is none."""
    from ngrpo_rl.evaluation import PassAtKResult

    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return PassAtKResult(
        ks=tuple(data["ks"]),
        overall={int(k): v for k, v in data["overall"]},
        by_group={group: {int(k): v for k, v in row} for group, row in data["by_group"]},
        num_problems=data["num_problems"],
        samples_per_problem=data["samples_per_problem"],
        correct_counts=tuple(data.get("correct_counts", ())),
        problem_ids=tuple(data.get("problem_ids", ())),
    )


def compare_pass_at_1(before, after) -> str:
    """Held-out pass@1 per level, warm start beside after RL."""
    lines = ["held-out pass@1", f"{'level':>8}{'warm start':>12}{'after RL':>12}{'change':>10}"]
    for group in sorted(after.by_group, key=str):
        b, a = before.by_group[group][1], after.by_group[group][1]
        lines.append(f"{group!s:>8}{b:>12.3f}{a:>12.3f}{a - b:>+10.3f}")
    b, a = before.overall[1], after.overall[1]
    lines.append(f"{'all':>8}{b:>12.3f}{a:>12.3f}{a - b:>+10.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

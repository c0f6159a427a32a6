"""Runs the trials of a study or sweep with Ray Tune, resuming an interrupted run.

``fit`` starts a Tuner in ``RUN_DIR/trials`` or, when that folder holds an interrupted run
(``tune.Tuner.can_restore``), restores it: finished trials are kept, unfinished and errored ones
continue from their last checkpoint. ``RUN_DIR/spec.json`` remembers what the run was asked to do,
so resuming with other settings is refused instead of mixing two experiments.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from ngrpo_rl.study.records import TrialRecord

EXPERIMENT = "trials"
SPEC_FILE = "spec.json"
WALL_TIME_FILE = "wall_time_s.json"


class SpecMismatchError(ValueError):
    """A run folder holds a run with other settings."""


def check_or_write_spec(run_dir: Path, spec: Mapping[str, Any]) -> bool:
    """Writes ``spec`` to ``RUN_DIR/spec.json`` for a new run; for a run folder that has one,
    refuses a different spec (``SpecMismatchError``). Returns whether the folder already held this
    run (a resume)."""
    path = run_dir / SPEC_FILE
    normalized = json.loads(json.dumps(spec, sort_keys=True))
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != normalized:
            changed = sorted(k for k in set(saved) | set(normalized) if saved.get(k) != normalized.get(k))
            raise SpecMismatchError(
                f"{run_dir} holds a run with other settings (differing: {', '.join(changed)}); "
                f"rerun it with the same settings to resume it, or choose another output folder"
            )
        return True
    run_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(normalized, indent=1, sort_keys=True) + "\n")
    return False


def record_wall_time(run_dir: Path, seconds: float) -> list[float]:
    """Appends one invocation's wall time to ``RUN_DIR/wall_time_s.json`` (interrupted ones too)
    and returns them all: a resumed run's wall time is their sum."""
    path = run_dir / WALL_TIME_FILE
    times = json.loads(path.read_text()) if path.is_file() else []
    times.append(round(seconds, 1))
    path.write_text(json.dumps(times) + "\n")
    return times


def init_ray() -> None:
    """Starts Ray on this machine's CPUs unless it already runs."""
    import ray

    if not ray.is_initialized():
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False,
                 log_to_driver=False)


def fit(
    param_space: Mapping[str, Any],
    run_dir: Path,
    *,
    iterations: int,
    total_trials: int,
    checkpoint_every: int,
    max_failures: int = 1,
    max_concurrent_trials: int | None = None,
    search_alg: Any = None,
    scheduler: Any = None,
    num_samples: int = 1,
    callbacks: Sequence[Any] = (),
    label: str = "trials",
):
    """Runs (or resumes) the trials of ``param_space`` with ``StudyTrial``; returns Tune's
    ``ResultGrid``. ``total_trials`` sizes the progress bar."""
    from ngrpo_rl.study.trials import SCORE, StudyTrial

    init_ray()
    path = (run_dir / EXPERIMENT).resolve()
    if tune.Tuner.can_restore(str(path)):  # its callbacks (the progress bar) are restored with it
        print(f"resuming the interrupted run in {path}")
        tuner = tune.Tuner.restore(str(path), trainable=StudyTrial, resume_errored=True)
    else:
        tuner = tune.Tuner(
            StudyTrial,
            param_space=dict(param_space),
            tune_config=tune.TuneConfig(
                metric=SCORE if (search_alg or scheduler) else None,
                mode="max" if (search_alg or scheduler) else None,
                search_alg=search_alg,
                scheduler=scheduler,
                num_samples=num_samples,
                max_concurrent_trials=max_concurrent_trials,
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=str(path.parent),
                stop={"training_iteration": iterations},
                checkpoint_config=tune.CheckpointConfig(
                    checkpoint_frequency=checkpoint_every, checkpoint_at_end=True, num_to_keep=2,
                ),
                failure_config=tune.FailureConfig(max_failures=max_failures),
                callbacks=[Progress(total_trials * iterations, label), *callbacks],
                verbose=0,
            ),
        )
    return tuner.fit()


def interrupted(results, expected_trials: int) -> bool:
    """Whether the run stopped before every trial ended (Ctrl-C: Tune saved its state and returned),
    as opposed to finishing with some trials errored."""
    return len(results) < expected_trials or results.num_terminated + results.num_errors < len(results)


INTERRUPTED_MESSAGE = (
    "interrupted: the trials' last checkpoints are saved; rerun the same command to resume (no "
    "records or report were written for the unfinished run)"
)


def collect_records(results) -> tuple[list[TrialRecord], list[str]]:
    """The records in the trials' last checkpoints, and a line for each trial without one (it
    errored before its first checkpoint)."""
    from ngrpo_rl.study.trials import record_of

    records, missing = [], []
    for result in results:
        record = record_of(result)
        if record is None:
            missing.append(f"{result.path}: no checkpoint ({result.error or 'never checkpointed'})")
        else:
            records.append(record)
    return records, missing


class Progress(tune.Callback):
    """A progress bar over every iteration of every trial (with Tune's ETA), and one line per
    finished trial with its held-out Pass@k AUC."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self._bar = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment
        return {**self.__dict__, "_bar": None}

    def setup(self, **info: Any) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=self.total, desc=self.label, unit="it", dynamic_ncols=True,
                         mininterval=0.5 if sys.stderr.isatty() else 30.0)

    def _advance(self, trials: list) -> None:
        if self._bar is not None:
            done = sum(int((t.last_result or {}).get("training_iteration", 0)) for t in trials)
            self._bar.update(max(0, done - self._bar.n))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._advance(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._advance(trials)
        result = trial.last_result or {}
        auc = (result.get("evaluation") or {}).get("pass_at_k_auc", math.nan)
        config = trial.config
        params = {k: v for k, v in config.items()
                  if k not in ("variant", "seed", "job", "iterations", "evaluation_every")}
        where = " ".join(f"{k}={v}" for k, v in params.items())
        line = (f"{config.get('variant')} seed {config.get('seed')} {where}".strip()
                + f": Pass@k AUC {auc:.1f} after {result.get('training_iteration', 0)} iterations, "
                f"{result.get('time_total_s', 0.0):.0f} s")
        if self._bar is not None:
            self._bar.write(line)
        else:
            print(line)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._bar is not None:
            self._bar.close()


def with_shared_model(job: Mapping[str, Any]) -> dict[str, Any]:
    """``job`` with its model resolved (the warm start built on first use) once, here, so that every
    trial starts from the same folder."""
    from ngrpo_rl.algorithms.default_model import resolve_model_path

    return {**job, "model_name_or_path": resolve_model_path(job.get("model_name_or_path", "ngrpo_rl/tiny-arithmetic"))}


def save_records(records: Sequence[TrialRecord], trials_dir: Path) -> None:
    """Writes one JSON per trial into ``trials_dir``, replacing the records of an earlier run."""
    trials_dir.mkdir(parents=True, exist_ok=True)
    for stale in trials_dir.glob("*.json"):
        stale.unlink()
    for record in records:
        record.save(trials_dir / f"{record.label}.json")

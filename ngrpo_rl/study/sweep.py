"""A sweep over config fields (by default NGRPO's epsilon_pos x epsilon_neg) with Ray Tune, trials
ranked by held-out Pass@k AUC, resumable, with a heatmap of AUC over the grid.

Searches (``SEARCHES``): ``grid`` (every combination of ``grid`` values, each with every seed),
``random`` (``num_samples`` draws from the ``ranges``, Tune's random search) and ``optuna``
(Optuna's TPE over the ranges, ``pip install optuna``). Schedulers (``SCHEDULERS``): ``fifo`` runs
every trial to the end; ``asha`` stops the trials whose Pass@k AUC at an evaluation
(``evaluation_every``) is in the bottom half of its rung. A search draws one point per trial, on
the first seed; re-run the points worth it as a grid with seeds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngrpo_rl.study import jobs, layout, variants

DEFAULT_GRID: dict[str, tuple[float, ...]] = {
    "epsilon_pos": (0.1, 0.2, 0.28, 0.4),
    "epsilon_neg": (0.1, 0.16, 0.2, 0.3),
}


@dataclass
class SweepSpec:
    """What a sweep trains.

    Attributes:
        job: the config fields every trial shares (``jobs.study_job``).
        variant: the registered variant the swept fields are set on.
        grid: field -> values, for ``search="grid"``.
        ranges: field -> (low, high), for ``search="random"`` or ``"optuna"`` (uniform).
        search: a name in ``SEARCHES``.
        num_samples: points a random or Optuna search draws.
        scheduler: a name in ``SCHEDULERS``.
        seeds: a grid runs every point with each seed; a search uses the first.
        iterations: training iterations per trial.
        evaluation_every: evaluate every this many iterations as well as after the last (needed by
            ``asha``; 0: only after the last).
        checkpoint_every / max_failures / max_concurrent_trials: as for a comparison study.
    """

    job: dict[str, Any]
    variant: str = "ngrpo"
    grid: dict[str, tuple[Any, ...]] = field(default_factory=lambda: dict(DEFAULT_GRID))
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    search: str = "grid"
    num_samples: int = 16
    scheduler: str = "fifo"
    seeds: tuple[int, ...] = (0, 1)
    iterations: int = 200
    evaluation_every: int = 0
    checkpoint_every: int = 25
    max_failures: int = 1
    max_concurrent_trials: int | None = None

    def __post_init__(self) -> None:
        variants.get(self.variant)
        self.seeds = tuple(int(s) for s in self.seeds)
        self.grid = {k: tuple(v) for k, v in self.grid.items()}
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in self.ranges.items()}
        if self.search not in SEARCHES:
            raise ValueError(f"unknown search {self.search!r}; choose one of {sorted(SEARCHES)}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {self.scheduler!r}; choose one of {sorted(SCHEDULERS)}")
        swept = self.grid if self.search == "grid" else self.ranges
        if not swept:
            raise ValueError(f"a {self.search} search needs fields to vary ({'grid' if self.search == 'grid' else 'ranges'})")
        if self.scheduler == "asha" and self.evaluation_every < 1:
            raise ValueError("the asha scheduler compares trials at evaluations: set evaluation_every >= 1")
        for name in swept:  # each a config field: a typo fails here, not in a trial
            jobs.build_config(variants.get(self.variant).algorithm, {name: _example(swept[name])})

    @property
    def num_trials(self) -> int:
        if self.search == "grid":
            points = 1
            for values in self.grid.values():
                points *= len(values)
            return points * len(self.seeds)
        return self.num_samples

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.grid if self.search == "grid" else self.ranges)

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "variant": self.variant, "grid": self.grid, "ranges": self.ranges,
                "search": self.search, "num_samples": self.num_samples, "scheduler": self.scheduler,
                "seeds": list(self.seeds), "iterations": self.iterations,
                "evaluation_every": self.evaluation_every}


def _example(values: Any) -> Any:
    return values[0]


# ---- searches and schedulers (name -> builder) -------------------------------------------------------


def _grid(spec: SweepSpec) -> tuple[dict[str, Any], Any, int]:
    from ray import tune

    space = {name: tune.grid_search(list(values)) for name, values in spec.grid.items()}
    return {**space, "seed": tune.grid_search(list(spec.seeds))}, None, 1


def _random(spec: SweepSpec) -> tuple[dict[str, Any], Any, int]:
    from ray import tune

    space = {name: tune.uniform(low, high) for name, (low, high) in spec.ranges.items()}
    return {**space, "seed": spec.seeds[0]}, None, spec.num_samples


def _optuna(spec: SweepSpec) -> tuple[dict[str, Any], Any, int]:
    try:
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise SystemExit(f"--search optuna needs optuna (pip install optuna): {error}") from None
    space, _, samples = _random(spec)
    return space, OptunaSearch(seed=spec.seeds[0]), samples


SEARCHES: dict[str, Callable[[SweepSpec], tuple[dict[str, Any], Any, int]]] = {
    "grid": _grid,
    "random": _random,
    "optuna": _optuna,
}


def _asha(spec: SweepSpec) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    # Rungs at evaluation_every x 1, 2, 4, ...: every rung is an iteration with a fresh evaluation.
    return ASHAScheduler(time_attr="training_iteration", max_t=spec.iterations,
                         grace_period=spec.evaluation_every, reduction_factor=2)


SCHEDULERS: dict[str, Callable[[SweepSpec], Any]] = {
    "fifo": lambda spec: None,
    "asha": _asha,
}


# ---- running -------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """Where a sweep's outputs went, its records and its best point."""

    report: Path
    results_dir: Path
    records: list = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    interrupted: bool = False


def run_sweep(
    spec: SweepSpec,
    *,
    run_dir: str | Path,
    results_dir: str | Path = "docs/results",
    report: str | Path = "docs/results.md",
    command: str = "",
    callbacks: tuple[Any, ...] = (),
) -> SweepResult:
    """Runs (or resumes, when ``run_dir`` holds an interrupted run of the same spec) the sweep,
    writes its records to ``RESULTS_DIR/sweep/`` and the report."""
    from ngrpo_rl.study import tuning
    from ngrpo_rl.study.analysis import summarize_sweep
    from ngrpo_rl.study.environment import machine
    from ngrpo_rl.study.report import write_report
    from ngrpo_rl.study.trials import TrialConfig

    started = time.perf_counter()
    run_dir, results_dir = Path(run_dir).resolve(), Path(results_dir)
    job = tuning.with_shared_model(spec.job)
    spec = dataclasses.replace(spec, job=job)
    resuming = tuning.check_or_write_spec(run_dir, spec.to_dict())
    space, search_alg, num_samples = SEARCHES[spec.search](spec)
    base = TrialConfig(spec.variant, 0, job, spec.iterations, spec.evaluation_every).to_param_space()
    param_space = {**base, **space}
    tuning.init_ray()
    concurrency = spec.max_concurrent_trials or os.cpu_count() or 1
    evaluations = 1 + (spec.iterations - 1) // spec.evaluation_every if spec.evaluation_every else 1
    critic = variants.get(spec.variant).algorithm == "ppo"
    expected = jobs.wall_seconds([jobs.trial_seconds(job, spec.iterations, evaluations, critic=critic)]
                                 * spec.num_trials, concurrency)
    print(f"{'resuming' if resuming else 'starting'} the sweep: {spec.num_trials} trials of `{spec.variant}` "
          f"({spec.search} over {', '.join(spec.fields)}, {spec.scheduler} scheduler), {spec.iterations} "
          f"iterations each; expected wall time at most about {jobs.format_duration(expected)}")
    results = tuning.fit(
        param_space, run_dir, iterations=spec.iterations, total_trials=spec.num_trials,
        checkpoint_every=spec.checkpoint_every, max_failures=spec.max_failures,
        max_concurrent_trials=spec.max_concurrent_trials, search_alg=search_alg,
        scheduler=SCHEDULERS[spec.scheduler](spec), num_samples=num_samples, callbacks=callbacks, label="sweep",
    )
    if tuning.interrupted(results, spec.num_trials):
        tuning.record_wall_time(run_dir, time.perf_counter() - started)
        print(tuning.INTERRUPTED_MESSAGE)
        return SweepResult(Path(report), results_dir, interrupted=True)
    records, missing = tuning.collect_records(results)
    folder = layout.sweep_dir(results_dir)
    tuning.save_records(records, folder / layout.TRIALS)
    elapsed = time.perf_counter() - started
    path = folder / layout.SWEEP_FILE
    data = {**spec.to_dict(), "fields": list(spec.fields), "command": command,
            "wall_time_s": tuning.record_wall_time(run_dir, elapsed),
            "finished": time.strftime("%Y-%m-%d %H:%M"), "machine": machine()}
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=list) + "\n")
    report_path = write_report(results_dir, report)
    evaluated = [r for r in records if r.evaluation is not None]
    best = summarize_sweep(evaluated, spec.fields).cells[0].params if evaluated else {}
    for line in missing:
        print(f"warning: {line}")
    print(f"sweep done in {jobs.format_duration(elapsed)}; best by held-out Pass@k AUC: {best}; {report_path}")
    return SweepResult(report_path, results_dir, records, best, missing, elapsed)


def parse_grid(items: list[str]) -> dict[str, tuple[Any, ...]]:
    """``["epsilon_pos=0.2,0.28", ...]`` -> ``{"epsilon_pos": (0.2, 0.28)}``, each value read by the
    field's declared type."""
    from ngrpo_rl import settings

    grid = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise ValueError(f"expected FIELD=V1,V2,..., got {item!r}")
        grid[name.strip()] = tuple(settings.parse_value(name.strip(), v.strip()) for v in values.split(","))
    return grid


def parse_ranges(items: list[str]) -> dict[str, tuple[float, float]]:
    """``["epsilon_pos=0.1:0.4"]`` -> ``{"epsilon_pos": (0.1, 0.4)}``."""
    ranges = {}
    for item in items:
        name, sep, bounds = item.partition("=")
        low, colon, high = bounds.partition(":")
        if not sep or not colon:
            raise ValueError(f"expected FIELD=LOW:HIGH, got {item!r}")
        ranges[name.strip()] = (float(low), float(high))
    return ranges


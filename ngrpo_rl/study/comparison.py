"""The comparison study: every variant from one shared warm start, at equal generation budget, over
several seeds, with Tune as the executor (one trial per variant and seed), and its report.

    from ngrpo_rl import cli
    from ngrpo_rl.study import ComparisonSpec, run_comparison
    run_comparison(ComparisonSpec(job=study_job(cli.MAIN_JOB)), run_dir="runs/study")

Before the trials, the driver evaluates the warm start twice on the held-out problems (two
independent draws of n samples): the first defines the problems it never solves, the second is the
chance level of the mechanism metric. The trials' records, these evaluations and the settings go to
``RESULTS_DIR/study/`` and the report to ``REPORT`` (``ngrpo_rl.study.report``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ngrpo_rl.study import jobs, layout, variants
from ngrpo_rl.study.records import save_evaluation

DEFAULT_SEEDS = (0, 1, 2, 3, 4)
# Seeds of the two warm-start evaluations (their sampling seeds differ from every trial's).
WARM_START_SEEDS = (0, 1)


@dataclass
class ComparisonSpec:
    """What a comparison study trains.

    Attributes:
        job: the config fields every trial shares (``jobs.study_job``).
        variants: registered variant names (``ngrpo_rl.study.variants``).
        seeds: every variant trains once per seed.
        iterations: training iterations per trial.
        baseline: the variant paired differences are taken against.
        checkpoint_every: Tune checkpoints each trial this often (and at its end).
        max_failures: times a trial that dies is restarted from its last checkpoint.
        max_concurrent_trials: at most this many at once (None: as the CPUs allow).
    """

    job: dict[str, Any]
    variants: tuple[str, ...] = variants.STUDY_VARIANTS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    iterations: int = 200
    baseline: str = "grpo"
    checkpoint_every: int = 25
    max_failures: int = 1
    max_concurrent_trials: int | None = None

    def __post_init__(self) -> None:
        self.variants = tuple(self.variants)
        self.seeds = tuple(int(s) for s in self.seeds)
        for name in self.variants:
            variants.get(name)  # an unknown name lists the registered ones
        if len(set(self.variants)) != len(self.variants) or len(set(self.seeds)) != len(self.seeds):
            raise ValueError("variants and seeds must not repeat")
        if not self.seeds or self.iterations < 1:
            raise ValueError("a study needs at least one seed and one iteration")

    @property
    def num_trials(self) -> int:
        return len(self.variants) * len(self.seeds)

    def param_space(self) -> dict[str, Any]:
        from ray import tune

        return {
            "variant": tune.grid_search(list(self.variants)),
            "seed": tune.grid_search(list(self.seeds)),
            "job": dict(self.job),
            "iterations": self.iterations,
            "evaluation_every": 0,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "variants": list(self.variants), "seeds": list(self.seeds),
                "iterations": self.iterations, "baseline": self.baseline}


@dataclass
class ComparisonResult:
    """Where a study's outputs went, and its trials' records."""

    report: Path
    results_dir: Path
    records: list = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    wall_time_s: float = 0.0
    interrupted: bool = False


def run_comparison(
    spec: ComparisonSpec,
    *,
    run_dir: str | Path,
    results_dir: str | Path = "docs/results",
    report: str | Path = "docs/results.md",
    command: str = "",
) -> ComparisonResult:
    """Runs (or resumes, when ``run_dir`` holds an interrupted run of the same spec) the study and
    writes its records, figures and report."""
    from ngrpo_rl.study import tuning
    from ngrpo_rl.study.environment import machine, model_fingerprint
    from ngrpo_rl.study.report import write_report

    started = time.perf_counter()
    run_dir, results_dir = Path(run_dir).resolve(), Path(results_dir)
    # One shared warm start, named by its folder.
    job = tuning.with_shared_model(spec.job)
    spec = dataclasses.replace(spec, job=job)
    resuming = tuning.check_or_write_spec(run_dir, spec.to_dict())
    folder = layout.study_dir(results_dir)
    tuning.init_ray()
    _print_plan(spec, resuming)

    # Kept in the run folder (a resumed run reuses them) and copied to the results at the end.
    warm_starts = [run_dir / layout.WARM_START, run_dir / layout.WARM_START_CONTROL]
    for path, seed in zip(warm_starts, WARM_START_SEEDS):
        if not path.is_file():
            save_evaluation(evaluate_warm_start(spec, seed), path, policy="warm start", seed=seed,
                            model=job["model_name_or_path"])

    results = tuning.fit(
        spec.param_space(), run_dir, iterations=spec.iterations, total_trials=spec.num_trials,
        checkpoint_every=spec.checkpoint_every, max_failures=spec.max_failures,
        max_concurrent_trials=spec.max_concurrent_trials, label="study",
    )
    if tuning.interrupted(results, spec.num_trials):
        tuning.record_wall_time(run_dir, time.perf_counter() - started)
        print(tuning.INTERRUPTED_MESSAGE)
        return ComparisonResult(Path(report), results_dir, interrupted=True)
    records, missing = tuning.collect_records(results)
    tuning.save_records(records, folder / layout.TRIALS)
    for path in warm_starts:
        shutil.copyfile(path, folder / path.name)
    elapsed = time.perf_counter() - started
    wall_times = tuning.record_wall_time(run_dir, elapsed)
    _write_study_file(folder, spec, command, wall_times, machine(), model_fingerprint(job["model_name_or_path"]))
    report_path = write_report(results_dir, report)
    for line in missing:
        print(f"warning: {line}")
    print(f"study done in {jobs.format_duration(elapsed)}: {report_path}")
    return ComparisonResult(report_path, results_dir, records, missing, elapsed)


def evaluate_warm_start(spec: ComparisonSpec, seed: int):
    """The starting policy's held-out evaluation (the baseline's config; nothing trained), with the
    sampling seed ``seed``."""
    config = variants.get(spec.baseline).config({**spec.job, "seed": seed})
    algo = config.build_algo()
    try:
        return algo.evaluate_pass_at_k()
    finally:
        algo.stop()


def _print_plan(spec: ComparisonSpec, resuming: bool) -> None:
    import os

    concurrency = spec.max_concurrent_trials or os.cpu_count() or 1
    trials = [jobs.trial_seconds(spec.job, spec.iterations, critic=variants.get(name).algorithm == "ppo")
              for name in spec.variants for _ in spec.seeds]
    expected = jobs.wall_seconds(trials, concurrency) + len(WARM_START_SEEDS) * jobs.trial_seconds(spec.job, 0)
    print(
        f"{'resuming' if resuming else 'starting'} the comparison study: {len(spec.variants)} variants "
        f"({', '.join(spec.variants)}) x {len(spec.seeds)} seeds = {spec.num_trials} trials of "
        f"{spec.iterations} iterations ({jobs.generation_budget(spec.job, spec.iterations):,} responses "
        f"generated each), up to {concurrency} at a time; expected wall time about "
        f"{jobs.format_duration(expected)} on 2 CPU cores like the ones it was measured on"
    )


def _write_study_file(folder: Path, spec: ComparisonSpec, command: str, wall_times: list[float],
                      machine: dict[str, Any], model: dict[str, Any]) -> None:
    """``study.json``: the spec, the command, the wall time of every run of it, the machine, the
    warm start, and each variant's differences from the baseline as its config says."""
    path = folder / layout.STUDY_FILE
    base_config = variants.get(spec.baseline).config(spec.job)
    differences = {
        name: {f: [_plain(a), _plain(b)] for f, (a, b) in
               variants.config_differences(variants.get(name).config(spec.job), base_config).items()}
        for name in spec.variants
    }
    data = {
        **spec.to_dict(),
        "job": {k: _plain(v) for k, v in spec.job.items()},
        "command": command,
        "wall_time_s": wall_times,
        "finished": time.strftime("%Y-%m-%d %H:%M"),
        "machine": machine,
        "model": model,
        "generation_budget": jobs.generation_budget(spec.job, spec.iterations),
        "algorithms": {name: variants.get(name).algorithm for name in spec.variants},
        "descriptions": {name: variants.get(name).description for name in spec.variants},
        "differences": differences,
    }
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def _plain(value: Any) -> Any:
    """JSON-ready: tuples as lists."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value



__all__ = ["ComparisonResult", "ComparisonSpec", "evaluate_warm_start", "run_comparison"]

"""Training-iteration throughput of the main job, generating in the driver vs in Ray actors.

    .venv/bin/python benchmarks/training_throughput.py [--iterations 10] [--workers 0 1] [--quick]

Runs the embedded main job's settings (NGRPO, 64 prompts x 8 responses, tiny model) for a few
iterations per setting, side by side in one process, and reports seconds per iteration with the
time split by stage (generate / score / learn / sync): medians of the seconds and of each stage's
share of its iteration. ``run()`` returns the report; ``main()`` also writes it to
benchmarks/results/training_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

STAGES = ("generate", "score", "learn", "sync")
DEFAULT_OUTPUT = Path(__file__).parent / "results" / "training_throughput.json"


def measure(num_workers: int, iterations: int) -> dict[str, Any]:
    """One setting: ``iterations`` timed ``train()`` calls after a warm-up call."""
    from ngrpo_rl import cli

    job = {**cli.MAIN_JOB, "tensorboard": False, "num_generation_workers": num_workers}
    _, config = cli.build_config(job)
    algo = config.build_algo()
    try:
        algo.train()  # warm-up: first-call allocations and lazy imports
        seconds, stages, tokens = [], {s: [] for s in STAGES}, []
        for _ in range(iterations):
            started = time.perf_counter()
            result = algo.train()
            seconds.append(time.perf_counter() - started)
            for stage in STAGES:
                stages[stage].append(result["timers"].get(stage, 0.0))
            tokens.append(result["throughput"]["tokens_per_s"])
    finally:
        algo.stop()
    shares = {s: statistics.median(t / total for t, total in zip(v, seconds)) for s, v in stages.items()}
    return {
        "num_generation_workers": num_workers,
        "iterations": iterations,
        "seconds_per_iteration_median": statistics.median(seconds),
        "seconds_all": seconds,
        "samples_per_iteration": config.prompts_per_step * config.group_size,
        "stage_seconds_median": {s: statistics.median(v) for s, v in stages.items()},
        "stage_share_median": shares,
        "other_share_median": statistics.median(
            1 - sum(stages[s][i] for s in STAGES) / seconds[i] for i in range(iterations)
        ),
        "generation_tokens_per_s_median": statistics.median(tokens),
    }


def run(quick: bool = False, *, iterations: int | None = None, workers: list[int] | None = None) -> dict[str, Any]:
    """The report: ``seconds_per_iteration`` (the median step time) and ``stage_share`` (generate /
    score / learn / sync, each a median fraction of the iteration) of the first setting, and ``runs`` with every setting's
    figures. ``quick`` runs 3 iterations with generation in the driver only; otherwise 10
    iterations each with 0 and 1 generation actors. Starts Ray when it is not running (and stops
    it again)."""
    import ray

    from ngrpo_rl import cli

    iterations = iterations or (3 if quick else 10)
    workers = workers or ([0] if quick else [0, 1])
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        runs = [measure(n, iterations) for n in workers]
    finally:
        if started_ray:
            ray.shutdown()
    return {
        "benchmark": "training_throughput",
        "job": {k: v for k, v in cli.MAIN_JOB.items() if k != "iterations"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "quick": quick,
        "seconds_per_iteration": runs[0]["seconds_per_iteration_median"],
        "stage_share": runs[0]["stage_share_median"],
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations per setting (default 10, quick 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="generation actor counts to compare (default 0 1, quick 0)")
    parser.add_argument("--quick", action="store_true", help="3 iterations, driver generation only")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    report = run(args.quick, iterations=args.iterations, workers=args.workers)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for entry in report["runs"]:
        stages = ", ".join(
            f"{s} {t:.3f} s ({entry['stage_share_median'][s]:.0%})" for s, t in entry["stage_seconds_median"].items()
        )
        print(f"workers={entry['num_generation_workers']}: "
              f"{entry['seconds_per_iteration_median']:.3f} s/iteration "
              f"({entry['samples_per_iteration']} samples; {stages})")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()

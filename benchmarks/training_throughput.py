"""Training-iteration throughput of the main job, generating in the driver vs in Ray actors.

    .venv/bin/python benchmarks/training_throughput.py [--iterations 10] [--workers 0 1]

Runs the embedded main job's settings (NGRPO, 64 prompts x 8 responses, tiny model) for a few
iterations per setting, side by side in one process, and writes seconds per iteration with the
time split by stage (generate / score / learn / sync) to benchmarks/results/training_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import ray

from ngrpo_rl import cli

STAGES = ("generate", "score", "learn", "sync")


def measure(num_workers: int, iterations: int) -> dict:
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
    return {
        "num_generation_workers": num_workers,
        "iterations": iterations,
        "seconds_per_iteration_median": statistics.median(seconds),
        "samples_per_iteration": config.prompts_per_step * config.group_size,
        "stage_seconds_median": {s: statistics.median(v) for s, v in stages.items()},
        "generation_tokens_per_s_median": statistics.median(tokens),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).parent / "results" / "training_throughput.json")
    args = parser.parse_args()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    runs = [measure(n, args.iterations) for n in args.workers]
    ray.shutdown()
    report = {
        "benchmark": "training_throughput",
        "job": {k: v for k, v in cli.MAIN_JOB.items() if k != "iterations"},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": runs,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for run in runs:
        stages = ", ".join(f"{s} {t:.2f}" for s, t in run["stage_seconds_median"].items())
        print(f"workers={run['num_generation_workers']}: "
              f"{run['seconds_per_iteration_median']:.2f} s/iteration "
              f"({run['samples_per_iteration']} samples; {stages})")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()

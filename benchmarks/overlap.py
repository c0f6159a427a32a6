"""Seconds per iteration with and without ``overlap_generation``, one generation actor, interleaved.

    .venv/bin/python benchmarks/overlap.py [--rounds 3] [--steps 4]

The main job's settings with ``num_generation_workers=1``: generation runs in a Ray actor, so
the next batch can be generated while the driver's learner trains. Both algorithms are built once;
the rounds alternate ``steps`` iterations of each (the first of every round dropped as warm-up).
Writes benchmarks/results/overlap.json.
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

RESULTS = Path(__file__).parent / "results" / "overlap.json"


def run(quick: bool = False, rounds: int = 3, steps: int = 4) -> dict[str, Any]:
    """The interleaved A/B; ``overlap_speedup`` = seconds without overlap / seconds with it."""
    import ray

    from ngrpo_rl import cli

    if quick:
        rounds, steps = 2, 2
    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=max(os.cpu_count() or 1, 2), include_dashboard=False, log_to_driver=False)
    seconds: dict[bool, list[float]] = {False: [], True: []}
    waits: list[float] = []
    algos = {}
    try:
        for overlap in (False, True):
            job = {**cli.MAIN_JOB, "tensorboard": False, "num_generation_workers": 1,
                   "overlap_generation": overlap}
            algos[overlap] = cli.build_config(job)[1].build_algo()
        for _ in range(rounds):
            for overlap, algo in algos.items():
                for step in range(steps + 1):
                    t0 = time.perf_counter()
                    result = algo.train()
                    if step:
                        seconds[overlap].append(time.perf_counter() - t0)
                        if overlap:
                            waits.append(result["timers"]["overlap_wait"])
    finally:
        for algo in algos.values():
            algo.stop()
        if started_ray:
            ray.shutdown()
    plain, overlapped = statistics.median(seconds[False]), statistics.median(seconds[True])
    return {
        "overlap_speedup": plain / overlapped,
        "seconds_per_iteration_median": {"sequential": plain, "overlap": overlapped},
        "overlap_wait_median": statistics.median(waits),
        "seconds": {"sequential": seconds[False], "overlap": seconds[True]},
        "setup": {"num_generation_workers": 1, "rounds": rounds, "steps_per_round": steps},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(args.quick, args.rounds, args.steps)
    result["machine"] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    times = result["seconds_per_iteration_median"]
    print(f"sequential {times['sequential']:.3f} s/it, overlap {times['overlap']:.3f} s/it, "
          f"speedup {result['overlap_speedup']:.2f} -> {args.output}")


if __name__ == "__main__":
    main()

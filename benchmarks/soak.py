"""Soak: the main job's settings for many iterations with periodic checkpoints; does anything grow?

    .venv/bin/python benchmarks/soak.py [--iterations 1000] [--checkpoint-every 50]

Measures the resident memory and the open file descriptors of the whole process tree (this process
and its descendants: Ray's GCS, raylet and workers included) after a warm-up and at the end, and
writes them with their growth to benchmarks/results/soak.json. The run passes when neither grows
by more than 10%. Linux only (it reads /proc). Not a test: it takes about as long as three main
jobs, ten minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import ray
from tqdm import tqdm

from ngrpo_rl import cli

MAX_GROWTH = 0.10


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from /proc's parent links."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, []))
    return found


def tree_usage(root: int) -> dict[str, float]:
    """Resident memory (MB) and open file descriptors summed over the process tree of ``root``."""
    rss_kb, fds, processes = 0, 0, 0
    for pid in descendants(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:  # the process ended meanwhile
            continue
        processes += 1
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss_kb += int(line.split()[1])
    return {"rss_mb": rss_kb / 1024, "open_files": float(fds), "processes": float(processes)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=20, help="iterations before the first measurement")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "soak.json")
    args = parser.parse_args()

    job = {**cli.MAIN_JOB, "tensorboard": False}
    _, config = cli.build_config(job)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, configure_logging=False, log_to_driver=False)
    checkpoints = Path(tempfile.mkdtemp(prefix="ngrpo_rl-soak-"))
    started = time.perf_counter()
    algo = config.build_algo()
    try:
        samples = []
        for iteration in tqdm(range(1, args.iterations + 1), desc="soak", unit="it", mininterval=10.0):
            algo.train()
            if iteration % args.checkpoint_every == 0:
                algo.save_to_path(str(checkpoints / "checkpoint"))  # replaced in place, atomically
            if iteration == args.warmup or iteration == args.iterations or iteration % 100 == 0:
                samples.append({"iteration": iteration, **tree_usage(os.getpid())})
    finally:
        algo.stop()
        ray.shutdown()
        shutil.rmtree(checkpoints, ignore_errors=True)
    start, end = samples[0], samples[-1]
    growth = {key: end[key] / start[key] - 1.0 for key in ("rss_mb", "open_files")}
    report = {
        "benchmark": "soak",
        "command": f"python benchmarks/soak.py --iterations {args.iterations} --checkpoint-every {args.checkpoint_every}",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "iterations": args.iterations,
        "seconds": round(time.perf_counter() - started, 1),
        "start": start,
        "end": end,
        "growth": growth,
        "max_growth": MAX_GROWTH,
        "passed": all(value <= MAX_GROWTH for value in growth.values()),
        "samples": samples,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("seconds", "start", "end", "growth", "passed")}, indent=2))


if __name__ == "__main__":
    main()

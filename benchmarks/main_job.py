"""The README's main job, timed, with the peak memory of its whole process tree (Ray included).

    .venv/bin/python benchmarks/main_job.py [--cold] [--iterations N]

Runs ``ngrpo-rl train`` (the embedded main job) in a subprocess and samples, every
``--interval`` seconds, the proportional set size (PSS: shared pages split among the processes
that share them, so nothing is counted twice) summed over the process and all its descendants:
the driver, Ray's GCS, raylet and workers. ``--cold`` points ``NGRPO_RL_CACHE`` at an empty folder
so that the warm start of the tiny model is part of the run, as on a fresh clone. Writes
benchmarks/results/main_job.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "main_job.json"


def tree_memory_mb(root: psutil.Process) -> float:
    """PSS (or RSS where PSS is unavailable) of ``root`` and its descendants, in MiB."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total / 2**20


class PeakSampler(threading.Thread):
    """Samples :func:`tree_memory_mb` of a process until it exits; keeps the peak."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.interval = interval
        self.peak_mb = 0.0
        self.samples = 0

    def run(self) -> None:
        while self.process.is_running() and self.process.status() != psutil.STATUS_ZOMBIE:
            try:
                self.peak_mb = max(self.peak_mb, tree_memory_mb(self.process))
                self.samples += 1
            except psutil.NoSuchProcess:
                return
            time.sleep(self.interval)


def run(quick: bool = False, cold: bool = False, iterations: int | None = None,
        interval: float = 0.5) -> dict[str, Any]:
    """Runs the main job once; ``quick`` trains 30 iterations instead of the job's 300."""
    if quick and iterations is None:
        iterations = 30
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "ngrpo_rl.cli", "train", "--output-dir", str(Path(tmp) / "run")]
        if iterations is not None:
            command += ["--iterations", str(iterations)]
        env = dict(os.environ)
        if cold:
            env["NGRPO_RL_CACHE"] = str(Path(tmp) / "cache")
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        sampler = PeakSampler(process.pid, interval)
        sampler.start()
        output, _ = process.communicate()
        seconds = time.perf_counter() - started
        sampler.join(timeout=5)
    if process.returncode != 0:
        raise RuntimeError(f"the main job failed (rc {process.returncode}):\n{output[-3000:]}")
    return {
        "main_job_seconds": seconds,
        "main_job_peak_mb": sampler.peak_mb,
        "memory_samples": sampler.samples,
        "cold_model_cache": cold,
        "iterations": iterations or "the main job's",
        "command": " ".join(command[1:3] + command[3:4] + ["--output-dir", "TMP"] + command[6:]),
        "tail": output.strip().splitlines()[-12:],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cold", action="store_true", help="warm-start the tiny model in the run")
    parser.add_argument("--iterations", type=int, help="override the main job's 300 iterations")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(cold=args.cold, iterations=args.iterations, interval=args.interval)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1))
    print(f"main job: {result['main_job_seconds']:.0f} s, peak {result['main_job_peak_mb']:.0f} MiB "
          f"(whole process tree, PSS) -> {args.output}")


if __name__ == "__main__":
    main()

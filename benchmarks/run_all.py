"""Every benchmark in one command: the figures issue 10 sets targets for, as one JSON and a table.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only NAME ...]

Each benchmark module here exposes ``run(quick: bool = False) -> dict``; this script runs each one
in its own subprocess (so that one's Ray session, threads and memory do not colour the next),
collects the figures and writes benchmarks/results.json:

- ``step_time_ratio_vs_trl``: our seconds per step over TRL's GRPOTrainer's, 64 prompts x 8, our
  defaults, median of interleaved steps (``trl_comparison.py``; needs the ``bench`` extra);
- ``loop_vs_generate``: generation throughput inside the training loop's backend over bare
  ``model.generate`` on the same model and batch (``generation_throughput.py``);
- ``main_job_seconds`` and ``main_job_peak_mb``: the README's main job, and the peak memory of its
  whole process tree, Ray included (``main_job.py``);
- ``verifier_answers_per_s``: answers settled per second on RL-like completions
  (``verifier_throughput.py``);
- ``stage_share``: the share of a training step in each stage (``training_throughput.py``);
- ``overlap_speedup``: seconds per iteration without ``overlap_generation`` over with it, one
  generation actor (``overlap.py``).

The targets are printed beside the figures. About 12 minutes on 2 cores; ``--quick`` (about 4)
checks that everything runs, with fewer repeats and a 30-iteration main job, so its figures are
rougher.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"

# name -> (module file, the figures it contributes). Run in this order.
BENCHMARKS: dict[str, tuple[str, tuple[str, ...]]] = {
    "verifier": ("verifier_throughput.py", ("verifier_answers_per_s",)),
    "generation": ("generation_throughput.py", ("loop_vs_generate",)),
    "training": ("training_throughput.py", ("stage_share", "seconds_per_iteration")),
    "trl": ("trl_comparison.py", ("step_time_ratio_vs_trl",)),
    "overlap": ("overlap.py", ("overlap_speedup",)),
    "main_job": ("main_job.py", ("main_job_seconds", "main_job_peak_mb")),
}

# figure -> (a test of the value, the target as text)
TARGETS: dict[str, tuple[Callable[[float], bool], str]] = {
    "step_time_ratio_vs_trl": (lambda v: v <= 0.67, "<= 0.67"),
    "loop_vs_generate": (lambda v: v >= 0.9, ">= 0.9"),
    "verifier_answers_per_s": (lambda v: v >= 500, ">= 500"),
    "main_job_seconds": (lambda v: v <= 180, "<= 180"),
    "main_job_peak_mb": (lambda v: v <= 2048, "<= 2048"),
}

_RUNNER = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("bench", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
result = module.run(quick=sys.argv[2] == "1")
print("@@RESULT@@" + json.dumps(result))
"""
_MARK = "@@RESULT@@"


def run_benchmark(file: str, quick: bool, timeout: float) -> dict[str, Any]:
    """``run(quick)`` of ``benchmarks/FILE`` in a subprocess; its dict, or ``{"error": ...}``."""
    started = time.perf_counter()
    try:
        completed = subprocess.run([sys.executable, "-c", _RUNNER, str(HERE / file), "1" if quick else "0"],
                                   cwd=HERE.parent, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in completed.stdout.splitlines() if line.startswith(_MARK)]
    if completed.returncode != 0 or not lines:
        return {"error": f"rc {completed.returncode}: {(completed.stderr or completed.stdout)[-2000:]}"}
    result = json.loads(lines[-1][len(_MARK):])
    result["benchmark_seconds"] = time.perf_counter() - started
    return result


def format_table(figures: dict[str, Any]) -> str:
    """The headline figures beside their targets."""
    rows = [("figure", "value", "target", "met")]
    for name, (check, target) in TARGETS.items():
        value = figures.get(name)
        if isinstance(value, (int, float)):
            rows.append((name, f"{value:.3g}", target, "yes" if check(value) else "NO"))
        else:
            rows.append((name, "-", target, "not measured"))
    for stage, share in (figures.get("stage_share") or {}).items():
        rows.append((f"  share of step: {stage}", f"{share:.0%}", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats: checks that all runs")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these")
    parser.add_argument("--timeout", type=float, default=900, help="seconds allowed per benchmark")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    figures: dict[str, Any] = {}
    details: dict[str, Any] = {}
    for name in args.only or BENCHMARKS:
        file, keys = BENCHMARKS[name]
        print(f"[{name}] {file} ...", flush=True)
        result = run_benchmark(file, args.quick, args.timeout)
        details[name] = result
        if "error" in result:
            print(f"[{name}] failed: {result['error']}", flush=True)
            continue
        for key in keys:
            if key in result:
                figures[key] = result[key]
        print(f"[{name}] {result['benchmark_seconds']:.0f} s: "
              + ", ".join(f"{k}={result[k]}" for k in keys if k in result and not isinstance(result[k], dict)),
              flush=True)
    output = {
        **figures,
        "targets": {name: target for name, (_, target) in TARGETS.items()},
        "quick": args.quick,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "details": details,
    }
    args.output.write_text(json.dumps(output, indent=1))
    print(format_table(figures))
    print(f"wrote {args.output}")
    return 0 if not any("error" in r for r in details.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

"""Verifier throughput on MATH-500 reference solutions: answers/second, fast path vs math-verify.

Scores every MATH-500 reference solution against its own gold (nearly all decided by the fast
path) and against a shuffled gold (mostly math-verify in the worker processes), and writes a JSON
with answers per second for each path and overall, the pool size and the machine's core count.
Worker start-up is timed separately and excluded from the rates; each pool size gets a fresh
verifier (cold math-verify caches); ``math_verify_warm`` repeats the same batch with warm caches.

    python benchmarks/verifier_throughput.py                      # pool size: the default
    python benchmarks/verifier_throughput.py --workers 1 2 4 --output /tmp/verifier.json

The data folder is ``--data``, else ``$NGRPO_RL_SHARED_DATA``, else ``../shared/data`` beside the
repository; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Sequence

from ngrpo_rl.envs import Verifier, load_problems
from ngrpo_rl.envs.extraction import extract_answer
from ngrpo_rl.envs.fast_match import fast_match
from ngrpo_rl.envs.verifier import DEFAULT_TIMEOUT, default_num_workers

REPOSITORY = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder holding math500/test.jsonl")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[default_num_workers()],
        help="pool sizes to measure",
    )
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="math-verify deadline per answer (s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the gold shuffle")
    parser.add_argument(
        "--output",
        type=Path,
        default=REPOSITORY / "benchmarks" / "results" / "verifier_throughput.json",
        help="where to write the JSON",
    )
    return parser.parse_args()


def data_folder(explicit: Path | None) -> Path:
    folder = explicit or Path(
        os.environ.get("NGRPO_RL_SHARED_DATA") or REPOSITORY.parent / "shared" / "data"
    )
    if not (folder / "math500").is_dir():
        raise SystemExit(
            f"MATH-500 not found under {folder}; pass --data or set NGRPO_RL_SHARED_DATA"
        )
    return folder


def rate(answers: int, seconds: float) -> dict[str, float]:
    return {
        "answers": answers,
        "seconds": round(seconds, 4),
        "answers_per_second": round(answers / seconds, 1),
    }


def timed_score(
    verifier: Verifier, completions: Sequence[str], golds: Sequence[str]
) -> tuple[list[float], float]:
    start = time.perf_counter()
    rewards = verifier.score(completions, golds)
    return rewards, time.perf_counter() - start


def measure(
    num_workers: int, timeout: float, completions: list[str], golds: list[str], fast: list[bool]
) -> dict[str, Any]:
    """Rates for one pool size; each path on its own fresh verifier, so caches start cold."""
    fast_pairs = [(c, g) for c, g, f in zip(completions, golds, fast) if f]
    slow_pairs = [(c, g) for c, g, f in zip(completions, golds, fast) if not f]
    result: dict[str, Any] = {"pool_size": num_workers}

    for label, pairs in (
        ("overall", list(zip(completions, golds))),
        ("fast_path", fast_pairs),
        ("math_verify", slow_pairs),
    ):
        verifier = Verifier(num_workers=num_workers, timeout=timeout)
        start = time.perf_counter()
        verifier.score(["\\boxed{\\sqrt{2}}"], ["\\frac{2}{\\sqrt{2}}"])  # starts the workers
        startup = time.perf_counter() - start
        _, seconds = timed_score(verifier, [c for c, _ in pairs], [g for _, g in pairs])
        result[label] = rate(len(pairs), seconds)
        if label == "overall":
            result["pool_start_seconds"] = round(startup, 3)
        if label == "math_verify":
            _, warm_seconds = timed_score(verifier, [c for c, _ in pairs], [g for _, g in pairs])
            result["math_verify_warm"] = rate(len(pairs), warm_seconds)
        result.setdefault("timeouts", 0)
        result["timeouts"] += verifier.timeouts
        verifier.close()
    return result


def main() -> None:
    args = parse_args()
    problems = load_problems("math500", data_root=data_folder(args.data))
    solutions = [p.source["solution"] for p in problems]
    golds = [p.answer for p in problems]
    shuffled = golds[:]
    random.Random(args.seed).shuffle(shuffled)
    completions, all_golds = solutions + solutions, golds + shuffled
    fast = [
        fast_match(extract_answer(c) or "", g)[0] is not None
        for c, g in zip(completions, all_golds)
    ]

    check = Verifier(timeout=args.timeout)
    own = check.score(solutions, golds)
    crossed = check.score(solutions, shuffled)
    differing = [i for i, (g, s) in enumerate(zip(golds, shuffled)) if g != s]
    check.close()

    report = {
        "benchmark": "verifier_throughput",
        "dataset": "MATH-500 reference solutions vs own gold and shuffled gold",
        "answers": len(completions),
        "fast_path_share": round(sum(fast) / len(fast), 3),
        "own_gold_accuracy": round(sum(own) / len(own), 4),
        "shuffled_gold_false_match_rate": round(
            sum(crossed[i] for i in differing) / len(differing), 4
        ),
        "timeout_seconds": args.timeout,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "math_verify": version("math-verify"),
        "results": [measure(n, args.timeout, completions, all_golds, fast) for n in args.workers],
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    for result in report["results"]:
        print(
            f"pool_size={result['pool_size']} cores={report['cpu_count']}: "
            f"overall {result['overall']['answers_per_second']:.0f} answers/s, "
            f"fast path {result['fast_path']['answers_per_second']:.0f} answers/s, "
            f"math-verify {result['math_verify']['answers_per_second']:.0f} answers/s "
            f"({result['math_verify_warm']['answers_per_second']:.0f} warm), "
            f"pool start {result['pool_start_seconds']:.2f} s, timeouts {result['timeouts']}"
        )
    print(f"fast path share {report['fast_path_share']:.1%}; wrote {args.output}")


if __name__ == "__main__":
    main()

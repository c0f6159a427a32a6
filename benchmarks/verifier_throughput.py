"""Verifier throughput on RL-like completions built from MATH-500: answers/second, memo on and off.

RL scores G samples per prompt, and those samples repeat themselves: most of a group often lands
on the same final answer, written the same way or a little differently, and the rest are wrong
answers (often the same wrong answer) or completions cut off before any ``\\boxed{}``. This
benchmark builds such completions from the shared MATH-500 file: groups of 8 per problem (the
reference solution with its boxed answer replaced), a per-group accuracy drawn from 0, 1/4, ...,
1, correct answers in the gold's own form or another spelling (``\\dfrac``, ``a/b``, a decimal,
no spaces, a unit, thousands commas), one to three of the problem's usual wrong answers (a digit
changed, the sign flipped, another problem's gold of the same kind; the same few each pass), and
about one in ten cut off before its answer. Batches of 16 groups are verified one after another, as
a training loop would, over ``--epochs`` passes (each pass draws new samples for the same
problems, so the second pass meets the memo partly warm).

It reports answers/s with the verdict memo (``Verifier(cache_size=...)``) and without it
(``cache_size=0``), per pass and overall, the share of answers the fast path settles, the memo's
hit rate and the math-verify comparisons run, and asserts that both give identical verdicts. Worker
start-up is excluded (each run starts its pool before the clock starts). The headline
``verifier_answers_per_s`` is the memoised rate over the first pass only: a cold memo, the
conservative figure. Each configuration runs ``--repeats`` times and its fastest round is kept.

    python benchmarks/verifier_throughput.py            # all 500 problems, 2 passes, 3 rounds
    python benchmarks/verifier_throughput.py --quick    # 96 problems, 2 passes, 1 round (~10 s)

The data folder is ``--data``, else ``$NGRPO_RL_SHARED_DATA``, else ``../shared/data`` beside the
repository; nothing is downloaded. ``run(quick)`` returns the report without writing it; ``main``
writes it to ``benchmarks/results/verifier_throughput.json`` (or ``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import time
from fractions import Fraction
from importlib.metadata import version
from pathlib import Path
from typing import Any, Optional, Sequence

from ngrpo_rl.envs import Verdict, Verifier, load_problems
from ngrpo_rl.envs.fast_match import normalize_answer, parse_number
from ngrpo_rl.envs.verifier import DEFAULT_CACHE_SIZE, DEFAULT_TIMEOUT, default_num_workers

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPOSITORY / "benchmarks" / "results" / "verifier_throughput.json"

GROUP_SIZE = 8
GROUPS_PER_BATCH = 16
NO_ANSWER_RATE = 0.1
QUICK_PROBLEMS = 96
UNITS = ("\\text{ cm}", "\\text{ dollars}", "\\text{ units}", "\\text{ degrees}")

_LAST_BOX = re.compile(r"\\boxed\s*\{")
_DIGIT = re.compile(r"\d")


def data_folder(explicit: Optional[Path] = None) -> Path:
    """The folder holding ``math500/test.jsonl`` (see the module docstring)."""
    folder = explicit or Path(
        os.environ.get("NGRPO_RL_SHARED_DATA") or REPOSITORY.parent / "shared" / "data"
    )
    if not (folder / "math500").is_dir():
        raise SystemExit(
            f"MATH-500 not found under {folder}; pass --data or set NGRPO_RL_SHARED_DATA"
        )
    return folder


# -- the workload ---------------------------------------------------------------------------------


def correct_forms(gold: str) -> list[str]:
    """Spellings of the gold answer a model may write: the gold itself first, then variants."""
    forms = [gold]
    if "\\frac" in gold:
        forms.append(gold.replace("\\frac", "\\dfrac"))
    if " " in gold:
        forms.append(gold.replace(" ", ""))
    if "\\left" in gold:
        forms.append(gold.replace("\\left", "").replace("\\right", ""))
    value = parse_number(normalize_answer(gold))
    if value is not None:
        if value.denominator == 1:
            forms.append(f"{value}{UNITS[abs(value.numerator) % len(UNITS)]}")
            if abs(value) >= 1000:
                forms.append(f"{value.numerator:,}")
        else:
            sign = "-" if value < 0 else ""
            top, bottom = abs(value.numerator), value.denominator
            forms.append(f"{sign}{top}/{bottom}")
            forms.append(f"{sign}\\frac{{{top}}}{{{bottom}}}")
            decimal = _terminating_decimal(value)
            if decimal is not None:
                forms.append(decimal)
    return list(dict.fromkeys(forms))


def _terminating_decimal(value: Fraction) -> Optional[str]:
    for places in range(1, 7):
        scaled = value * 10**places
        if scaled.denominator == 1:
            return f"{float(value):.{places}f}"
    return None


def _is_number(answer: str) -> bool:
    return parse_number(normalize_answer(answer)) is not None


def wrong_forms(gold: str, other_golds: Sequence[str], rng: random.Random) -> list[str]:
    """A model's usual wrong answers to one problem: a digit changed (two ways), the sign flipped,
    and another problem's gold of the same kind (a number for a numeric gold)."""
    wrong: list[str] = []
    digits = list(_DIGIT.finditer(gold))
    for _ in range(2 if digits else 0):
        spot = rng.choice(digits)
        new_digit = str((int(spot.group()) + rng.randint(1, 9)) % 10)
        wrong.append(gold[: spot.start()] + new_digit + gold[spot.end() :])
    if _is_number(gold) and parse_number(normalize_answer(gold)) != 0:
        wrong.append(gold[1:] if gold.startswith("-") else "-" + gold)
    same_kind = [other for other in other_golds if _is_number(other) == _is_number(gold)]
    wrong.append(rng.choice(same_kind or list(other_golds)))
    return [answer for answer in dict.fromkeys(wrong) if answer.strip() != gold.strip()]


def _with_answer(solution: str, answer: str) -> str:
    """The reference solution with its last ``\\boxed{...}`` holding ``answer`` instead."""
    starts = list(_LAST_BOX.finditer(solution))
    if not starts:
        return f"{solution}\n\nThe answer is $\\boxed{{{answer}}}$."
    start = starts[-1].end()
    depth, end = 1, start
    while end < len(solution) and depth:
        depth += {"{": 1, "}": -1}.get(solution[end], 0)
        end += 1
    return f"{solution[:start]}{answer}}}{solution[end:]}"


def _cut_off(solution: str, rng: random.Random) -> str:
    """The first part of a solution, before any boxed answer (the sample ran out of tokens)."""
    box = solution.find("\\boxed")
    head = solution[: box if box >= 0 else len(solution)]
    return head[: rng.randint(0, max(0, len(head) - 1))]


def build_group(
    solution: str, gold: str, wrong_pool: Sequence[str], rng: random.Random
) -> list[str]:
    """``GROUP_SIZE`` completions for one problem, as an RL sampler might produce them: a few
    of the problem's ``wrong_pool`` answers, the gold in one of its spellings, cut-off samples."""
    correct = rng.choice([0, 2, 4, 6, 8])
    forms = correct_forms(gold)
    wrong_used = rng.sample(list(wrong_pool), k=min(len(wrong_pool), rng.randint(1, 3)))
    group = []
    for sample in range(GROUP_SIZE):
        if rng.random() < NO_ANSWER_RATE:
            group.append(_cut_off(solution, rng))
        elif sample < correct:
            answer = forms[0] if rng.random() < 0.6 else rng.choice(forms)
            group.append(_with_answer(solution, answer))
        else:
            group.append(_with_answer(solution, rng.choice(wrong_used)))
    rng.shuffle(group)
    return group


def build_batches(
    solutions: Sequence[str], golds: Sequence[str], epochs: int, seed: int
) -> list[tuple[int, list[str], list[str]]]:
    """``(epoch, completions, golds)`` per batch of ``GROUPS_PER_BATCH`` groups, in order."""
    rng = random.Random(seed)
    # A problem's plausible wrong answers stay the same from one pass to the next.
    wrong_pools = [
        wrong_forms(gold, golds, random.Random(seed * 7919 + index))
        for index, gold in enumerate(golds)
    ]
    batches = []
    for epoch in range(epochs):
        order = list(range(len(golds)))
        rng.shuffle(order)
        for start in range(0, len(order), GROUPS_PER_BATCH):
            completions: list[str] = []
            batch_golds: list[str] = []
            for index in order[start : start + GROUPS_PER_BATCH]:
                completions += build_group(solutions[index], golds[index], wrong_pools[index], rng)
                batch_golds += [golds[index]] * GROUP_SIZE
            batches.append((epoch, completions, batch_golds))
    return batches


# -- the measurement ------------------------------------------------------------------------------


def measure(
    batches: Sequence[tuple[int, list[str], list[str]]],
    *,
    cache_size: int,
    num_workers: int,
    timeout: float,
) -> tuple[list[Verdict], dict[str, Any]]:
    """Verifies the batches in order on a fresh verifier; its verdicts and rates per pass."""
    verifier = Verifier(num_workers=num_workers, timeout=timeout, cache_size=cache_size)
    try:
        start = time.perf_counter()
        # Starts the workers and gives each a first comparison (imports, parser set-up), as a
        # training run's long-lived workers have had.
        warm_up = range(1, 4 * num_workers + 1)
        answers = [f"\\boxed{{\\frac{{{2 * k}\\pi}}{{2}}}}" for k in warm_up]
        verifier.score(answers, [f"{k}\\pi" for k in warm_up])
        startup = time.perf_counter() - start
        verifier.clear_cache()
        before = verifier.stats.snapshot()
        verdicts: list[Verdict] = []
        seconds: dict[int, float] = {}
        answers: dict[int, int] = {}
        for epoch, completions, golds in batches:
            start = time.perf_counter()
            verdicts += verifier.verify_batch(completions, golds)
            seconds[epoch] = seconds.get(epoch, 0.0) + time.perf_counter() - start
            answers[epoch] = answers.get(epoch, 0) + len(completions)
        stats = verifier.stats.snapshot() - before
    finally:
        verifier.close()
    total_seconds, total_answers = sum(seconds.values()), sum(answers.values())
    return verdicts, {
        "cache_size": cache_size,
        "answers_per_s": round(total_answers / total_seconds, 1),
        "seconds": round(total_seconds, 3),
        "per_pass_answers_per_s": [
            round(answers[epoch] / seconds[epoch], 1) for epoch in sorted(seconds)
        ],
        "pool_start_seconds": round(startup, 3),
        "stats": stats.as_dict(),
    }


def run(
    quick: bool = False,
    *,
    data: Optional[Path] = None,
    epochs: int = 2,
    repeats: Optional[int] = None,
    num_workers: Optional[int] = None,
    timeout: float = DEFAULT_TIMEOUT,
    cache_size: int = DEFAULT_CACHE_SIZE,
    seed: int = 0,
) -> dict[str, Any]:
    """Runs the benchmark and returns its report (``verifier_answers_per_s`` is the headline).

    Each of ``repeats`` rounds (default: 1 quick, 3 otherwise) verifies every batch on a fresh
    verifier without the memo, then on one with it; the report keeps each configuration's fastest
    round (the one least disturbed by whatever else the machine ran). Raises AssertionError if a
    memoised verdict differs from the unmemoised one (timeouts aside: they depend on load).
    """
    problems = load_problems("math500", data_root=data_folder(data))
    if quick:
        problems = problems[:QUICK_PROBLEMS]
    solutions = [problem.source["solution"] for problem in problems]
    golds = [problem.answer for problem in problems]
    batches = build_batches(solutions, golds, epochs, seed)
    workers = default_num_workers() if num_workers is None else num_workers
    rounds = (1 if quick else 3) if repeats is None else repeats

    plain_runs: list[dict[str, Any]] = []
    memo_runs: list[dict[str, Any]] = []
    for _ in range(rounds):
        plain_verdicts, plain = measure(batches, cache_size=0, num_workers=workers, timeout=timeout)
        memo_verdicts, memo = measure(
            batches, cache_size=cache_size, num_workers=workers, timeout=timeout
        )
        differing = [
            index
            for index, (a, b) in enumerate(zip(plain_verdicts, memo_verdicts))
            if a != b and "timeout" not in (a.reason, b.reason)
        ]
        assert not differing, f"memoised verdicts differ from unmemoised ones at {differing[:10]}"
        plain_runs.append(plain)
        memo_runs.append(memo)

    def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
        return max(runs, key=lambda run: run["per_pass_answers_per_s"][0])

    plain, memo = fastest(plain_runs), fastest(memo_runs)
    answers = len(memo_verdicts)
    methods: dict[str, int] = {}
    reasons: dict[str, int] = {}
    for verdict in memo_verdicts:
        methods[verdict.method] = methods.get(verdict.method, 0) + 1
        reasons[verdict.reason] = reasons.get(verdict.reason, 0) + 1
    decided_here = answers - methods.get("math_verify", 0)
    math_verify_answers = max(1, memo["stats"]["cache_hits"] + memo["stats"]["cache_misses"])
    return {
        "benchmark": "verifier_throughput",
        "verifier_answers_per_s": memo["per_pass_answers_per_s"][0],
        "verifier_answers_per_s_no_memo": plain["per_pass_answers_per_s"][0],
        "verifier_answers_per_s_all_passes": memo["answers_per_s"],
        "verifier_answers_per_s_all_passes_no_memo": plain["answers_per_s"],
        "fast_path_share": round(memo["stats"]["fast_path"] / answers, 4),
        "decided_without_math_verify_share": round(decided_here / answers, 4),
        "memo_hit_rate": round(memo["stats"]["cache_hits"] / math_verify_answers, 4),
        "math_verify_comparisons": memo["stats"]["cache_misses"],
        "math_verify_comparisons_no_memo": plain["stats"]["cache_misses"],
        "verdicts_identical_with_and_without_memo": True,
        "dataset": (
            f"MATH-500 ({len(problems)} problems), groups of {GROUP_SIZE}, "
            f"{GROUPS_PER_BATCH} groups per batch, {epochs} passes"
        ),
        "answers": answers,
        "methods": methods,
        "reasons": reasons,
        "pool_size": workers,
        "timeout_seconds": timeout,
        "quick": quick,
        "rounds": rounds,
        "first_pass_answers_per_s_each_round": {
            "with_memo": [run["per_pass_answers_per_s"][0] for run in memo_runs],
            "without_memo": [run["per_pass_answers_per_s"][0] for run in plain_runs],
        },
        "with_memo": memo,
        "without_memo": plain,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "math_verify": version("math-verify"),
    }


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder holding math500/test.jsonl")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_PROBLEMS} problems only")
    parser.add_argument("--epochs", type=int, default=2, help="passes over the problems")
    parser.add_argument(
        "--repeats", type=int, default=None, help="rounds, fastest kept (default 1 quick, else 3)"
    )
    parser.add_argument("--workers", type=int, default=None, help="math-verify worker processes")
    parser.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="math-verify deadline per answer (s)"
    )
    parser.add_argument(
        "--cache-size", type=int, default=DEFAULT_CACHE_SIZE, help="verdict memo entries"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled completions")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write JSON")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    report = run(
        args.quick,
        data=args.data,
        epochs=args.epochs,
        repeats=args.repeats,
        num_workers=args.workers,
        timeout=args.timeout,
        cache_size=args.cache_size,
        seed=args.seed,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{report['answers']} answers, pool {report['pool_size']}, {report['cpu_count']} cores: "
        f"{report['verifier_answers_per_s']:.0f} answers/s with the memo "
        f"({report['verifier_answers_per_s_no_memo']:.0f} without) on the first pass, "
        f"{report['verifier_answers_per_s_all_passes']:.0f} "
        f"({report['verifier_answers_per_s_all_passes_no_memo']:.0f}) over all passes; "
        f"fast path {report['fast_path_share']:.1%}, memo hits {report['memo_hit_rate']:.1%} "
        f"of math-verify answers; wrote {args.output}"
    )


if __name__ == "__main__":
    main()

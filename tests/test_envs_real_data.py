"""The verifier on real benchmark files (../shared/data; skipped when absent).

Reference solutions must score correct against their own gold and wrong against another problem's
gold: the verifier neither rejects right answers written differently nor accepts wrong ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ngrpo_rl.envs import Problem, Verifier, load_problems
from ngrpo_rl.envs.fast_match import normalize_answer


@pytest.fixture(scope="module")
def verifier() -> Iterator[Verifier]:
    verifier = Verifier(timeout=5.0)
    yield verifier
    verifier.close()


def load(shared_data: Path, name: str, split: str | None = None) -> list[Problem]:
    if not (shared_data / name).is_dir():
        pytest.skip(f"{shared_data / name} is absent")
    return load_problems(name, split=split, data_root=shared_data)


def check_own_and_next_gold(verifier: Verifier, solutions: list[str], golds: list[str]) -> None:
    own = verifier.verify_batch(solutions, golds)
    own_misses = [(gold, v.extracted) for gold, v in zip(golds, own) if not v.correct]
    assert len(own_misses) <= 0.01 * len(golds), own_misses

    next_golds = golds[1:] + golds[:1]
    # Pairs whose golds are the same answer are expected to match; skip them.
    pairs = [
        (solution, other, gold)
        for solution, gold, other in zip(solutions, golds, next_golds)
        if normalize_answer(gold) != normalize_answer(other)
    ]
    crossed = verifier.verify_batch([s for s, _, _ in pairs], [o for _, o, _ in pairs])
    false_matches = [(gold, other) for (_, other, gold), v in zip(pairs, crossed) if v.correct]
    assert len(false_matches) <= 0.01 * len(pairs), false_matches
    assert verifier.timeouts == 0


def test_math500_solutions_match_their_own_gold_and_not_the_next(
    shared_data: Path, verifier: Verifier
) -> None:
    problems = load(shared_data, "math500")
    assert len(problems) == 500
    solutions = [p.source["solution"] for p in problems]
    check_own_and_next_gold(verifier, solutions, [p.answer for p in problems])


def test_gsm8k_reference_answers_match_their_own_gold_and_not_the_next(
    shared_data: Path, verifier: Verifier
) -> None:
    problems = load(shared_data, "gsm8k", "test")
    assert len(problems) == 1319
    solutions = [p.source["answer"] for p in problems]  # the whole reasoning and "#### N"
    check_own_and_next_gold(verifier, solutions, [p.answer for p in problems])


@pytest.mark.parametrize("name, count", [("aime24", 30), ("aime25", 30), ("amc23", 40)])
def test_aime_and_amc_golds_written_as_boxed_integers_score_correct(
    shared_data: Path, verifier: Verifier, name: str, count: int
) -> None:
    problems = load(shared_data, name)
    assert len(problems) == count
    integer_golds = [p for p in problems if _integer(p.answer) is not None]
    assert len(integer_golds) >= count - 1  # AIME 2025 writes one as 336^\circ
    completions = [f"The answer is $\\boxed{{{_integer(p.answer)}}}$." for p in integer_golds]
    assert verifier.score(completions, [p.answer for p in integer_golds]) == [1.0] * len(
        integer_golds
    )


def _integer(answer: str) -> int | None:
    try:
        value = float(answer)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None

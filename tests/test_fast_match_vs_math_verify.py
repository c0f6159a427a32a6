"""The fast path against math-verify itself: every verdict ``fast_match`` gives must be the one
math-verify gives, run the way the verifier runs it (``math_verify_worker.compare`` in worker
processes, the gold stripped of ``$``).

The pairs:

- the gold answers of the benchmark files (MATH-500, MATH, GSM8K, AIME 2024 and 2025, AMC 2023,
  OlympiadBench; skipped when ``../shared/data`` is absent), each against itself, against other
  spellings of it (``\\dfrac``, spaces, ``a/b``, decimals, thousands commas, a unit, a percent sign,
  a final period, a root pulled in...), against near misses (a digit changed, the sign flipped,
  brackets changed, items swapped, off by a little) and against other problems' golds;
- random values of the fast path's grammar (fractions, roots, decimals, tuples, intervals) against
  other spellings and near misses of themselves, and against other random values;
- the hand-picked ``FAST_PATH_CASES`` of ``test_envs_verifier``.

Only the pairs the fast path decides are sent to math-verify. A seeded sample runs by default
(about half a minute on two cores); the whole set (tens of thousands of pairs) is marked slow.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import pytest
from test_fast_match import FAST_PATH_CASES

from ngrpo_rl.envs import load_problems
from ngrpo_rl.envs import math_verify_worker
from ngrpo_rl.envs.fast_match import fast_match, normalize_answer, parse_number
from ngrpo_rl.envs.process_pool import DeadlinePool

DATASETS = [
    ("math500", None),
    ("math", "test"),
    ("gsm8k", "test"),
    ("aime24", None),
    ("aime25", None),
    ("amc23", None),
    ("olympiadbench", None),
]
SEED = 10
DEADLINE = 30.0  # generous: a timeout here says nothing about the fast path
_DIGIT = re.compile(r"\d")

Pair = tuple[str, str]  # (gold, answer)


@pytest.fixture(scope="module")
def pool() -> Iterator[DeadlinePool]:
    with DeadlinePool(2, preload=[math_verify_worker.__name__], memory_limit_mb=4096) as pool:
        yield pool


def math_verify(pool: DeadlinePool, pairs: Sequence[Pair]) -> list[str]:
    """math-verify's ``"correct"``, ``"wrong"`` or ``"timeout"`` for each pair, as the verifier
    asks it."""
    tasks = [(gold.strip().strip("$"), answer, 0.9 * DEADLINE) for gold, answer in pairs]
    results = pool.map(math_verify_worker.compare, tasks, deadline=DEADLINE)
    return [result.value if result.status == "ok" else "timeout" for result in results]


def check_against_math_verify(pool: DeadlinePool, pairs: Sequence[Pair]) -> list[bool]:
    """Asks math-verify about every pair the fast path decides; fails on any disagreement.
    Returns the fast path's verdicts on the pairs math-verify judged."""
    decided = [(gold, answer, fast_match(answer, gold)[0]) for gold, answer in dict.fromkeys(pairs)]
    decided = [(gold, answer, verdict) for gold, answer, verdict in decided if verdict is not None]
    outcomes = math_verify(pool, [(gold, answer) for gold, answer, _ in decided])
    judged = [(d, outcome) for d, outcome in zip(decided, outcomes) if outcome != "timeout"]
    disagreements = [
        (gold, answer, verdict, outcome)
        for (gold, answer, verdict), outcome in judged
        if verdict != (outcome == "correct")
    ]
    assert not disagreements, disagreements[:20]
    assert len(judged) >= 0.99 * len(decided)  # timeouts are rare; they prove nothing either way
    return [verdict for (_, _, verdict), _ in judged]


# -- pairs from the benchmark golds -----------------------------------------------------------


def spellings(gold: str) -> list[str]:
    """The gold written differently: math-verify may or may not find these equal."""
    forms = [
        gold.replace("\\frac", "\\dfrac"),
        gold.replace(" ", ""),
        re.sub(r",\s*", ", ", gold),
        gold.replace("\\left", "").replace("\\right", ""),
        re.sub(r"(\\[a-zA-Z]+)", r"\1 ", gold),
        f"${gold}$",
        f"{gold}.",
        f"{gold}\\text{{ cm}}",
        f"{gold} \\text{{ units}}^2",
        f"{gold}\\%",
        re.sub(r"(\d)(\d)", r"\1 \2", gold, count=1),
        re.sub(r"(\d)(\d)", r"\1\\,\2", gold, count=1),
        re.sub(r"\\sqrt\{(\d)\}", r"\\sqrt\1", gold),
        re.sub(
            r"(\d+)\\sqrt\{(\d+)\}",
            lambda m: f"\\sqrt{{{int(m.group(1)) ** 2 * int(m.group(2))}}}",
            gold,
        ),
        re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"\1/\2", gold),
    ]
    if gold[:1] in "([" and gold[-1:] in ")]":
        forms += ["(" + gold[1:], "[" + gold[1:], gold[:-1] + ")", gold[:-1] + "]"]
    value = parse_number(normalize_answer(gold))
    if value is not None:
        forms += [
            f"{float(value):.6f}",
            f"{float(value):.4f}",
            f"{float(value):.8f}",
            str(float(value)),
            f"\\frac{{{value.numerator}}}{{{value.denominator}}}",
            f"{value.numerator}/{value.denominator}",
            f"{2 * value.numerator}/{2 * value.denominator}",
        ]
        if value.denominator == 1:
            forms += [f"{value}.0", f"0{value}", f"{value}\\%", f"{value.numerator:,}"]
            forms.append(f"{value.numerator:,}".replace(",", "{,}"))
    return forms


def near_misses(gold: str, rng: random.Random) -> list[str]:
    """Wrong answers close to the gold."""
    misses = [gold[1:] if gold.startswith("-") else "-" + gold]
    digits = list(_DIGIT.finditer(gold))
    for _ in range(2 if digits else 0):
        spot = rng.choice(digits)
        digit = str((int(spot.group()) + rng.randint(1, 9)) % 10)
        misses.append(gold[: spot.start()] + digit + gold[spot.end() :])
    if gold[:1] in "([" and "," in gold:
        items = gold[1:-1].split(",")
        items[0], items[1] = items[1], items[0]
        misses.append(gold[0] + ",".join(items) + gold[-1])
    value = parse_number(normalize_answer(gold))
    if value is not None:
        misses += [
            f"{value + 1}",
            f"{value * 100}",
            f"{value / 100}",
            f"{float(value) + 1e-7:.7f}",
            f"{float(value) + 3e-6:.7f}",
            f"\\frac{{{value.denominator}}}{{{value.numerator or 1}}}",
        ]
    return misses


def gold_pairs(shared_data: Path, per_dataset: int | None, variants: int | None) -> list[Pair]:
    """Pairs from the golds: ``per_dataset`` golds of each file (None: all of them), each with
    itself, ``variants`` of its spellings and near misses (None: all) and two other golds."""
    rng = random.Random(SEED)
    pairs: list[Pair] = []
    for name, split in DATASETS:
        if not (shared_data / name).is_dir():
            pytest.skip(f"{shared_data / name} is absent")
        golds = [
            p.answer for p in load_problems(name, split=split, data_root=shared_data)
        ]
        chosen = golds if per_dataset is None or per_dataset >= len(golds) else rng.sample(
            golds, per_dataset
        )
        for gold in chosen:
            others = [f for f in spellings(gold) + near_misses(gold, rng) if f.strip() != gold]
            others = list(dict.fromkeys(others))
            if variants is not None:
                others = rng.sample(others, min(variants, len(others)))
            pairs += [(gold, gold)] + [(gold, other) for other in others]
            pairs += [(gold, rng.choice(golds)) for _ in range(2)]
    return pairs


# -- pairs of random grammar values -----------------------------------------------------------


def spell_rational(q: Fraction, rng: random.Random, decimals: bool = True) -> str:
    sign, q = ("-" if q < 0 else ""), abs(q)
    a, b = q.numerator, q.denominator
    if b == 1:
        forms = [f"{sign}{a}", f"{sign}\\frac{{{2 * a}}}{{2}}", f"{sign}{3 * a}/3"]
        forms += [f"{sign}{a}.0"] if decimals else []
    else:
        forms = [
            f"{sign}\\frac{{{a}}}{{{b}}}",
            f"{sign}\\dfrac{{{a}}}{{{b}}}",
            f"{sign}{a}/{b}",
            f"\\frac{{{sign}{a}}}{{{b}}}",
            f"{sign}\\frac{{{2 * a}}}{{{2 * b}}}",
        ]
        forms += [f"{sign}\\frac{a}{b}"] if a < 10 and b < 10 else []
        forms += [f"\\frac{{{a}}}{{-{b}}}"] if sign else []
    if decimals:
        places = next((p for p in range(1, 9) if (q * 10**p).denominator == 1), None)
        if places is None:
            forms.append(f"{sign}{float(q):.{rng.randint(2, 9)}f}")
        else:
            forms.append(f"{sign}{float(q):.{places}f}")
    return rng.choice(forms)


def random_rational(rng: random.Random) -> Fraction:
    kind = rng.random()
    if kind < 0.4:
        return Fraction(rng.randint(-30, 30))
    if kind < 0.8:
        return Fraction(rng.randint(-30, 30), rng.randint(1, 12))
    return Fraction(rng.randint(-(10**6), 10**6), rng.choice([1, 3, 7, 10, 100, 1000, 10**6]))


def spell_root(a: int, b: int, n: int, d: int, rng: random.Random) -> str:
    """``(a + b sqrt(n)) / d``, written one of several ways."""

    def root() -> str:
        return rng.choice([f"\\sqrt{{{n}}}", f"\\sqrt{n}" if n < 10 else f"\\sqrt{{{n}}}"])

    def times_root() -> str:
        return {1: root(), -1: "-" + root()}.get(b, f"{b}{root()}")

    if a == 0 and d == 1:
        return times_root()
    if a == 0:
        forms = [f"\\frac{{{times_root()}}}{{{d}}}", f"{times_root()}/{d}"]
        forms += [f"\\frac{{{b}}}{{{d}}}{root()}"] if b > 0 else []
        return rng.choice(forms)
    plus = f"{a}+{times_root()}" if b > 0 else f"{a}{times_root()}"
    plus_reversed = f"{times_root()}+{a}" if a > 0 else f"{times_root()}{a}"
    numerator = rng.choice([plus, plus_reversed])
    return numerator if d == 1 else f"\\frac{{{numerator}}}{{{d}}}"


def random_scalar(rng: random.Random) -> tuple[str, tuple]:
    if rng.random() < 0.55:
        q = random_rational(rng)
        return spell_rational(q, rng), ("q", q)
    a = rng.choice([0, 0, rng.randint(-9, 9)])
    b = rng.choice([1, -1, rng.randint(-9, 9) or 2])
    n = rng.choice([2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 18, 50])
    d = rng.choice([1, 1, 2, 3, 4, 6])
    return spell_root(a, b, n, d, rng), ("r", a, b, n, d)


def respell_scalar(key: tuple, rng: random.Random) -> str:
    if key[0] == "q":
        return spell_rational(key[1], rng)
    _, a, b, n, d = key
    if a == 0 and d == 1 and rng.random() < 0.3:
        return f"{'-' if b < 0 else ''}\\sqrt{{{b * b * n}}}"
    return spell_root(a, b, n, d, rng)


def random_value(rng: random.Random) -> tuple[str, tuple]:
    kind = rng.random()
    if kind < 0.6:
        text, key = random_scalar(rng)
        return text, ("scalar", key)
    if kind < 0.8:
        items = [random_scalar(rng) for _ in range(rng.choice([2, 2, 3, 4]))]
        return "(" + ", ".join(t for t, _ in items) + ")", ("tuple", tuple(k for _, k in items))
    low, high = rng.choice([None, random_rational(rng)]), rng.choice([None, random_rational(rng)])
    if low is not None and high is not None and low > high:
        low, high = high, low
    opening, closing = rng.choice("(["), rng.choice(")]")
    start = "-\\infty" if low is None else spell_rational(low, rng)
    end = rng.choice(["\\infty", "+\\infty"]) if high is None else spell_rational(high, rng)
    return f"{opening}{start}, {end}{closing}", ("interval", opening, low, high, closing)


def respell_value(key: tuple, rng: random.Random) -> str:
    if key[0] == "scalar":
        return respell_scalar(key[1], rng)
    if key[0] == "tuple":
        return "(" + ",".join(respell_scalar(k, rng) for k in key[1]) + ")"
    _, opening, low, high, closing = key
    start = "-\\infty" if low is None else spell_rational(low, rng)
    end = "\\infty" if high is None else spell_rational(high, rng)
    if rng.random() < 0.2:
        opening = "(" if opening == "[" else "["
    if rng.random() < 0.2:
        closing = ")" if closing == "]" else "]"
    return f"\\left{opening}{start},{end}\\right{closing}"


def grammar_pairs(count: int, seed: int = SEED) -> list[Pair]:
    rng = random.Random(seed)
    pairs: list[Pair] = []
    for _ in range(count):
        text, key = random_value(rng)
        roll = rng.random()
        digits = list(_DIGIT.finditer(text))
        if roll < 0.45 or not digits:
            other = respell_value(key, rng)
        elif roll < 0.75:
            spot = rng.choice(digits)
            digit = str((int(spot.group()) + rng.randint(1, 9)) % 10)
            other = text[: spot.start()] + digit + text[spot.end() :]
        else:
            other, _ = random_value(rng)
        if rng.random() < 0.1:
            other += rng.choice(["\\text{ cm}", " \\text{ units}", "\\text{ m}^2"])
        pairs.append((text, other) if rng.random() < 0.5 else (other, text))
    return pairs


# -- the tests --------------------------------------------------------------------------------


def test_hand_picked_fast_path_verdicts_are_math_verify_verdicts(pool: DeadlinePool) -> None:
    decided = [(gold, answer) for answer, gold, expected in FAST_PATH_CASES if expected is not None]
    assert len(check_against_math_verify(pool, decided)) == len(decided)


def test_fast_path_verdicts_on_benchmark_golds_are_math_verify_verdicts(
    pool: DeadlinePool, shared_data: Path
) -> None:
    pairs = gold_pairs(shared_data, per_dataset=120, variants=3)
    verdicts = check_against_math_verify(pool, pairs)
    assert len(verdicts) >= 1500  # enough to mean something: both verdicts, all datasets
    assert verdicts.count(True) >= 500 and verdicts.count(False) >= 500


def test_fast_path_verdicts_on_random_grammar_values_are_math_verify_verdicts(
    pool: DeadlinePool,
) -> None:
    verdicts = check_against_math_verify(pool, grammar_pairs(400))
    assert verdicts.count(True) >= 100 and verdicts.count(False) >= 100


@pytest.mark.slow
def test_fast_path_verdicts_on_every_spelling_of_many_golds_are_math_verify_verdicts(
    pool: DeadlinePool, shared_data: Path
) -> None:
    pairs = gold_pairs(shared_data, per_dataset=400, variants=None)
    pairs += grammar_pairs(3000, seed=SEED + 1)
    verdicts = check_against_math_verify(pool, pairs)
    assert len(verdicts) >= 15_000

"""The bundled task: procedurally generated arithmetic with difficulty levels (no download).

Levels grow from one-digit sums to multi-operand, multi-digit problems, so a tiny model learns the
easy levels quickly while the hard ones stay mostly wrong: the all-incorrect groups where GRPO has
no gradient and NGRPO does. Problems are assigned to the train or test split by a hash of their
text, so the splits are disjoint for every seed, and the same seed always gives the same problems.
"""

from __future__ import annotations

import hashlib
import random
from typing import Callable, Iterator, Sequence

from ngrpo_rl.envs.problems import Problem

LEVELS = (1, 2, 3, 4, 5)
SPLITS = ("train", "test")


def _digit(rng: random.Random) -> int:
    return rng.randint(0, 9)


def _two_digit(rng: random.Random) -> int:
    return rng.randint(10, 99)


def _level1(rng: random.Random) -> str:  # one-digit sums
    return f"{_digit(rng)}+{_digit(rng)}"


def _level2(rng: random.Random) -> str:  # one-digit differences and products
    return f"{_digit(rng)}{rng.choice('-*')}{_digit(rng)}"


def _level3(rng: random.Random) -> str:  # two-digit with one-digit, sum or difference
    return f"{_two_digit(rng)}{rng.choice('+-')}{_digit(rng)}"


def _level4(rng: random.Random) -> str:  # two-digit with two-digit, sum or difference
    return f"{_two_digit(rng)}{rng.choice('+-')}{_two_digit(rng)}"


def _level5(rng: random.Random) -> str:  # products of two digits by one, or three two-digit operands
    if rng.random() < 0.5:
        return f"{_two_digit(rng)}*{rng.randint(2, 9)}"
    return f"{_two_digit(rng)}{rng.choice('+-')}{_two_digit(rng)}{rng.choice('+-')}{_two_digit(rng)}"


_GENERATORS: dict[int, Callable[[random.Random], str]] = {
    1: _level1,
    2: _level2,
    3: _level3,
    4: _level4,
    5: _level5,
}


def evaluate_expression(text: str) -> int:
    """Evaluates ``a op b [op c]`` with + - * (usual precedence) without ``eval``."""
    terms: list[int] = []
    sign = 1
    number = ""
    product: int | None = None
    for char in text + "+":
        if char.isdigit():
            number += char
            continue
        value = int(number)
        number = ""
        product = value if product is None else product * value
        if char == "*":
            continue
        terms.append(sign * product)
        product = None
        sign = 1 if char == "+" else -1
    return sum(terms)


def split_of(text: str, test_fraction: float = 0.2) -> str:
    """The split a problem belongs to, fixed by a hash of its text (so splits never overlap)."""
    bucket = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2**32
    return "test" if bucket < test_fraction else "train"


class ArithmeticTask:
    """Seeded, reproducible arithmetic problems.

    Args:
        levels: which difficulty levels to draw from (uniformly), any subset of 1-5.
        seed: the same seed gives the same problems in the same order.
        test_fraction: share of the problem space held out for the test split.
    """

    def __init__(
        self, levels: Sequence[int] = LEVELS, seed: int = 0, test_fraction: float = 0.2
    ) -> None:
        unknown = sorted(set(levels) - set(LEVELS))
        if not levels or unknown:
            raise ValueError(f"levels must be a non-empty subset of {LEVELS}, got {list(levels)}")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.levels = tuple(sorted(set(levels)))
        self.seed = seed
        self.test_fraction = test_fraction

    def iter_problems(self, split: str = "train") -> Iterator[Problem]:
        """An endless, reproducible stream of problems of ``split`` (repeats are possible)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        rng = random.Random(f"arithmetic/{self.seed}/{split}")
        while True:
            level = rng.choice(self.levels)
            text = _GENERATORS[level](rng)
            if split_of(text, self.test_fraction) != split:
                continue
            yield Problem(
                id=f"arith-L{level}-{text}",
                problem=text,
                answer=str(evaluate_expression(text)),
                level=level,
                source={"task": "arithmetic", "level": level, "seed": self.seed},
            )

    def problems(self, split: str = "train", n: int = 1000, unique: bool = True) -> list[Problem]:
        """The first ``n`` problems of the stream; ``unique`` skips repeats while new ones remain.

        New problems are taken to be exhausted after a run of repeats ten times as long as the
        number of distinct problems seen (plus 1,000): the chance that an unseen one remains
        after such a run is below e^-10 per problem, and asking for more problems than a split
        holds then costs a fraction of a second instead of millions of draws. From there on the
        stream's repeats fill the list.
        """
        out: list[Problem] = []
        seen: set[str] = set()
        streak, exhausted = 0, not unique
        for problem in self.iter_problems(split):
            if len(out) >= n:
                break
            if not exhausted and problem.id in seen:
                streak += 1
                exhausted = streak > 10 * len(seen) + 1000
                continue
            streak = 0
            seen.add(problem.id)
            out.append(problem)
        return out

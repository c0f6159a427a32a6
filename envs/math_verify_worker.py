"""The math-verify comparison, as run inside a verifier worker process (see ``process_pool``).

``compare((gold, answer, seconds))`` parses ``$gold$`` (once per distinct gold per worker: parsed
golds are cached) and ``$answer$`` with math-verify and returns ``"correct"``, ``"wrong"`` or
``"timeout"``. math-verify's own SIGALRM timeouts are switched off: they turn a timeout into a
silent ``False``. Instead one interval timer bounds the whole comparison; it can interrupt Python
code (most slow sympy work) but not a computation stuck in C, which the parent's outer deadline
ends by killing the worker.
"""

from __future__ import annotations

import collections
import logging
import signal
from typing import Any

from math_verify import parse, verify

logging.getLogger("math_verify").setLevel(logging.CRITICAL)  # it logs every parse failure

_GOLD_CACHE_SIZE = 4096
_parsed_golds: collections.OrderedDict[str, list[Any]] = collections.OrderedDict()


class _ComparisonTimeout(BaseException):
    """Raised by the interval timer; ``except Exception`` in math-verify does not catch it."""


def _on_alarm(signum: int, frame: Any) -> None:
    raise _ComparisonTimeout()


def _parse(latex: str) -> list[Any]:
    return parse(f"${latex}$", parsing_timeout=None)  # type: ignore[arg-type]


def _parsed_gold(gold: str) -> list[Any]:
    parsed = _parsed_golds.get(gold)
    if parsed is None:
        parsed = _parse(gold)
        _parsed_golds[gold] = parsed
        if len(_parsed_golds) > _GOLD_CACHE_SIZE:
            _parsed_golds.popitem(last=False)
    else:
        _parsed_golds.move_to_end(gold)
    return parsed


def compare(task: tuple[str, str, float]) -> str:
    """``(gold, answer, seconds)`` -> ``"correct"``, ``"wrong"`` or ``"timeout"``.

    Both strings are LaTeX without ``$`` delimiters. Must run on the process's main thread.
    """
    gold, answer, seconds = task
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            gold_parsed = _parsed_gold(gold)
            answer_parsed = _parse(answer)
            correct = bool(gold_parsed and answer_parsed) and verify(
                gold_parsed, answer_parsed, timeout_seconds=None
            )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _ComparisonTimeout:  # also when the timer fires just as the comparison ends
        return "timeout"
    finally:
        signal.signal(signal.SIGALRM, previous)
    return "correct" if correct else "wrong"

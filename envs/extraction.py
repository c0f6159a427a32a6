"""Finding the final answer in a completion: small strategies registered by name.

A strategy maps a completion to the answer text it commits to, or None when there is none. Every
strategy runs in time linear in the completion (a 100 kB completion costs milliseconds) and never
evaluates the text. Register more with ``@answer_extractors.register("name")``.

- ``boxed``: the content of the last balanced ``\\boxed{...}`` (also ``\\boxed 5``).
- ``gsm8k``: the number after the last ``#### `` marker, thousands commas removed.
- ``last_number``: the last number: integers, decimals, negatives, fractions such as ``3/4``,
  thousands commas removed (``1,234`` -> ``1234``).
- ``auto`` (the default): ``boxed``, else ``gsm8k``, else ``last_number``. The tiny model's bare
  ``19`` and a reasoning model's ``\\boxed{\\frac{1}{2}}`` both work.
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from ngrpo_rl.registry import Registry

AnswerExtractor = Callable[[str], Optional[str]]
"""``extractor(completion) -> answer text or None``."""

answer_extractors: Registry[AnswerExtractor] = Registry("answer extraction strategy")

DEFAULT_STRATEGY = "auto"

_BOXED = re.compile(r"\\boxed\b\s*")
_BRACE = re.compile(r"[{}]")
_BARE_BOX_WORD = re.compile(r"[^\s${}]+")  # the answer of ``\boxed 5``
_GSM8K_MARKER = re.compile(r"####[ \t]*([^\n]*)")
# A number: thousands-grouped or plain digits, optional decimals, optional "/denominator", not
# starting inside another number. A minus sign counts only where it cannot be a binary minus (not
# after a word character or a closing bracket).
_NUMBER = re.compile(
    r"(?<![\d.])(?:(?<![\w)\]}])-)?"
    r"(?:\d{1,3}(?:,\d{3})+(?!\d)(?:\.\d+)?|\d+(?:\.\d+)?(?:/\d+)?|\.\d+)"
)


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each ``{`` -> index of its matching ``}``, in one pass over the braces."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for match in _BRACE.finditer(text):
        if match.group() == "{":
            stack.append(match.start())
        elif stack:
            pairs[stack.pop()] = match.start()
    return pairs


def last_boxed(text: str) -> Optional[str]:
    """The content of the last balanced ``\\boxed{...}`` in ``text`` (stripped), else None.

    ``\\boxed 5`` (no braces) gives ``"5"``. An unclosed ``\\boxed{`` is skipped in favour of an
    earlier, balanced one; an empty box gives None.
    """
    starts = [match.end() for match in _BOXED.finditer(text)]
    if not starts:
        return None
    pairs: Optional[dict[int, int]] = None
    for start in reversed(starts):
        if start < len(text) and text[start] == "{":
            if pairs is None:
                pairs = _matching_braces(text)
            end = pairs.get(start)
            if end is not None:
                content = text[start + 1 : end].strip()
                if content:
                    return content
        else:
            word = _BARE_BOX_WORD.match(text, start)  # at ``start``, without copying the tail
            content = word.group().rstrip(".,") if word else ""
            if content:
                return content
    return None


@answer_extractors.register("boxed")
def extract_boxed(text: str) -> Optional[str]:
    """The content of the last balanced ``\\boxed{...}``."""
    return last_boxed(text)


@answer_extractors.register("last_number")
def extract_last_number(text: str) -> Optional[str]:
    """The last number in ``text``, thousands commas removed (``"-1,234.5"`` -> ``"-1234.5"``)."""
    last = None
    for last in _NUMBER.finditer(text):
        pass
    return None if last is None else last.group().replace(",", "")


@answer_extractors.register("gsm8k")
def extract_gsm8k(text: str) -> Optional[str]:
    """The answer after the last ``####`` marker (its last number if it has one, commas removed)."""
    last = None
    for last in _GSM8K_MARKER.finditer(text):
        pass
    if last is None:
        return None
    tail = last.group(1).strip()
    number = extract_last_number(tail)
    if number is not None:
        return number
    return tail or None


@answer_extractors.register("auto")
def extract_auto(text: str) -> Optional[str]:
    """``boxed``, else ``gsm8k``, else ``last_number``."""
    for extractor in (extract_boxed, extract_gsm8k, extract_last_number):
        answer = extractor(text)
        if answer is not None:
            return answer
    return None


def extract_answer(text: str, strategy: str = DEFAULT_STRATEGY) -> Optional[str]:
    """Applies the extraction strategy registered as ``strategy`` to ``text``."""
    if not isinstance(text, str):
        raise TypeError(f"completions must be str, got {type(text).__name__}")
    return answer_extractors.get(strategy)(text)

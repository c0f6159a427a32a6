"""The verifier's fast path: decides the easy comparisons in microseconds, in the calling process.

``fast_match(answer, gold)`` returns True or False when the answer can be judged without
math-verify, None when it cannot:

- equal after ``normalize_answer`` (spacing, ``$``, ``\\left``/``\\right``, ``\\dfrac``,
  ``^\\circ``, ``\\$`` and ``\\%`` signs, ``\\text{}`` wrappers, a trailing period): True;
- both plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, thousands commas): compared
  exactly as fractions, so ``"025" == "25"``, ``"27.0" == "27"``, ``"1,234" == "1234"``; unequal
  integers are False; other unequal numbers go to math-verify, which rounds floats.

Nothing here evaluates text: numbers are read with ``fractions.Fraction`` after a strict regex, and
long digit strings are refused before conversion.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Optional

_MAX_DIGITS = 60  # longer numbers are left to math-verify (and int() of huge strings is slow)

_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~|\s+")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![a-zA-Z])")
_SMALL_FRACTIONS = re.compile(r"\\[dt]frac(?![a-zA-Z])")
_DEGREES = re.compile(r"\^\{?\\circ\}?")
_UNIT_SIGNS = re.compile(r"\\[$%]")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_THOUSANDS = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_DECIMAL = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")
_SLASH_FRACTION = re.compile(r"^([+-]?\d+)/(\d+)$")
_LATEX_FRACTION = re.compile(r"^([+-]?)\\frac(?:\{(\d+)\}\{(\d+)\}|(\d)(\d))$")


def normalize_answer(text: str) -> str:
    """A canonical spelling for string comparison; never changes what an answer means."""
    text = text.strip().rstrip(".").rstrip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    text = _TEXT_WRAPPER.sub(r"\1", text)
    text = _SPACING.sub("", text)
    text = _LEFT_RIGHT.sub("", text)
    text = _SMALL_FRACTIONS.sub(r"\\frac", text)
    text = _DEGREES.sub("", text)
    text = _UNIT_SIGNS.sub("", text)
    return text.rstrip(".")


def parse_number(text: str) -> Optional[Fraction]:
    """The exact value of a plain number (``"1,234"``, ``"-0.5"``, ``"\\frac{3}{4}"``) or None."""
    if len(text) > _MAX_DIGITS:
        return None
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if _DECIMAL.match(text):
        return Fraction(text)
    match = _SLASH_FRACTION.match(text)
    if match:
        numerator, denominator = match.groups()
    else:
        match = _LATEX_FRACTION.match(text)
        if not match:
            return None
        sign, braced_top, braced_bottom, digit_top, digit_bottom = match.groups()
        numerator = sign + (braced_top or digit_top)
        denominator = braced_bottom or digit_bottom
    if int(denominator) == 0:
        return None
    return Fraction(int(numerator), int(denominator))


def fast_match(answer: str, gold: str) -> tuple[Optional[bool], str]:
    """``(verdict, method)``: verdict True/False when decided here, None to ask math-verify.

    ``method`` is ``"exact"`` or ``"numeric"`` when decided, ``""`` otherwise.
    """
    answer_normal, gold_normal = normalize_answer(answer), normalize_answer(gold)
    if answer_normal == gold_normal and answer_normal:
        return True, "exact"
    answer_value, gold_value = parse_number(answer_normal), parse_number(gold_normal)
    if answer_value is None or gold_value is None:
        return None, ""
    if answer_value == gold_value:
        return True, "numeric"
    if answer_value.denominator == 1 and gold_value.denominator == 1:
        return False, "numeric"
    return None, ""

"""The verifier's fast path: decides the common comparisons in microseconds, in the calling process.

``fast_match(answer, gold)`` returns True or False when the answer can be judged without
math-verify, None when it cannot. Every verdict it gives is the one math-verify gives for the
pair as the verifier runs it (``$gold$`` and ``$answer$`` parsed, then ``verify``); where that is
not certain it returns None and math-verify decides. In order:

1. a percent sign on one side only: ``N%`` against ``N`` (whole numbers) is True, against any
   other whole number but ``N / 100`` and ``100 N`` False; nothing else is decided (math-verify
   reads ``12.5\\%`` as 0.125 but not 12.5, ``50\\%`` as 50 and 0.5 but not 50.0).
2. the same text (outer ``$`` and spaces aside): True. Different texts equal after
   ``normalize_answer`` (spacing, ``\\left``/``\\right``, ``\\dfrac``, ``^\\circ``, ``\\$``,
   ``\\%``...): True only for plain LaTeX (digits, operators, brackets, ``\\frac``, ``\\sqrt``,
   ``\\pi``...; text with letters math-verify may fail to parse, and then it compares the strings
   themselves), and only when the spaces it reads agree: after a control word (``\\left (`` is
   not ``\\left(``), between digits (``1 234`` is 1 times 234), after a comma before digits
   (``1, 234`` is two numbers, ``1,234`` one), and a final period after more than a plain number.
3. both plain numbers (integers, decimals, ``a/b``, ``\\frac{a}{b}``, thousands commas): equal
   values are True (``"025" == "25"``, ``"27.0" == "27"``, ``"1,234" == "1234"``), unequal
   integers False.
4. both values of the small grammar ``parse_value`` reads (see there): exact reals
   ``q0 + q1 sqrt(n1) + ...`` (fractions, ``\\frac{3\\sqrt{2}}{4}``, ``\\frac{1+\\sqrt{5}}{2}``,
   decimals), a trailing ``\\text{unit}``, tuples ``(1, 2, 3)`` and intervals ``[1, 2)``,
   ``(-\\infty, 3]``. They are compared the way math-verify compares their sympy forms
   (``compare_values``):

   - exact reals: equal values True, unequal False. math-verify checks roots numerically
     (``evalf`` with ``chop``), so unequal values closer than ``1e-9`` (``1e-12`` for
     fractions) are left to it.
   - a decimal on either side: math-verify rounds both to 6 places (and then tries
     ``simplify``): unequal only when they differ by more than ``2e-6`` (plus a relative margin
     for the float's precision); equal when the decimal has at most 6 places and 15 digits, or
     is a whole number below ``2**53``; anything in between is left to math-verify.
   - ``(a, b)`` is an open interval or a pair, both compared element by element; ``[a, b]``,
     ``[a, b)``, ``(a, b]`` are intervals (only with ``a < b``: math-verify reads ``[3, 2]`` as a
     tuple), equal when the brackets and both ends are; an infinite end is always open, so
     ``(3, \\infty]`` is ``(3, \\infty)``. Tuples of different lengths, an interval against a
     pair with a closed end, and a number against a tuple or interval are False.

Degree signs, mixed numbers (``1\\frac{4}{5}``), products of roots, ``\\pi``, symbols, sets,
matrices and anything else outside the grammar go to math-verify.
``tests/test_fast_match_vs_math_verify.py`` checks every verdict given here against math-verify's,
on pairs made from the gold answers of the benchmark files and on random grammar values.

Nothing here evaluates text: numbers are read with ``fractions.Fraction`` after strict regexes,
and long digit strings are refused before conversion.
"""

from __future__ import annotations

import dataclasses
import math
import re
from fractions import Fraction
from typing import Optional, Union

_MAX_DIGITS = 60  # longer numbers are left to math-verify (and int() of huge strings is slow)
_MAX_RADICAND = 10**8  # square-free factoring by trial division stays under a millisecond
_MAX_TEXT = 1000  # longer answers are left to math-verify (the verifier caps answers there too)

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

# What the value grammar refuses outright, on the raw text: percent and degree signs (math-verify
# gives them their own meaning), a space inside a number ("1 000", "5 .5": math-verify reads them
# otherwise) and text wrappers other than one trailing unit.
_RAW_REFUSED = re.compile(
    r"%|\\circ|[\d.](?:\s|~|\\[,;: ]|\\q?quad\b)+[\d.]|\s\.|\\(?:text|mbox|math)"
    r"|\\[a-zA-Z]+\s"  # math-verify reads "\left(" but not "\left ("
)
# A trailing unit, as math-verify removes it: ``\text{...}`` (or ``\mbox``, ``\mathrm``...) at the
# very end, optionally squared. Only plain words, and none that math-verify rewrites first
# ("and", "or", "percent", "pct", "inf"...).
_UNIT_SUFFIX = re.compile(
    r"^(?P<body>.*?)(?:\\[,;:! ]|\s)*"
    r"\\(?:text|textrm|textnormal|textbf|textit|mbox|mathrm|mathit|mathbf)"
    r"\{(?P<unit>[A-Za-z ]+)\}(?:\^\d|\^\{\d\})?\s*$",
    re.DOTALL,
)
_UNIT_REWRITTEN = re.compile(r"and|or|percent|pct|inf|sqrt", re.IGNORECASE)
_INT = re.compile(r"\d+")
_PLAIN_NUMBER = re.compile(r"^[+-]?\d+(?:\.\d+)?$")
_UNSIGNED_DECIMAL = re.compile(r"(\d+)\.(\d+)|\.(\d+)")
_VALUE_CHARACTERS = re.compile(r"^[\d.+\-/,()\[\]{}\\a-z]*$")


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


# -- the value grammar -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Real:
    """An exact real ``q0 + q1 sqrt(n1) + q2 sqrt(n2) + ...`` as written in an answer.

    Attributes:
        terms: ``(radicand, coefficient)`` pairs, radicands square-free and increasing (1 is the
            rational part), no zero coefficients; equal reals have equal terms (square roots of
            distinct square-free integers are linearly independent over the rationals).
        places: decimal places when written as a decimal (math-verify reads it as a float and
            compares it rounded), else None.
        digits: significant digits of that decimal (0 when not a decimal).
    """

    terms: tuple[tuple[int, Fraction], ...]
    places: Optional[int] = None
    digits: int = 0

    @property
    def rational(self) -> Optional[Fraction]:
        """The value when it is rational, else None."""
        if not self.terms:
            return Fraction(0)
        if len(self.terms) == 1 and self.terms[0][0] == 1:
            return self.terms[0][1]
        return None

    def approx(self) -> float:
        """The value as a float."""
        return math.fsum(float(q) * math.sqrt(n) for n, q in self.terms)

    def size(self) -> float:
        """The sum of the terms' absolute values (a bound on float cancellation error)."""
        return math.fsum(abs(float(q)) * math.sqrt(n) for n, q in self.terms)


@dataclasses.dataclass(frozen=True)
class Infinity:
    """``\\infty`` (``positive``) or ``-\\infty``: only as an end of an interval or pair."""

    positive: bool


Item = Union[Real, Infinity]


@dataclasses.dataclass(frozen=True)
class Bracketed:
    """``(a, b, ...)``, ``[a, b]``, ``[a, b)`` or ``(a, b]``: its brackets and items."""

    opening: str
    closing: str
    items: tuple[Item, ...]

    @property
    def is_interval(self) -> bool:
        """Two items with at least one square bracket."""
        return len(self.items) == 2 and (self.opening, self.closing) != ("(", ")")


Value = Union[Real, Bracketed]


class _NotInGrammar(Exception):
    """The text is outside the grammar: math-verify decides."""


def _square_free(n: int) -> tuple[int, int]:
    """``(k, m)`` with ``n == k * k * m`` and ``m`` square-free."""
    k, m, p = 1, n, 2
    while p * p <= m:
        while m % (p * p) == 0:
            m //= p * p
            k *= p
        p += 1 if p == 2 else 2
    return k, m


def _real(terms: dict[int, Fraction]) -> Real:
    return Real(tuple(sorted((n, q) for n, q in terms.items() if q != 0)))


def _add(a: dict[int, Fraction], b: dict[int, Fraction], sign: int) -> dict[int, Fraction]:
    total = dict(a)
    for n, q in b.items():
        total[n] = total.get(n, Fraction(0)) + sign * q
    return total


class _Reader:
    """Recursive descent over a normalized answer (no spaces, ``\\dfrac`` already ``\\frac``)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def peek(self, token: str) -> bool:
        return self.text.startswith(token, self.at)

    def take(self, token: str) -> bool:
        if self.text.startswith(token, self.at):
            self.at += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise _NotInGrammar

    def integer(self) -> int:
        match = _INT.match(self.text, self.at)
        if not match or len(match.group()) > _MAX_DIGITS:
            raise _NotInGrammar
        self.at = match.end()
        return int(match.group())

    def group_integer(self) -> int:
        """``{123}`` or one bare digit (``\\frac12``, ``\\sqrt2``)."""
        if self.take("{"):
            value = self.integer()
            self.expect("}")
            return value
        if self.at < len(self.text) and self.text[self.at].isdigit():
            self.at += 1
            return int(self.text[self.at - 1])
        raise _NotInGrammar

    def root(self) -> dict[int, Fraction]:
        """``\\sqrt{n}`` (``\\sqrt[3]{}`` and roots of expressions are refused)."""
        self.expect("\\sqrt")
        radicand = self.group_integer()
        if radicand > _MAX_RADICAND:
            raise _NotInGrammar
        k, m = _square_free(radicand)
        return {m: Fraction(k)} if radicand else {}

    def value(self) -> Value:
        if self.peek("(") or self.peek("["):
            return self.bracketed()
        real = self.expression(decimals=True)
        return real

    def bracketed(self) -> Bracketed:
        opening = self.text[self.at]
        self.at += 1
        items = [self.item()]
        while self.take(","):
            items.append(self.item())
        if self.at >= len(self.text) or self.text[self.at] not in ")]":
            raise _NotInGrammar
        closing = self.text[self.at]
        self.at += 1
        if len(items) < 2:
            raise _NotInGrammar  # "(5)" or "[5]": not a tuple
        result = Bracketed(opening, closing, tuple(items))
        _check_infinities(result)
        return result

    def item(self) -> Item:
        if self.take("+\\infty") or self.take("\\infty"):
            return Infinity(True)
        if self.take("-\\infty"):
            return Infinity(False)
        return self.expression(decimals=True)

    def expression(self, decimals: bool) -> Real:
        """``[sign] term (+|- term)*``; a decimal only alone (``-2.5``, not ``2.5+\\sqrt{2}``)."""
        sign = -1 if self.take("-") else 1
        if sign == 1:
            self.take("+")
        decimal = _UNSIGNED_DECIMAL.match(self.text, self.at)
        if decimal:
            if not decimals or len(decimal.group()) > _MAX_DIGITS:
                raise _NotInGrammar
            self.at = decimal.end()
            whole, fraction, bare = decimal.groups()
            places = len(fraction or bare)
            digits = len((whole or "").lstrip("0") + (fraction or bare)) or 1
            value = sign * Fraction(decimal.group())
            return Real(_real({1: value}).terms, places=places, digits=digits)
        total = {n: sign * q for n, q in self.term().items()}
        while self.peek("+") or self.peek("-"):
            sign = 1 if self.text[self.at] == "+" else -1
            self.at += 1
            total = _add(total, self.term(), sign)
        return _real(total)

    def term(self) -> dict[int, Fraction]:
        """``n``, ``n\\sqrt{m}``, ``\\sqrt{m}`` (each maybe ``/ d``), ``\\frac{}{}[\\sqrt{m}]``."""
        if self.peek("\\frac"):
            value = self.fraction()
            if self.peek("\\sqrt"):  # \frac{3}{4}\sqrt{2}
                rational = _real(value).rational
                if rational is None:
                    raise _NotInGrammar
                value = {n: rational * q for n, q in self.root().items()}
            self.refuse_juxtaposition()
            return value
        if self.peek("\\sqrt"):
            value = self.root()
        else:
            coefficient = self.integer()
            if self.peek("\\sqrt"):
                value = {n: coefficient * q for n, q in self.root().items()}
            else:
                value = {1: Fraction(coefficient)}
        if self.take("/"):
            denominator = self.integer()
            if denominator == 0:
                raise _NotInGrammar
            value = {n: q / denominator for n, q in value.items()}
        self.refuse_juxtaposition()
        return value

    def refuse_juxtaposition(self) -> None:
        """``2\\frac{1}{2}`` is a mixed number, ``\\sqrt{2}3`` and ``2/3\\sqrt{2}`` are unclear."""
        if self.at < len(self.text) and (
            self.text[self.at].isdigit() or self.text[self.at] in "\\/."
        ):
            raise _NotInGrammar

    def fraction(self) -> dict[int, Fraction]:
        """``\\frac{expression}{[-][k]\\sqrt{m} or n}``, or ``\\frac12``-style digit pairs."""
        self.expect("\\frac")
        if self.take("{"):
            numerator = self.expression(decimals=False).terms
            self.expect("}")
        else:
            numerator = _real({1: Fraction(self.group_integer())}).terms
        if self.take("{"):
            sign = -1 if self.take("-") else 1
            if self.peek("\\sqrt"):
                denominator = self.root()
            else:
                coefficient = self.integer()
                denominator = (
                    {n: coefficient * q for n, q in self.root().items()}
                    if self.peek("\\sqrt")
                    else {1: Fraction(coefficient)}
                )
            self.expect("}")
        else:
            sign, denominator = 1, {1: Fraction(self.group_integer())}
        if len(denominator) != 1:  # zero (no terms); a sum cannot occur here
            raise _NotInGrammar
        ((radicand, coefficient),) = denominator.items()
        # a / (c sqrt(m)) = a sqrt(m) / (c m)
        scale = Fraction(sign) / (coefficient * radicand)
        result: dict[int, Fraction] = {}
        for n, q in numerator:
            common = math.gcd(n, radicand)  # both square-free: n r = common^2 (n/common)(r/common)
            m = (n // common) * (radicand // common)
            result[m] = result.get(m, Fraction(0)) + q * common * scale
        return result


def _check_infinities(value: Bracketed) -> None:
    """Infinities only as the ends of a two-item form, ``-\\infty`` first, ``\\infty`` last;
    a square-bracketed interval only with its start below its end."""
    items = value.items
    if any(isinstance(item, Infinity) for item in items):
        if len(items) != 2:
            raise _NotInGrammar
        start, end = items
        if (isinstance(start, Infinity) and start.positive) or (
            isinstance(end, Infinity) and not end.positive
        ):
            raise _NotInGrammar
    if value.is_interval:
        start, end = items
        if isinstance(start, Real) and isinstance(end, Real) and not _below(start, end):
            raise _NotInGrammar


def _below(a: Real, b: Real) -> bool:
    """``a < b``, decided exactly or with a margin well above float error (else refused)."""
    ra, rb = a.rational, b.rational
    if ra is not None and rb is not None:
        return ra < rb
    difference = _real(_add(dict(b.terms), dict(a.terms), -1))
    if not difference.terms:
        return False
    approx = difference.approx()
    if abs(approx) <= 1e-9 * max(1.0, difference.size()):
        raise _NotInGrammar
    return approx > 0


def _strip_unit(text: str) -> str:
    """``5\\text{ cm}^2`` -> ``5``: math-verify drops a trailing unit when something is left."""
    match = _UNIT_SUFFIX.match(text)
    if (
        match
        and match.group("body").strip()
        and match.group("unit").strip()
        and not _UNIT_REWRITTEN.search(match.group("unit"))
    ):
        return match.group("body")
    return text


def parse_value(text: str) -> Optional[Value]:
    """The ``Real`` or ``Bracketed`` value ``text`` (raw answer or gold) spells, or None.

    The grammar: ``[+-] term ((+|-) term)*`` where a term is an integer, ``k\\sqrt{n}``,
    ``\\sqrt{n}``, one of these ``/ d``, or ``\\frac{expression}{d or k\\sqrt{n}}`` optionally
    followed by ``\\sqrt{n}``; a lone decimal; ``(a, b, ...)``, ``[a, b]``, ``[a, b)``, ``(a, b]``
    of those or ``\\pm\\infty``; optionally followed by a ``\\text{unit}``. Thousands commas and
    ``{,}`` are read at the top level only. Anything else (percent or degree signs, symbols,
    mixed numbers, spaces inside numbers) is None.
    """
    if len(text) > _MAX_TEXT:
        return None
    text = _strip_unit(_outer_dollars_stripped(text)).replace("{,}", ",")
    if _RAW_REFUSED.search(text) or (
        text.endswith(".") and not _PLAIN_NUMBER.match(text.rstrip(".").strip())
    ):
        return None  # math-verify reads "5." as 5 but "11\sqrt2." or "\$36." not at all
    normal = normalize_answer(text)
    if not normal or len(normal) > 4 * _MAX_DIGITS or not _VALUE_CHARACTERS.match(normal):
        return None
    number = None if True in _comma_gaps(text) else parse_number(normal)
    if number is not None:
        return _number_value(normal, number)
    reader = _Reader(normal)
    try:
        value = reader.value()
    except (_NotInGrammar, ZeroDivisionError, RecursionError):
        return None
    return value if reader.at == len(normal) else None


def _number_value(normal: str, number: Fraction) -> Real:
    """A ``parse_number`` result as a ``Real`` (a decimal keeps its places and digits)."""
    plain = normal.replace(",", "").lstrip("+-")
    if "." in plain and "/" not in plain and "\\" not in plain:
        whole, _, fraction = plain.partition(".")
        return Real(
            _real({1: number}).terms,
            places=len(fraction),
            digits=len(whole.lstrip("0") + fraction) or 1,
        )
    return _real({1: number})


# -- comparing values ------------------------------------------------------------------------------


def _decimal_equal_is_safe(real: Real, other: Real) -> bool:
    """Whether math-verify finds a decimal equal to an exactly equal value (see the module doc)."""
    if real.places is None:
        return True
    value = real.rational
    if value is not None and value.denominator == 1 and abs(value) < 2**53:
        return True  # simplify(27.0 - 27) is exactly 0
    return real.places <= 6 and real.digits <= 15 and other.rational is not None


def compare_reals(a: Real, b: Real) -> Optional[bool]:
    """math-verify's verdict on two reals, or None where it is not certain."""
    difference = _real(_add(dict(a.terms), dict(b.terms), -1))
    if not difference.terms:
        if a.places is None and b.places is None:
            return True
        safe = _decimal_equal_is_safe(a, b) and _decimal_equal_is_safe(b, a)
        return True if safe else None
    if a.places is not None or b.places is not None:
        # Both rounded to 6 places, as floats of 53 bits or more.
        largest = max(abs(a.approx()), abs(b.approx()))
        return False if abs(difference.approx()) > 2e-6 + 1e-13 * largest else None
    ra, rb = a.rational, b.rational
    if ra is not None and rb is not None:
        if ra.denominator == rb.denominator == 1:
            return False  # sympy Integers: compared exactly
        return False if abs(ra - rb) > 1e-12 else None
    # evalf(chop=True) zeroes differences below about 2**-49; the float sum is good to 1e-15 of
    # the terms' size.
    return False if abs(difference.approx()) > 1e-9 + 1e-12 * difference.size() else None


def _compare_items(a: Item, b: Item) -> Optional[bool]:
    if isinstance(a, Infinity) or isinstance(b, Infinity):
        return a == b
    return compare_reals(a, b)


def _openness(value: Bracketed) -> tuple[bool, bool]:
    """Whether each end of a two-item form is open (an infinite end always is)."""
    start, end = value.items
    return (
        value.opening == "(" or isinstance(start, Infinity),
        value.closing == ")" or isinstance(end, Infinity),
    )


def compare_values(answer: Value, gold: Value) -> Optional[bool]:
    """math-verify's verdict on two ``parse_value`` results, or None where it is not certain."""
    if isinstance(answer, Real) and isinstance(gold, Real):
        return compare_reals(answer, gold)
    if isinstance(answer, Real) or isinstance(gold, Real):
        return False  # a number is never a tuple or an interval
    assert isinstance(answer, Bracketed) and isinstance(gold, Bracketed)
    if len(answer.items) != len(gold.items):
        return False
    if len(answer.items) == 2 and _openness(answer) != _openness(gold):
        return False  # an interval with a closed end against a pair or another interval
    if len(answer.items) > 2 and (answer.opening, answer.closing) != (gold.opening, gold.closing):
        return None  # "[1, 2, 3]" against "(1, 2, 3)": math-verify decides
    verdicts = [_compare_items(x, y) for x, y in zip(answer.items, gold.items)]
    if False in verdicts:
        return False
    return True if all(verdicts) else None


# -- the whole comparison --------------------------------------------------------------------------

_PLAIN_INTEGER = re.compile(r"^\d+$")
_COMMA_BEFORE_DIGIT = re.compile(r",((?:\s|~|\\[,;: ]|\\q?quad)*)(?=\d)")
_REMOVED_SPACE = re.compile(r"\\!\s*")  # math-verify deletes it before parsing
_CONTROL_WORD_SPACE = re.compile(r"(\\(?!q?quad\b)[a-zA-Z]+)\s+")
_DIGIT_SPACING = re.compile(r"(?<=[\d.])(?:\s|~|\\[,;: ]|\\q?quad\b)+(?=[\d.])")
# LaTeX that math-verify parses into sympy whatever its spacing: numbers, operators, brackets and
# these commands. Text with letters (symbols, words) it may fail to parse, and then it compares the
# strings themselves, spaces included.
_PLAIN_COMMANDS = re.compile(
    r"\\(?:[dt]?frac|sqrt|pi|left|right|infty|cdot|times|circ|q?quad)(?![a-zA-Z])|\\[$%,;:! ]"
)
_PLAIN_REST = re.compile(r"^[\d\s+\-*/^_()\[\]{},.=|]*$")


def _outer_dollars_stripped(text: str) -> str:
    text = text.strip()
    while len(text) >= 2 and text[0] == "$" and text[-1] == "$":
        text = text[1:-1].strip()
    return text


def _exact_form(text: str) -> str:
    """``normalize_answer``, keeping what math-verify reads into the answer: a space after a
    control word (it reads ``\\left(`` but not ``\\left (``), spaces between digits (``1 234``
    is 1 times 234) and a final period after anything but a plain number (``1,2.``)."""
    text = _CONTROL_WORD_SPACE.sub(r"\1{}", _outer_dollars_stripped(text))
    text = _DIGIT_SPACING.sub("{}", text)
    if text.endswith(".") and not _PLAIN_NUMBER.match(text.rstrip(".").strip()):
        text += "{}"
    return normalize_answer(text)


def _is_plain_latex(text: str) -> bool:
    return bool(_PLAIN_REST.match(_PLAIN_COMMANDS.sub("", text)))


def _comma_gaps(text: str) -> tuple[bool, ...]:
    """For each comma before a digit, whether a space follows it: math-verify reads ``1,234`` as
    1234 but ``1, 234`` as two numbers, which ``normalize_answer`` cannot tell apart."""
    if "," not in text:
        return ()
    return tuple(
        bool(gap) for gap in _COMMA_BEFORE_DIGIT.findall(_REMOVED_SPACE.sub("", text))
    )


def _one_percent(
    answer_normal: str,
    gold_normal: str,
    answer_value: Optional[Fraction],
    gold_value: Optional[Fraction],
) -> tuple[Optional[bool], str]:
    """A percent on one side only: ``N%`` equals ``N`` and, through ``simplify``, ``N / 100``."""
    if (
        answer_value is None
        or gold_value is None
        or not _PLAIN_INTEGER.match(answer_normal)
        or not _PLAIN_INTEGER.match(gold_normal)
    ):
        return None, ""  # 12.5% is 0.125 but not 12.5; 50% is 0.5 but not 50.0
    if answer_value == gold_value:
        return True, "numeric"
    if answer_value in (gold_value * 100, gold_value / 100):
        return None, ""
    return False, "numeric"


def fast_match(answer: str, gold: str) -> tuple[Optional[bool], str]:
    """``(verdict, method)``: verdict True/False when decided here, None to ask math-verify.

    ``method`` is ``"exact"`` or ``"numeric"`` when decided, ``""`` otherwise.
    """
    answer_text, gold_text = _outer_dollars_stripped(answer), _outer_dollars_stripped(gold)
    answer_normal, gold_normal = _exact_form(answer_text), _exact_form(gold_text)
    answer_gaps, gold_gaps = _comma_gaps(answer_text), _comma_gaps(gold_text)
    answer_value = None if True in answer_gaps else parse_number(answer_normal)
    gold_value = None if True in gold_gaps else parse_number(gold_normal)
    if ("%" in answer_text) != ("%" in gold_text):
        return _one_percent(answer_normal, gold_normal, answer_value, gold_value)
    if answer_text == gold_text and answer_text:
        return True, "exact"
    if (
        answer_normal == gold_normal
        and answer_normal
        and answer_gaps == gold_gaps
        and _is_plain_latex(answer_text)
        and _is_plain_latex(gold_text)
    ):
        return True, "exact"
    if answer_value is not None and gold_value is not None:
        if "%" in answer_text and not (
            _PLAIN_INTEGER.match(answer_normal) and _PLAIN_INTEGER.match(gold_normal)
        ):
            return None, ""  # percents on both sides: math-verify compares decimals as N / 100
        verdict = compare_reals(
            _number_value(answer_normal, answer_value), _number_value(gold_normal, gold_value)
        )
        return (None, "") if verdict is None else (verdict, "numeric")
    answer_parsed = parse_value(answer_text)
    gold_parsed = parse_value(gold_text) if answer_parsed is not None else None
    if answer_parsed is None or gold_parsed is None:
        return None, ""
    verdict = compare_values(answer_parsed, gold_parsed)
    return (None, "") if verdict is None else (verdict, "numeric")

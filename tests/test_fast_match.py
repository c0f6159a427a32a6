"""The verifier's fast path (``envs/fast_match.py``): its verdicts on hand-picked pairs, the value
grammar, its caps, and property tests against exact arithmetic.

``test_fast_match_vs_math_verify.py`` checks every verdict it decides against math-verify itself.
"""

from __future__ import annotations

import inspect
import math
from fractions import Fraction
from typing import Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ngrpo_rl.envs import Verifier
from ngrpo_rl.envs.fast_match import Bracketed, Infinity, Real, fast_match, parse_value

# (answer, gold, verdict): the fast path's verdict, None where it leaves the pair to math-verify.
# test_fast_match_vs_math_verify.py checks each decided verdict against math-verify itself.
FAST_PATH_CASES = [
    # fractions
    ("\\frac{2}{4}", "\\frac{1}{2}", True),
    ("\\dfrac{1}{2}", "1/2", True),
    ("\\frac{-3}{4}", "-\\frac{3}{4}", True),
    ("\\frac{3}{-4}", "-0.75", True),
    ("\\frac34", "\\frac{3}{4}", True),
    ("\\frac{1}{3}", "\\frac{1}{2}", False),
    ("\\frac{7}{3}", "2", False),
    ("(\\frac12, 1)", "(0.5, 1)", True),  # digit-pair fractions inside a tuple
    # fractions closer than 1e-12 are left to math-verify (which says wrong to these four)
    ("\\frac{1}{10000000000000}", "\\frac{2}{10000000000000}", None),
    ("\\frac{1}{10000000000000}", "\\frac{3}{10000000000000}", None),  # one denominator
    ("\\frac{10000000000001}{10000000000000}", "1", None),
    ("\\frac{1}{3}", "\\frac{10000000000001}{30000000000000}", None),
    # a difference of exactly the margin's float value, 1e-12 (an integer over 2**92)
    (f"\\frac{{{(1e-12).as_integer_ratio()[0]}}}{{{(1e-12).as_integer_ratio()[1]}}}", "0", None),
    # roots
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("\\frac{1}{\\sqrt{3}}", "\\frac{\\sqrt{3}}{3}", True),
    ("\\frac{1+\\sqrt{5}}{2}", "\\frac{\\sqrt5+1}{2}", True),
    ("3\\sqrt{2}-1", "-1+3\\sqrt{2}", True),
    ("\\frac{3}{4}\\sqrt{2}", "\\frac{3\\sqrt{2}}{4}", True),
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
    ("\\sqrt{4}", "2", True),
    ("\\sqrt{100000000}", "10000", True),  # the largest radicand read
    ("\\frac{0}{3}\\sqrt{2}", "0", True),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    ("\\sqrt{4}", "3", False),
    ("-\\sqrt{3}", "\\sqrt{3}", False),
    ("\\frac{1-\\sqrt{5}}{2}", "\\frac{1+\\sqrt{5}}{2}", False),
    ("\\sqrt{8}/1", "2\\sqrt{2}", True),
    ("\\frac{3}{4}\\sqrt{8}", "\\frac{3\\sqrt{2}}{2}", True),
    ("\\frac{3}{4}\\sqrt{8}", "\\frac{3\\sqrt{2}}{8}", False),
    ("\\frac{1}{2\\sqrt{8}}", "\\frac{\\sqrt{2}}{8}", True),
    ("\\frac{\\frac{1}{\\sqrt{2}}}{\\sqrt{3}}", "\\frac{\\sqrt{6}}{6}", True),  # nested fractions
    # roots within 1e-9 plus 1e-12 of the terms' size (2e4 here) are left to math-verify
    ("\\sqrt{99999999}", f"\\frac{{{math.isqrt(99999999 * 10**24) - 10**4}}}{{{10**12}}}", None),
    # decimals: math-verify rounds to 6 places
    ("0.5", "0.4", False),
    ("2.8284", "2\\sqrt{2}", False),
    ("5.500001", "5.5", None),
    ("5.5000004", "5.5", None),
    ("0.333333", "\\frac{1}{3}", None),
    ("2.50", "\\frac{5}{2}", True),
    ("(27.0000000, 1)", "(27, 1)", True),  # a whole number: equal at any number of places
    ("(0.0000000, 1)", "(0, 1)", True),
    ("(0.1234567, 1)", "(\\frac{1234567}{10000000}, 1)", None),  # 7 places: math-verify decides
    ("(1000.0000000, 1)", "(1000, 1)", True),
    ("(9007199254740992.0, 1)", "(9007199254740992, 1)", None),  # 2**53: math-verify decides
    ("(9007199254740993.0, 1)", "(9007199254740993, 1)", None),
    ("(0.015625, 1)", "(\\frac{1}{64}, 1)", True),  # 6 places
    ("(1234567890123.45, 1)", "(\\frac{123456789012345}{100}, 1)", True),  # 15 digits
    ("(123456789012.3456, 1)", "(\\frac{1234567890123456}{10000}, 1)", None),  # 16 digits
    ("(12345678901234.567, 1)", "(\\frac{12345678901234567}{1000}, 1)", None),
    # beyond a float's precision the rounding to 6 places is math-verify's (it says wrong here)
    ("100000000000000000.5", "100000000000000000", None),
    ("1000000000000000.000001", "1000000000000000", None),
    # percents
    ("50", "50\\%", True),
    ("49", "50\\%", False),
    ("12.5", "12.5\\%", None),  # math-verify: wrong (12.5% is 0.125)
    ("0.5", "50\\%", None),  # math-verify: correct
    ("1", "100\\%", None),  # math-verify: correct
    ("12.50\\%", "12.5\\%", None),  # percents of decimals: math-verify
    ("50\\%", "50.0\\%", None),
    ("12.5\\%", "12.6\\%", None),
    # tuples and intervals
    ("(1, 2)", "(1,2)", True),
    ("(2,1)", "(1,2)", False),
    ("(1,2,3)", "(1,2)", False),
    ("(1, 2, 3.0)", "(1,2,3)", True),
    ("[1,2)", "(1,2)", False),
    ("[1,2]", "[1,2)", False),
    ("(3,\\infty]", "(3,\\infty)", True),
    ("[-\\infty,3]", "(-\\infty, 3]", True),
    ("(-\\infty,3)", "(-\\infty,3]", False),
    ("\\left(\\frac{1}{2},3\\right)", "(0.5,3)", True),
    ("(2\\sqrt{2}, 1)", "(\\sqrt{8}, 1)", True),
    ("[1, \\sqrt{2}]", "[1, \\sqrt2]", True),  # a rational start below an irrational end
    ("[\\sqrt{2}, 2]", "[\\sqrt2, 2)", False),
    # ends 1e-10 apart: still an interval, ordered exactly
    ("[1, \\frac{10000000001}{10000000000}]", "[1, \\frac{10000000001}{10000000000})", False),
    ("5", "(5,6)", False),
    ("(1,2,3)", "[1,2,3]", None),  # not an interval
    ("[4,2]", "[3,2]", None),  # math-verify reads these as tuples
    ("1,2", "(1,2)", None),  # a set
    ("(+5, 1)", "(5, 1)", True),
    ("(1, \\infty)", "(1, 2)", False),
    # units
    ("5\\text{ cm}", "5", True),
    ("\\frac{11}{2}\\text{ cm}", "5.5", True),
    ("5 \\text{ cm}^2", "6", False),
    ("5\\text{ percent}", "5", None),
    # spacing and periods math-verify reads
    ("1 234", "1234", None),
    ("1\\,234", "1234", None),
    ("1, 234", "1234", None),
    ("1,\\!234", "1234", True),
    ("1{,}234", "1234", True),
    ("5.", "5", True),
    ("x.", "x", None),
    ("(1,2).", "(1,2)", None),
    ("\\left (1,2\\right )", "(1,2)", None),
    ("m_{\\max }", "m_{\\max}", None),
    ("\\text{(C)}", "\\text{(C)}", True),
    # outside the grammar
    ("1\\frac{4}{5}", "\\frac{9}{5}", None),
    ("\\sqrt{2}\\sqrt{3}", "\\sqrt{6}", None),
    ("\\sqrt23", "3\\sqrt2", None),
    ("2/3\\sqrt{2}", "\\frac{2\\sqrt{2}}{3}", None),
    ("30^\\circ", "0.523599", False),  # degrees are not radians
    ("\\frac{\\pi}{2}", "\\frac{2\\pi}{4}", None),
]


@pytest.mark.parametrize("answer, gold, expected", FAST_PATH_CASES)
def test_the_fast_path_gives_math_verify_verdicts_or_abstains(
    answer: str, gold: str, expected: Optional[bool]
) -> None:
    verdict, method = fast_match(answer, gold)
    assert verdict is expected
    assert method == "" if expected is None else method in ("exact", "numeric")
    assert fast_match(gold, answer)[0] is expected  # the rules are symmetric


def test_parse_value_reads_the_grammar_exactly() -> None:
    root2 = ((2, Fraction(1)),)
    assert parse_value("\\sqrt{8}") == Real(((2, Fraction(2)),))
    assert parse_value("\\frac{1+\\sqrt{5}}{2}") == Real(((1, Fraction(1, 2)), (5, Fraction(1, 2))))
    assert parse_value("\\frac{2}{\\sqrt{2}}") == Real(root2)
    assert parse_value("\\frac{\\sqrt{6}}{\\sqrt{3}}") == Real(root2)
    assert parse_value("\\sqrt{0}") == Real(()) == parse_value("0")
    assert parse_value("-12.50") == Real(((1, Fraction(-25, 2)),), places=2, digits=4)
    assert parse_value("0.005") == Real(((1, Fraction(1, 200)),), places=3, digits=3)
    assert parse_value("$1{,}234$") == Real(((1, Fraction(1234)),))
    assert parse_value("(-\\infty, 3]") == Bracketed(
        "(", "]", (Infinity(False), Real(((1, Fraction(3)),)))
    )
    assert parse_value("[1, 2)").is_interval and not parse_value("(1, 2)").is_interval
    assert parse_value("7\\textbf{ apples}^{2}") == Real(((1, Fraction(7)),))
    for outside in [
        "", "x", "(5)", "(1,\\infty,2)", "(\\infty, 3)", "(3, -\\infty)", "\\frac{1}{0}",
        "\\frac{1}{2}3", "2\\frac{1}{2}", "\\sqrt{-4}", "\\sqrt[3]{8}", "1.5\\sqrt{2}",
        "\\frac{0.5}{2}", "1.5+1", "--3", "5\\text{ and }", "\\text{5}", "1" * 61,
        f"\\sqrt{{{10**8 + 1}}}", "5%", "(1,2]x", "\\frac{1}{1+\\sqrt{2}}", "[2, 2]", "1 2",
        "\\sqrt", "2\\sqrt", "\\frac1", "(1, \\sqrt)", "(1,2", "[1,", "(", "[\\sqrt{2}, \\sqrt{2}]",
    ]:
        assert parse_value(outside) is None, outside
    assert parse_value(f"\\sqrt{{{10**8}}}") == Real(((1, Fraction(10**4)),))


def test_parse_value_leaves_long_texts_to_math_verify() -> None:
    """Answers up to the verifier's 1000 characters are read, normalized forms up to 4 * 60."""
    assert inspect.signature(Verifier).parameters["max_answer_chars"].default == 1000
    assert parse_value(" " * 999 + "5") == Real(((1, Fraction(5)),))
    assert parse_value(" " * 1000 + "5") is None

    def ones(length: int) -> str:  # "(1,1,...,1)", or "(01,1,...)" for an even length
        items = ["1"] * ((length - 1) // 2)
        items[0] = "0" * (1 - length % 2) + items[0]
        return "(" + ",".join(items) + ")"

    assert len(ones(240)) == 240 and len(ones(241)) == 241
    assert isinstance(parse_value(ones(4 * 60)), Bracketed)
    assert parse_value(ones(4 * 60 + 1)) is None
    # numbers of up to 60 characters: an integer in a tuple, a signed decimal (sign aside)
    assert parse_value("(" + "1" * 60 + ", 2)").items[0] == Real(((1, Fraction("1" * 60)),))
    assert parse_value("(" + "1" * 61 + ", 2)") is None
    decimal = "1." + "1" * 58
    assert parse_value("-" + decimal) == Real(((1, -Fraction(decimal)),), places=58, digits=59)
    assert parse_value("-" + decimal + "1") is None


def test_interval_ends_closer_than_the_margin_are_left_to_math_verify() -> None:
    """``[r, sqrt(2)/2]`` is read when the ends are more than 1e-9 times their size (about 1.41)
    apart, and left to math-verify when closer."""
    half_root2 = math.isqrt(2 * 10**24) / 2  # sqrt(2)/2 to 12 places, times 10**12

    def interval(gap: float) -> str:
        return f"[\\frac{{{round(half_root2 - gap * 1e12)}}}{{{10**12}}}, \\frac{{\\sqrt{{2}}}}{{2}}]"

    assert isinstance(parse_value(interval(1.7e-9)), Bracketed)
    assert parse_value(interval(1.2e-9)) is None
    assert parse_value(interval(-1.7e-9)) is None  # start above end: a tuple for math-verify


def test_real_size_bounds_the_float_sum_by_the_terms_magnitudes() -> None:
    value = Real(((1, Fraction(-3)), (2, Fraction(2)), (5, Fraction(-1, 2))))
    assert value.approx() == pytest.approx(-3 + 2 * math.sqrt(2) - math.sqrt(5) / 2, rel=1e-15)
    assert value.size() == pytest.approx(3 + 2 * math.sqrt(2) + math.sqrt(5) / 2, rel=1e-15)
    assert Real(()).size() == 0.0 and Real(()).rational == 0


fractions_ = st.tuples(st.integers(-10**6, 10**6), st.integers(1, 10**4))


def spell_fraction(numerator: int, denominator: int, style: int) -> str:
    sign, top = ("-" if numerator < 0 else ""), abs(numerator)
    return [
        f"{sign}\\frac{{{top}}}{{{denominator}}}",
        f"\\dfrac{{{numerator}}}{{{denominator}}}",
        f"{numerator}/{denominator}",
        f"\\frac{{{-numerator}}}{{-{denominator}}}",
        f"{sign}\\tfrac{{{top}}}{{{denominator}}}",
    ][style]


@settings(max_examples=300, deadline=None)
@given(fractions_, fractions_, st.integers(0, 4), st.integers(0, 4))
def test_fraction_verdicts_are_fraction_arithmetic(a, b, style_a, style_b) -> None:
    verdict, _ = fast_match(spell_fraction(*a, style_a), spell_fraction(*b, style_b))
    assert verdict is (Fraction(*a) == Fraction(*b))


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 30), st.integers(0, 200), st.integers(1, 30), st.integers(0, 200))
def test_root_verdicts_are_real_arithmetic(k: int, n: int, j: int, m: int) -> None:
    # k sqrt(n) == j sqrt(m) exactly when k^2 n == j^2 m; sqrt(k^2 n) is the same number.
    assert fast_match(f"{k}\\sqrt{{{n}}}", f"{j}\\sqrt{m}" if m < 10 else f"{j}\\sqrt{{{m}}}")[
        0
    ] is (k * k * n == j * j * m)
    assert fast_match(f"{k}\\sqrt{{{n}}}", f"\\sqrt{{{k * k * n}}}")[0] is True
    assert fast_match(f"\\frac{{{k}}}{{\\sqrt{{{n}}}}}", f"\\frac{{{k}\\sqrt{{{n}}}}}{{{n}}}")[
        0
    ] is (True if n else None)
    value = parse_value(f"\\frac{{{k}-\\sqrt{{{n}}}}}{{{j}}}")
    assert value is not None and value.approx() == pytest.approx((k - math.sqrt(n)) / j)


decimals_ = st.builds(Fraction, st.integers(-10**9, 10**9), st.sampled_from([1, 10, 100, 10**6]))


@settings(max_examples=300, deadline=None)
@given(decimals_, decimals_)
def test_decimal_verdicts_never_contradict_rounding_to_6_places(x: Fraction, y: Fraction) -> None:
    short = (y * 1000).denominator == 1
    verdict, _ = fast_match(f"{float(x):.6f}", f"{float(y):.3f}" if short else f"{float(y):.6f}")
    if verdict is True:
        assert x == y
    if verdict is False:  # math-verify rounds both to 6 places: they must differ there
        assert round(x, 6) != round(y, 6)
    if abs(x - y) > Fraction(1, 10**5):
        assert verdict is False  # and a clear difference is decided here


@settings(max_examples=200, deadline=None)
@given(
    st.lists(fractions_, min_size=2, max_size=4),
    st.lists(fractions_, min_size=2, max_size=4),
    st.sampled_from(["()", "[]", "[)", "(]"]),
    st.sampled_from(["()", "[]", "[)", "(]"]),
)
def test_tuple_and_interval_verdicts_compare_brackets_and_items(
    a, b, brackets_a, brackets_b
) -> None:
    def spell(items: list, brackets: str) -> str:
        return brackets[0] + ", ".join(spell_fraction(*item, 0) for item in items) + brackets[1]

    values_a, values_b = [Fraction(*x) for x in a], [Fraction(*x) for x in b]
    verdict, _ = fast_match(spell(a, brackets_a), spell(b, brackets_b))
    intervals = [
        len(values) == 2 and brackets != "()"
        for values, brackets in ((values_a, brackets_a), (values_b, brackets_b))
    ]
    if any(
        len(values) > 2 and brackets != "()"
        for values, brackets in ((values_a, brackets_a), (values_b, brackets_b))
    ):
        return  # "[1, 2, 3]" is not in the grammar
    if any(i and not values[0] < values[1] for i, values in zip(intervals, (values_a, values_b))):
        return  # math-verify reads "[3, 2]" as a tuple: not in the grammar
    same_brackets = len(values_a) != 2 or brackets_a == brackets_b
    assert verdict is (values_a == values_b and same_brackets)


grammar_text = st.text(alphabet="0123456789+-/.,()[]{}\\fracsqtinyl %$", max_size=40)


@settings(max_examples=500, deadline=None)
@given(grammar_text | st.text(max_size=40), grammar_text | st.text(max_size=40))
def test_the_fast_path_never_raises_and_is_symmetric(answer: str, gold: str) -> None:
    verdict, method = fast_match(answer, gold)
    assert verdict in (True, False, None) and method in ("", "exact", "numeric")
    assert fast_match(gold, answer)[0] is verdict
    value = parse_value(answer)
    assert value is None or isinstance(value, (Real, Bracketed))

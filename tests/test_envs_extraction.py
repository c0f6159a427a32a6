"""Answer extraction strategies and the verifier's fast path (pure functions, no workers)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl.envs.extraction import answer_extractors, extract_answer, last_boxed
from ngrpo_rl.envs.fast_match import fast_match, normalize_answer, parse_number
from ngrpo_rl.registry import UnknownNameError


@pytest.mark.parametrize(
    "text, expected",
    [
        ("19", "19"),
        ("  19  ", "19"),
        ("12+7=19", "19"),
        ("19<eos>junk", "19"),
        ("The total is 1,234 apples", "1234"),
        ("-5", "-5"),
        ("10-3", "3"),  # a binary minus is not a sign
        ("about -3/4.", "-3/4"),
        ("pi is 3.14", "3.14"),
        ("so \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
        (
            "\\boxed{1} then \\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}",
            "\\left( 3, \\frac{\\pi}{2} \\right)",
        ),
        ("\\boxed{a} and an unclosed \\boxed{\\frac{1}{2", "a"),
        ("\\boxed 5.", "5"),
        ("\\boxed{\\boxed{7}}", "7"),
        ("reasoning 3 + 4 = <<3+4=7>>7\n#### 7", "7"),
        ("#### 1,000\n", "1000"),
        ("", None),
        ("no digits here", None),
        ("\\boxed{}", None),
    ],
)
def test_auto_extraction(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


def test_boxed_wins_over_later_numbers_and_gsm8k_marker_over_last_number() -> None:
    assert extract_answer("\\boxed{12} because 3 * 4 = 12 and 5") == "12"
    assert extract_answer("#### 42\nthanks, see you at 5") == "42"
    assert extract_answer("#### 42\n5", strategy="last_number") == "5"


def test_strategies_are_registered_and_unknown_names_list_the_valid_ones() -> None:
    assert {"auto", "boxed", "gsm8k", "last_number"} <= set(answer_extractors.available())
    assert extract_answer("x = 3", strategy="boxed") is None
    with pytest.raises(UnknownNameError, match="available: auto"):
        extract_answer("1", strategy="nope")


def test_last_boxed_is_linear_on_adversarial_input() -> None:
    text = "\\boxed{" * 20_000 + "x" * 60_000
    start = time.perf_counter()
    assert last_boxed(text) is None
    assert extract_answer("9" * 100_000) == "9" * 100_000
    assert time.perf_counter() - start < 2.0


@given(st.integers(-(10**12), 10**12), st.text(alphabet="abc xyz=+*\n", max_size=30))
@settings(max_examples=200, deadline=None)
def test_last_number_recovers_any_integer_after_text(number: int, prefix: str) -> None:
    assert extract_answer(f"{prefix} {number}") == str(number)


@given(st.text(max_size=300))
@settings(max_examples=300, deadline=None)
def test_extraction_never_raises_on_arbitrary_text(text: str) -> None:
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer)


@pytest.mark.parametrize(
    "answer, gold, expected",
    [
        ("25", "025", (True, "numeric")),
        ("27", "27.0", (True, "numeric")),
        ("1234", "1,234", (True, "numeric")),
        ("0.5", "\\frac{1}{2}", (True, "numeric")),
        ("3/4", "\\frac34", (True, "numeric")),
        ("26", "27.0", (False, "numeric")),
        ("\\dfrac{1}{2}", "\\frac{1}{2}", (True, "exact")),
        (
            "\\left( 3, \\frac{\\pi}{2} \\right)",
            "\\left(3,\\frac{\\pi}{2}\\right)",
            (True, "exact"),
        ),
        ("336", "336^\\circ", (True, "exact")),
        ("40", "\\$40", (True, "exact")),
        ("\\text{(C)}", "(C)", (None, "")),  # words: math-verify may compare the strings
        ("\\text{(C)}", "\\text{(C)}", (True, "exact")),
        ("0.5", "0.4", (False, "numeric")),  # apart by more than math-verify's rounding
        ("0.5", "0.5000004", (None, "")),  # within it: math-verify decides
        ("x", "y", (None, "")),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", (True, "numeric")),
        ("\\sqrt{2}\\sqrt{3}", "\\sqrt{6}", (None, "")),  # outside the value grammar
    ],
)
def test_fast_match(answer: str, gold: str, expected: tuple) -> None:
    assert fast_match(answer, gold) == expected


def test_parse_number_is_strict_and_bounded() -> None:
    assert parse_number("-1234.50") == parse_number("-2469/2")
    assert parse_number("\\frac123") is None  # LaTeX reads it as \frac{1}{2}3: not a plain number
    assert parse_number("1/0") is None
    assert parse_number("1" * 100) is None
    assert parse_number("1e5") is None
    assert normalize_answer(" $ \\left( 1 , 2 \\right) $. ") == "(1,2)"
    assert normalize_answer("\\rightarrow") == "\\rightarrow"


def test_dollar_wrappers_are_removed_and_an_empty_formula_is_no_answer() -> None:
    assert normalize_answer("$12$") == "12"
    assert normalize_answer("$$12$$") == "12"
    assert normalize_answer("$ 3/4 $") == "3/4"
    assert normalize_answer("$$") == ""
    assert fast_match("$$", "$$") == (None, "")  # nothing on either side: not an exact match
    assert fast_match("$7$", "7") == (True, "exact")


def test_numbers_of_up_to_60_characters_are_parsed() -> None:
    sixty, sixty_one = "9" * 60, "9" * 61
    assert parse_number(sixty) == 10**60 - 1
    assert parse_number(sixty_one) is None  # left to math-verify
    assert fast_match(sixty, sixty + ".0") == (None, "")  # the gold's 62 characters are not parsed
    assert fast_match(sixty, sixty[:59] + "8") == (False, "numeric")  # both parsed, unequal integers


def test_unequal_numbers_are_decided_here_only_beyond_math_verify_rounding() -> None:
    assert fast_match("3", "4") == (False, "numeric")
    assert fast_match("0.5", "1") == (False, "numeric")
    assert fast_match("1/3", "0.333") == (False, "numeric")
    # math-verify rounds floats to 6 places: close calls are its to make.
    assert fast_match("3", "2.9999999") == (None, "")
    assert fast_match("1/3", "0.333333") == (None, "")

"""Record formats of math datasets: which field holds the problem, which the gold answer.

A format turns one record (a dict, as read from a jsonl line, a parquet row or a ``datasets`` row)
into ``(problem, answer, level)``. ``detect_format(fields)`` picks the first format whose fields a
record has, in this order:

- ``verl``: verl's RL parquet (MATH in the NGRPO repository): the problem is the user message of
  the chat list ``prompt`` (or ``reward_model.ground_truth.question``); the gold is the last
  ``\\boxed{}`` of ``reward_model.ground_truth.solution`` (its ``target`` is lossy: matrices lose
  their row separators), or ``reward_model.ground_truth`` itself when that is a string.
- ``olympiadbench``: ``question`` (after ``context`` when there is one) and ``final_answer``, a
  list of LaTeX strings with ``$``: the ``$`` are removed and several answers joined with ``", "``.
- ``gsm8k``: ``question`` and ``answer`` ending in ``#### N``: the gold is N without commas.
- ``math``: ``problem`` with ``answer`` (MATH, MATH-500, AIME, AMC; kept as written: ``"025"``,
  ``27.0`` -> ``"27.0"``; the verifier compares numbers by value) or, without ``answer``, the last
  ``\\boxed{}`` of ``solution``.
- ``question_answer``: ``question`` and ``answer`` (any other dataset of that shape).

``mapped_format(problem_field, answer_field)`` reads named fields instead (dotted paths reach into
nested records: ``reward_model.ground_truth``); an answer field holding a whole solution is reduced
to its last ``\\boxed{}`` or the text after ``####``.

Errors are ``RowError``s naming the field and the fix; the loader adds the file and line.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from typing import Any, Callable, Mapping, Optional, Sequence

from ngrpo_rl.envs.extraction import last_boxed
from ngrpo_rl.registry import Registry

ParsedRow = tuple[str, str, Optional[int]]
"""``(problem, answer, level)``."""


class RowError(ValueError):
    """A record that does not fit its format; the message names the field and how to fix it."""


@dataclasses.dataclass(frozen=True)
class RowFormat:
    """A dataset record format: ``detect(fields)`` says whether it applies, ``read(row)`` parses."""

    name: str
    detect: Callable[[Mapping[str, Any]], bool]
    read: Callable[[Mapping[str, Any]], ParsedRow]


row_formats: Registry[RowFormat] = Registry("dataset record format")
_DETECTION_ORDER: list[str] = []

_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_LEVEL = re.compile(r"(\d+)")


def _register(format_: RowFormat) -> RowFormat:
    row_formats.register(format_.name)(format_)
    _DETECTION_ORDER.append(format_.name)
    return format_


def get_field(row: Mapping[str, Any], path: str) -> Any:
    """``row[path]``; a dotted path such as ``reward_model.ground_truth`` reaches into dicts."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            present = (
                ", ".join(sorted(map(str, value)))
                if isinstance(value, Mapping)
                else type(value).__name__
            )
            raise RowError(f"missing field {path!r} (found: {present})")
        value = value[part]
    if value is None:
        raise RowError(f"field {path!r} is empty (null)")
    return value


def _text(row: Mapping[str, Any], path: str, fix: str) -> str:
    try:
        value = get_field(row, path)
    except RowError as error:
        raise RowError(f"{error}; {fix}") from None
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"field {path!r} must be a non-empty string, got {value!r:.80}; {fix}")
    return value


def answer_text(value: Any, field: str) -> str:
    """A gold answer as a string: numbers as written (``27.0`` -> ``"27.0"``), lists joined."""
    if isinstance(value, bool):
        raise RowError(f"field {field!r} holds a boolean, not an answer")
    if isinstance(value, numbers.Real):  # also numpy scalars from parquet
        return str(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        parts = [_UNESCAPED_DOLLAR.sub("", answer_text(item, field)).strip() for item in value]
        value = ", ".join(part for part in parts if part)
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"field {field!r} holds no answer (got {value!r:.80})")
    return value.strip()


def _boxed_answer(solution: str, field: str, fix: str) -> str:
    answer = last_boxed(solution)
    if answer is None:
        raise RowError(f"field {field!r} has no \\boxed{{}} answer; {fix}")
    return answer


def _after_hashes(text: str, field: str) -> str:
    if "####" not in text:
        raise RowError(
            f"field {field!r} has no '#### <answer>' line; "
            "pass answer_field= to read the gold answer elsewhere"
        )
    answer = text.rsplit("####", 1)[1].strip().replace(",", "")
    if not answer:
        raise RowError(f"field {field!r} has nothing after '####'")
    return answer


def parse_level(value: Any) -> Optional[int]:
    """``3``, ``"3"`` or ``"Level 3"`` -> 3; anything else (``"Level ?"``, None) -> None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _LEVEL.search(value)
        return int(match.group(1)) if match else None
    return None


def _user_message(messages: Any) -> Optional[str]:
    if isinstance(messages, str):
        return messages
    if isinstance(messages, Sequence):
        for message in reversed(list(messages)):
            if isinstance(message, Mapping) and message.get("role", "user") == "user":
                content = message.get("content")
                if isinstance(content, str) and content.strip():
                    return content
    return None


def _read_verl(row: Mapping[str, Any]) -> ParsedRow:
    problem = _user_message(row.get("prompt"))
    ground_truth = get_field(row, "reward_model.ground_truth")
    if problem is None:
        problem = _text(
            row, "reward_model.ground_truth.question", "the chat list 'prompt' has no user message"
        )
    if isinstance(ground_truth, Mapping):
        fix = "pass answer_field= to read the gold answer from another field"
        answer = _boxed_answer(
            _text(row, "reward_model.ground_truth.solution", fix),
            "reward_model.ground_truth.solution",
            fix,
        )
    else:
        answer = answer_text(ground_truth, "reward_model.ground_truth")
    return problem, answer, parse_level(row.get("level"))


def _read_olympiadbench(row: Mapping[str, Any]) -> ParsedRow:
    question = _text(row, "question", "pass problem_field= to name the problem field")
    context = row.get("context")
    problem = (
        f"{context.strip()}\n\n{question}"
        if isinstance(context, str) and context.strip()
        else question
    )
    return problem, answer_text(get_field(row, "final_answer"), "final_answer"), None


def _read_gsm8k(row: Mapping[str, Any]) -> ParsedRow:
    question = _text(row, "question", "pass problem_field= to name the problem field")
    answer = _text(row, "answer", "pass answer_field= to name the answer field")
    return question, _after_hashes(answer, "answer"), None


def _read_math(row: Mapping[str, Any]) -> ParsedRow:
    problem = _text(row, "problem", "pass problem_field= to name the problem field")
    if "answer" in row:
        answer = answer_text(get_field(row, "answer"), "answer")
    else:
        fix = "pass answer_field= to name the field holding the gold answer"
        answer = _boxed_answer(_text(row, "solution", fix), "solution", fix)
    return problem, answer, parse_level(row.get("level"))


def _read_question_answer(row: Mapping[str, Any]) -> ParsedRow:
    question = _text(row, "question", "pass problem_field= to name the problem field")
    return question, answer_text(get_field(row, "answer"), "answer"), parse_level(row.get("level"))


def _has(*fields: str) -> Callable[[Mapping[str, Any]], bool]:
    return lambda row: all(field in row for field in fields)


def _is_gsm8k(row: Mapping[str, Any]) -> bool:
    return "question" in row and isinstance(row.get("answer"), str) and "####" in row["answer"]


_register(RowFormat("verl", _has("prompt", "reward_model"), _read_verl))
_register(RowFormat("olympiadbench", _has("question", "final_answer"), _read_olympiadbench))
_register(RowFormat("gsm8k", _is_gsm8k, _read_gsm8k))
_register(
    RowFormat(
        "math", lambda row: "problem" in row and ("answer" in row or "solution" in row), _read_math
    )
)
_register(RowFormat("question_answer", _has("question", "answer"), _read_question_answer))


def detect_format(row: Mapping[str, Any]) -> Optional[RowFormat]:
    """The first format (in the documented order) that fits ``row``'s fields, or None."""
    for name in _DETECTION_ORDER:
        format_ = row_formats.get(name)
        if format_.detect(row):
            return format_
    return None


def mapped_format(
    problem_field: Optional[str], answer_field: Optional[str], first_row: Mapping[str, Any]
) -> RowFormat:
    """A format reading the named fields (dotted paths allowed).

    A missing ``problem_field`` defaults to ``problem`` or ``question``, a missing ``answer_field``
    to ``answer`` or ``final_answer``, whichever ``first_row`` has. An answer holding a whole
    solution is reduced to its last ``\\boxed{}``, else to the text after ``####``.
    """
    problem_path = problem_field or next(
        (f for f in ("problem", "question") if f in first_row), "problem"
    )
    answer_path = answer_field or next(
        (f for f in ("answer", "final_answer") if f in first_row), "answer"
    )

    def read(row: Mapping[str, Any]) -> ParsedRow:
        problem_value = get_field(row, problem_path)
        problem = _user_message(problem_value)
        if problem is None or not problem.strip():
            raise RowError(
                f"field {problem_path!r} holds no problem text (got {problem_value!r:.80})"
            )
        answer = answer_text(get_field(row, answer_path), answer_path)
        if "\\boxed" in answer:
            answer = _boxed_answer(answer, answer_path, "check answer_field=")
        elif "####" in answer:
            answer = _after_hashes(answer, answer_path)
        return problem, answer, parse_level(row.get("level"))

    return RowFormat(f"fields({problem_path}, {answer_path})", lambda row: True, read)

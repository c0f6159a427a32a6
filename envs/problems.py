"""The record every dataset loader and task produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional


@dataclass(frozen=True)
class Problem:
    """One math problem with its gold answer.

    Attributes:
        id: stable identifier, unique within its dataset (e.g. ``"math500-17"``, ``"arith-L2-7*8"``).
        problem: the problem statement shown to the model (before any prompt template).
        answer: the gold final answer as a string (an integer, or LaTeX such as ``\\frac{1}{2}``).
        level: difficulty level where the source has one (MATH levels 1-5, arithmetic levels 1-5).
        source: the original record, for provenance; never used for scoring.
    """

    id: str
    problem: str
    answer: str
    level: Optional[int] = None
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

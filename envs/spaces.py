"""A gymnasium space for free text: prompts as observations, completions as actions.

gymnasium's ``Text`` space only contains strings made of its charset (``[a-zA-Z0-9]`` by default)
and of at least one character, so a LaTeX prompt or an empty completion would fall outside it.
``AnyText`` contains every Python string up to ``max_length`` characters, the empty one included;
its charset only shapes what ``sample()`` draws.
"""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium.spaces import Text

SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " \n"
"""Characters ``AnyText.sample()`` draws from: printable ASCII, enough to exercise a parser."""


class AnyText(Text):
    """Any string of at most ``max_length`` characters (``min_length`` defaults to 0).

    Args:
        max_length: the longest string in the space, in characters.
        min_length: the shortest string in the space (0 allows the empty string).
        sample_charset: the characters ``sample()`` draws from; membership ignores it.
        seed: seed of the space's sampler.
    """

    def __init__(
        self,
        max_length: int,
        *,
        min_length: int = 0,
        sample_charset: str = SAMPLE_CHARSET,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        super().__init__(max_length, min_length=min_length, charset=sample_charset, seed=seed)

    def contains(self, x: Any) -> bool:
        """True for any ``str`` whose length lies within ``[min_length, max_length]``."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    @property
    def is_np_flattenable(self) -> bool:
        """False: arbitrary characters have no index in a fixed charset."""
        return False

    def __repr__(self) -> str:
        return f"AnyText({self.min_length}, {self.max_length})"

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, AnyText)
            and self.min_length == other.min_length
            and self.max_length == other.max_length
        )

"""One training step's responses, kept grouped by prompt.

Rows are prompt-major: group ``g`` is rows ``g * group_size`` to ``(g + 1) * group_size - 1``, the
layout both the generation backends and ``advantages.compute`` (``[num_groups, group_size]``) use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Optional, Sequence

import torch


@dataclass
class Rollouts:
    """Sampled responses with their scores.

    Attributes:
        problem_ids: per row, the id of the problem the response answers.
        golds: per row, the gold answer.
        prompt_token_ids / response_token_ids: token ids per row (the response includes EOS if
            one was generated).
        old_logprobs: per row, the sampling policy's log-prob of each response token.
        texts: per row, the decoded response.
        truncated: per row, True when the response hit ``max_new_tokens`` without EOS.
        correct: [N] bool, the verifier's verdict.
        rewards: [N] float, the reward after shaping (e.g. DAPO's overlong penalty).
        reasons: per row, why the verifier scored it so ("correct", "wrong", "no_answer", "timeout").
        group_size: responses per prompt.
        advantages: [N] float once an estimator has run, else None.
    """

    problem_ids: list[str]
    golds: list[str]
    prompt_token_ids: list[list[int]]
    response_token_ids: list[list[int]]
    old_logprobs: list[list[float]]
    texts: list[str]
    truncated: list[bool]
    correct: torch.Tensor
    rewards: torch.Tensor
    reasons: list[str]
    group_size: int
    advantages: Optional[torch.Tensor] = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.problem_ids)
        if self.group_size < 1 or n % self.group_size:
            raise ValueError(f"{n} rows do not split into groups of {self.group_size}")

    def __len__(self) -> int:
        return len(self.problem_ids)

    @property
    def num_groups(self) -> int:
        return len(self) // self.group_size

    def grouped(self, values: torch.Tensor) -> torch.Tensor:
        """``[N]`` -> ``[num_groups, group_size]``."""
        return values.reshape(self.num_groups, self.group_size)

    def response_lengths(self) -> torch.Tensor:
        return torch.tensor([len(r) for r in self.response_token_ids], dtype=torch.float32)

    def select_groups(self, keep: torch.Tensor) -> "Rollouts":
        """The groups where ``keep`` (bool ``[num_groups]``) is True, in order."""
        rows = torch.repeat_interleave(keep.bool(), self.group_size).nonzero().flatten().tolist()
        return self._take(rows)

    def _take(self, rows: Sequence[int]) -> "Rollouts":
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                values[f.name] = value[list(rows)] if len(rows) else value[:0]
            elif isinstance(value, list):
                values[f.name] = [value[i] for i in rows]
            else:
                values[f.name] = value
        return Rollouts(**values)

    @staticmethod
    def concat(parts: Sequence["Rollouts"]) -> "Rollouts":
        """Joins rollouts of the same group size (advantages are dropped: recompute them)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        sizes = {p.group_size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"cannot join rollouts of group sizes {sorted(sizes)}")
        values = {}
        for f in fields(Rollouts):
            first = getattr(parts[0], f.name)
            if f.name == "advantages":
                values[f.name] = None
            elif isinstance(first, torch.Tensor):
                values[f.name] = torch.cat([getattr(p, f.name) for p in parts])
            elif isinstance(first, list):
                values[f.name] = [x for p in parts for x in getattr(p, f.name)]
            else:
                values[f.name] = first
        return Rollouts(**values)

    def split_groups(self, num_groups: int) -> tuple["Rollouts", "Rollouts"]:
        """The first ``num_groups`` groups, and the rest."""
        cut = num_groups * self.group_size
        return self._take(range(cut)), self._take(range(cut, len(self)))

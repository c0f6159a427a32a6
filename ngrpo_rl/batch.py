"""``TrainingBatch``: one iteration's responses, what every pipeline stage takes and returns.

Rows are prompt-major: group ``g`` is rows ``g * group_size`` to ``(g + 1) * group_size - 1``, the
layout both the generation backends and ``advantages.compute`` (``[num_groups, group_size]``) use.

Sequence-level fields are filled when the batch is sampled and scored. Token-level fields are
optional and are ``[N, R]`` float tensors aligned with the responses (column ``t`` is response token
``t``, zero past a row's length, ``R`` the longest response of the batch); stages fill them when an
algorithm needs them: reference log-probs for a KL term, the critic's values and the returns for
PPO, per-token advantages from a token-level estimator such as GAE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor

TOKEN_FIELDS = ("ref_logprobs", "values", "returns", "token_rewards")
"""The optional ``[N, R]`` fields (``advantages`` may also be ``[N, R]``)."""


@dataclass
class TrainingBatch:
    """Sampled responses, their scores, and what the stages derive from them.

    Attributes:
        problem_ids: per row, the id of the problem the response answers.
        golds: per row, the gold answer.
        prompt_token_ids / response_token_ids: token ids per row (the response includes EOS if
            one was generated).
        old_logprobs: per row, the sampling policy's log-prob of each response token.
        texts: per row, the decoded response.
        truncated: per row, True when the response hit ``max_new_tokens`` without EOS.
        correct: ``[N]`` bool, the verifier's verdict.
        scores: ``[N]`` float, the environment's reward (1/0 from a verifier, or partial credit).
        rewards: ``[N]`` float, the reward after shaping (equal to ``scores`` until a shaper runs).
        reasons: per row, why the verifier scored it so ("correct", "wrong", "no_answer", "timeout").
        group_size: responses per prompt (1 once rows have been dropped individually).
        advantages: ``[N]`` (sequence-level estimators) or ``[N, R]`` (token-level), once estimated.
        ref_logprobs, values, returns, token_rewards: optional ``[N, R]`` token-level fields.
    """

    problem_ids: list[str]
    golds: list[str]
    prompt_token_ids: list[list[int]]
    response_token_ids: list[list[int]]
    old_logprobs: list[list[float]]
    texts: list[str]
    truncated: list[bool]
    correct: Tensor
    scores: Tensor
    rewards: Tensor
    reasons: list[str]
    group_size: int
    advantages: Tensor | None = field(default=None)
    ref_logprobs: Tensor | None = field(default=None)
    values: Tensor | None = field(default=None)
    returns: Tensor | None = field(default=None)
    token_rewards: Tensor | None = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.problem_ids)
        if self.group_size < 1 or n % self.group_size:
            raise ValueError(f"{n} rows do not split into groups of {self.group_size}")
        for name in ("correct", "scores", "rewards"):
            value = getattr(self, name)
            if value.shape != (n,):
                raise ValueError(f"{name} must have shape ({n},), got {tuple(value.shape)}")
        for name in (*TOKEN_FIELDS, "advantages"):
            value = getattr(self, name)
            if value is not None and (value.dim() not in (1, 2) or value.shape[0] != n):
                raise ValueError(f"{name} must have shape [N] or [N, R] with N = {n}, got {tuple(value.shape)}")

    @classmethod
    def empty(cls, group_size: int) -> TrainingBatch:
        """A batch with no rows."""
        none = torch.zeros(0)
        return cls([], [], [], [], [], [], [], none.bool(), none, none, [], group_size)

    def __len__(self) -> int:
        return len(self.problem_ids)

    @property
    def num_groups(self) -> int:
        return len(self) // self.group_size

    @property
    def response_width(self) -> int:
        """R: the longest response, the width of the token-level fields."""
        return max((len(r) for r in self.response_token_ids), default=0)

    def grouped(self, values: Tensor) -> Tensor:
        """``[N]`` -> ``[num_groups, group_size]``."""
        return values.reshape(self.num_groups, self.group_size)

    def response_lengths(self) -> Tensor:
        return torch.tensor([len(r) for r in self.response_token_ids], dtype=torch.float32)

    def response_mask(self) -> Tensor:
        """``[N, R]`` float, 1 on each row's response tokens."""
        lengths = self.response_lengths()
        return (torch.arange(self.response_width)[None, :] < lengths[:, None]).float()

    def padded_old_logprobs(self) -> Tensor:
        """The sampling log-probs as ``[N, R]`` (0 past each row's length)."""
        out = torch.zeros(len(self), self.response_width)
        for i, row in enumerate(self.old_logprobs):
            out[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
        return out

    def with_fields(self, **values) -> TrainingBatch:
        """A copy with some fields replaced (the stages' way to add what they compute)."""
        return replace(self, **values)

    # -- state (checkpoints) -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        """The batch as plain lists and numbers (JSON- and msgpack-safe), exactly: floats are kept
        as their float32 values. ``from_state`` rebuilds it."""
        state: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                state[f.name] = {"dtype": str(value.dtype).removeprefix("torch."), "values": value.tolist()}
            else:
                state[f.name] = value
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "TrainingBatch":
        """The batch ``to_state`` described."""
        values = {}
        for f in fields(cls):
            value = state.get(f.name)
            if isinstance(value, dict) and "dtype" in value:
                value = torch.tensor(value["values"], dtype=getattr(torch, value["dtype"]))
            values[f.name] = value
        return cls(**values)

    # -- selecting rows ------------------------------------------------------------------------

    def select_groups(self, keep: Tensor) -> TrainingBatch:
        """The groups where ``keep`` (bool ``[num_groups]``) is True, in order."""
        rows = torch.repeat_interleave(keep.bool(), self.group_size).nonzero().flatten().tolist()
        return self._take(rows, self.group_size)

    def select_rows(self, keep: Tensor) -> TrainingBatch:
        """The rows where ``keep`` (bool ``[N]``) is True. Rows no longer form groups afterwards
        (``group_size`` becomes 1): do this only after the group statistics are taken."""
        return self._take(keep.bool().nonzero().flatten().tolist(), 1)

    def split_groups(self, num_groups: int) -> tuple[TrainingBatch, TrainingBatch]:
        """The first ``num_groups`` groups, and the rest."""
        cut = num_groups * self.group_size
        return (
            self._take(range(cut), self.group_size),
            self._take(range(cut, len(self)), self.group_size),
        )

    def _take(self, rows: Sequence[int], group_size: int) -> TrainingBatch:
        rows = list(rows)
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Tensor):
                values[f.name] = value[rows] if rows else value[:0]
            elif isinstance(value, list):
                values[f.name] = [value[i] for i in rows]
            else:
                values[f.name] = value
        values["group_size"] = group_size
        return TrainingBatch(**values)

    @staticmethod
    def concat(parts: Sequence[TrainingBatch]) -> TrainingBatch:
        """Joins batches of the same group size. Derived fields (advantages and the token-level
        fields) are dropped: they belong to the batch they were computed for."""
        if not parts:
            raise ValueError("nothing to concatenate")
        sizes = {p.group_size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"cannot join batches of group sizes {sorted(sizes)}")
        values = {}
        for f in fields(TrainingBatch):
            first = getattr(parts[0], f.name)
            if f.name in (*TOKEN_FIELDS, "advantages"):
                continue
            if isinstance(first, Tensor):
                values[f.name] = torch.cat([getattr(p, f.name) for p in parts])
            elif isinstance(first, list):
                values[f.name] = [x for p in parts for x in getattr(p, f.name)]
            else:
                values[f.name] = first
        return TrainingBatch(**values)


__all__ = ["TOKEN_FIELDS", "TrainingBatch"]

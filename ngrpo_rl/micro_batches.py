"""Micro-batches of a mini-batch: the rows sorted by length and packed under a row and a token
budget, each micro-batch cut to its own longest prompt and response, and the same number of
micro-batches on every rank of a learner group.

Which rows share a micro-batch never changes the mini-batch's loss or gradient (the loss is
aggregated with the mini-batch's token and sequence counts), so packing only decides how little
compute goes to padding. verl's dynamic batch size (``use_dynamic_bsz``, ``ppo_max_token_len_per_gpu``)
packs rows the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.distributed import SINGLE, DistributedContext
from ngrpo_rl.models.forward import pad_batch, select_rows


@dataclass
class PaddedBatch:
    """A ``TrainingBatch`` laid out by :func:`ngrpo_rl.models.forward.pad_batch` (``tensors``, on
    the learner's device), with what packing reads, per row (CPU, long): the prompt and response
    lengths and which distinct prompt the row has (rows of one prompt share a pass over it)."""

    tensors: dict[str, Tensor]
    prompt_lengths: Tensor
    response_lengths: Tensor
    prompt_groups: Tensor

    @classmethod
    def of(cls, batch: TrainingBatch, pad_token_id: int, device: str | torch.device) -> PaddedBatch:
        """``batch`` padded on ``device``."""
        groups: dict[tuple[int, ...], int] = {}
        for prompt in batch.prompt_token_ids:
            groups.setdefault(tuple(prompt), len(groups))
        return cls(
            pad_batch(batch.prompt_token_ids, batch.response_token_ids, pad_token_id, device=device),
            torch.tensor([len(p) for p in batch.prompt_token_ids], dtype=torch.long),
            torch.tensor([len(r) for r in batch.response_token_ids], dtype=torch.long),
            torch.tensor([groups[tuple(p)] for p in batch.prompt_token_ids], dtype=torch.long),
        )

    def __len__(self) -> int:
        return len(self.prompt_lengths)

    @property
    def response_length(self) -> int:
        """R, the longest response."""
        return self.tensors["response_mask"].shape[1]

    def select(self, rows: Tensor) -> dict[str, Tensor]:
        """The ``rows`` as a ``pad_batch`` batch without the columns that are padding in all of them."""
        return select_rows(
            self.tensors, rows, int(self.prompt_lengths[rows].max()), int(self.response_lengths[rows].max())
        )


MICRO_BATCH_CALL_TOKENS = 256
"""What one more micro-batch costs, in tokens of compute (the overhead of a forward and a backward
call): :func:`pack_rows` splits a micro-batch where that saves more tokens than this."""


def pack_rows(
    rows: Tensor,
    prompt_lengths: Tensor,
    response_lengths: Tensor,
    *,
    max_rows: int,
    max_tokens: int | None,
    prompt_groups: Tensor | None = None,
) -> list[Tensor]:
    """``rows`` (indices into the per-row tensors) cut into micro-batches.

    The rows are sorted by length (prompt + response; among equal lengths, rows of the same
    ``prompt_groups`` value together: they share a pass over their prompt) and packed greedily in
    that order: a micro-batch takes rows while it holds at most ``max_rows`` of them and, with
    ``max_tokens``, at most that many padded tokens (its rows times its longest prompt plus its
    longest response). A row longer than ``max_tokens`` gets a micro-batch of its own. A
    micro-batch is then split where the padding saved outweighs ``MICRO_BATCH_CALL_TOKENS`` (a
    few long responses do not pad all the short ones to their length). Which rows share a
    micro-batch does not change the mini-batch's loss or gradient, as the loss is aggregated with
    the mini-batch's counts.
    """
    if max_rows < 1 or (max_tokens is not None and max_tokens < 1):
        raise ValueError(f"max_rows and max_tokens must be >= 1, got {max_rows} and {max_tokens}")
    prompts = prompt_lengths[rows].tolist()
    responses = response_lengths[rows].tolist()
    groups_of = prompt_groups[rows].tolist() if prompt_groups is not None else None
    order = sorted(range(len(rows)), key=lambda i: (prompts[i] + responses[i], groups_of[i] if groups_of else 0))
    limit = max_tokens if max_tokens is not None else math.inf
    packed: list[list[int]] = []
    current: list[int] = []
    longest_prompt = longest_response = 0
    for i in order:
        prompt, response = max(longest_prompt, prompts[i]), max(longest_response, responses[i])
        if current and (len(current) == max_rows or (len(current) + 1) * (prompt + response) > limit):
            packed.append(current)
            current, prompt, response = [], prompts[i], responses[i]
        current.append(i)
        longest_prompt, longest_response = prompt, response
    if current:
        packed.append(current)
    cost = _PackingCost(prompts, responses, groups_of)
    return [rows[torch.tensor(part, dtype=torch.long)] for micro in packed for part in cost.split(micro)]


class _PackingCost:
    """The compute of a micro-batch in tokens: rows times the longest response plus, per distinct
    prompt (per row without ``groups``), the longest prompt."""

    def __init__(self, prompts: list[int], responses: list[int], groups: list[int] | None) -> None:
        self.prompts, self.responses, self.groups = prompts, responses, groups

    def prefix_costs(self, rows: list[int]) -> list[int]:
        """The cost of ``rows[:j + 1]`` for every j."""
        costs, seen, prompt, response = [], set(), 0, 0
        for count, i in enumerate(rows, start=1):
            prompt, response = max(prompt, self.prompts[i]), max(response, self.responses[i])
            seen.add(self.groups[i] if self.groups is not None else count)
            costs.append(len(seen) * prompt + count * response)
        return costs

    def split(self, rows: list[int]) -> list[list[int]]:
        """``rows`` (sorted by length) cut where a cut saves more than ``MICRO_BATCH_CALL_TOKENS``."""
        if len(rows) < 2:
            return [rows]
        left = self.prefix_costs(rows)
        right = self.prefix_costs(rows[::-1])[::-1]  # right[j]: the cost of rows[j:]
        cut = min(range(1, len(rows)), key=lambda j: left[j - 1] + right[j])
        if left[cut - 1] + right[cut] + MICRO_BATCH_CALL_TOKENS >= left[-1]:
            return [rows]
        return self.split(rows[:cut]) + self.split(rows[cut:])


def micro_batch_plan(
    rows: Tensor,
    prompt_lengths: Tensor,
    response_lengths: Tensor,
    *,
    max_rows: int,
    max_tokens: int | None,
    prompt_groups: Tensor | None = None,
    context: DistributedContext = SINGLE,
) -> list[tuple[Tensor, float]]:
    """``(micro_rows, weight)`` for this rank's contiguous share of ``rows``, packed by
    :func:`pack_rows`. Every rank gets as many micro-batches as the rank that needs the most (each
    rank holds the whole batch, so it packs every rank's share without communication); the missing
    ones are a dummy row (``rows[:1]``) of weight 0, run only so that collectives match."""
    def pack(rank: int) -> list[Tensor]:
        share = DistributedContext(rank, context.world_size, context.strategy).shard(rows)
        if not len(share):
            return []
        return pack_rows(
            share, prompt_lengths, response_lengths,
            max_rows=max_rows, max_tokens=max_tokens, prompt_groups=prompt_groups,
        )

    own = pack(context.rank)
    count = max([len(own)] + [len(pack(rank)) for rank in range(context.world_size) if rank != context.rank])
    return [(micro, 1.0) for micro in own] + [(rows[:1], 0.0)] * (max(count, 1) - len(own))


__all__ = ["MICRO_BATCH_CALL_TOKENS", "PaddedBatch", "micro_batch_plan", "pack_rows"]

"""The shape-rewards stage: registered shapers turn the environment's reward into the reward the
advantage estimator sees.

A shaper has one signature, ``fn(batch: TrainingBatch, **params) -> rewards [N]``: it reads the
batch (``batch.rewards`` holds the reward so far, the environment's ``scores`` at first) and
returns the new rewards. ``shape_rewards`` runs the chosen shapers in order. Partial credit from an
environment passes through untouched unless a shaper changes it; DAPO's soft overlong penalty is a
shaper like any other. Add one with ``@reward_shapers.register("name")``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.registry import Registry

RewardShaper = Callable[..., Tensor]

reward_shapers: Registry[RewardShaper] = Registry("reward shaper")


def available() -> list[str]:
    """The registered reward-shaper names, sorted."""
    return reward_shapers.available()


def shape_rewards(
    batch: TrainingBatch, names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None
) -> TrainingBatch:
    """``batch`` with ``rewards`` recomputed from ``scores`` by the shapers ``names``, in order.

    ``params[name]`` are the keyword arguments of shaper ``name``. The scores and the shaped rewards
    must be finite (``ValueError`` otherwise).
    """
    params = params or {}
    bad = ~torch.isfinite(batch.scores)
    if bool(bad.any()):
        raise ValueError(
            f"scores contain {int(bad.sum())} non-finite values (first at row {int(bad.nonzero()[0][0])}); "
            "the environment must return finite rewards"
        )
    rewards = batch.scores.clone()
    for name in names:
        rewards = reward_shapers.get(name)(batch.with_fields(rewards=rewards), **params.get(name, {}))
        if rewards.shape != batch.scores.shape or not bool(torch.isfinite(rewards).all()):
            raise ValueError(
                f"reward shaper {name!r} must return finite rewards of shape {tuple(batch.scores.shape)}"
            )
    return batch.with_fields(rewards=rewards)


@reward_shapers.register("overlong_penalty")
def overlong_penalty_shaper(
    batch: TrainingBatch,
    *,
    max_new_tokens: int,
    overlong_buffer: int | None = None,
    overlong_penalty_factor: float = 1.0,
) -> Tensor:
    """Adds DAPO's soft overlong penalty (``overlong_penalty``) for each response's length.

    ``overlong_buffer=None`` ramps over the last third of ``max_new_tokens``, the proportion of the
    official DAPO run (``buffer_length: 1024`` of 3072 tokens, nangongrui-ngr/NGRPO
    ``verl/trainer/config/ppo_trainer.yaml`` l. 155-157), so it follows ``max_new_tokens``.
    """
    if overlong_buffer is None:
        overlong_buffer = max(1, max_new_tokens // 3)
    return batch.rewards + overlong_penalty(
        batch.response_lengths(),
        max_new_tokens=max_new_tokens,
        overlong_buffer=overlong_buffer,
        penalty_factor=overlong_penalty_factor,
    ).to(batch.rewards.dtype)


@reward_shapers.register("binary")
def binary_shaper(batch: TrainingBatch) -> Tensor:
    """The verifier's verdict as the reward, 1 if correct else 0, ignoring partial credit."""
    return batch.correct.to(batch.rewards.dtype)


def overlong_penalty(
    lengths: Tensor, *, max_new_tokens: int, overlong_buffer: int, penalty_factor: float = 1.0
) -> Tensor:
    """DAPO's soft overlong punishment (arXiv 2503.14476, Eq. 13), added to the reward.

    With L_max = ``max_new_tokens`` and L_cache = ``overlong_buffer``, per response length ``len``:
    0 if len <= L_max - L_cache; ((L_max - L_cache) - len) / L_cache * penalty_factor in between,
    reaching -penalty_factor at len == L_max; -penalty_factor beyond.

    Shapes: lengths (any shape, response lengths in tokens) -> penalty of the same shape, in the
    dtype of ``lengths`` if floating, else the default float dtype.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    if (
        isinstance(overlong_buffer, bool)
        or not isinstance(overlong_buffer, int)
        or not 1 <= overlong_buffer <= max_new_tokens
    ):
        raise ValueError(
            f"overlong_buffer must be an int in [1, max_new_tokens={max_new_tokens}], got {overlong_buffer!r}"
        )
    if not (penalty_factor >= 0 and math.isfinite(penalty_factor)):
        raise ValueError(f"penalty_factor must be a finite number >= 0, got {penalty_factor!r}")
    dtype = lengths.dtype if lengths.is_floating_point() else torch.get_default_dtype()
    lengths = lengths.to(dtype)
    if bool((lengths < 0).any()):
        raise ValueError("lengths must be >= 0")
    expected = max_new_tokens - overlong_buffer
    fraction = torch.clamp((expected - lengths) / overlong_buffer, min=-1.0, max=0.0)
    return fraction * penalty_factor

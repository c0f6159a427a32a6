"""Group filters: which prompt groups enter the update, and statistics that explain the groups.

A filter has the signature ``fn(rewards [G, N], correct [G, N] bool) -> keep [G] bool`` for ``G``
groups of ``N`` responses. Select one by name with ``apply(name, rewards)``; add one with
``@group_filters.register("name")`` (or ``register``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl.registry import ParamSource, Registry

GroupFilter = Callable[[Tensor, Tensor], Tensor]

group_filters: Registry[GroupFilter] = Registry("group filter")

# A response counts as correct when its reward exceeds this (0/1 verifier rewards).
DEFAULT_CORRECT_THRESHOLD = 0.5


def register(
    name: str, params: Mapping[str, ParamSource] | None = None, **metadata: Any
) -> Callable[[GroupFilter], GroupFilter]:
    """Decorator adding ``fn(rewards [G, N], correct [G, N], **params) -> keep [G]``; a taken name
    raises. ``params`` maps extra keywords to the config fields (or ``Param``) that feed them."""
    return group_filters.register(name, params, **metadata)


def available() -> list[str]:
    """The registered group-filter names, sorted."""
    return group_filters.available()


def _correctness(rewards: Tensor, correct: Tensor | None) -> Tensor:
    if rewards.dim() != 2:
        raise ValueError(f"rewards must have shape [num_groups, group_size], got {tuple(rewards.shape)}")
    bad = ~torch.isfinite(rewards)
    if bool(bad.any()):
        group, index = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"rewards contain {int(bad.sum())} non-finite values (first at group {group}, index {index}); "
            "the verifier must return finite rewards"
        )
    if correct is None:
        return rewards > DEFAULT_CORRECT_THRESHOLD
    if correct.shape != rewards.shape or correct.dtype != torch.bool:
        raise ValueError(
            f"correct must be a bool tensor of shape {tuple(rewards.shape)}, "
            f"got {correct.dtype} {tuple(correct.shape)}"
        )
    return correct


def apply(name: str, rewards: Tensor, correct: Tensor | None = None, **params: Any) -> Tensor:
    """Bool mask [G] of the groups to keep (True = keep) under filter ``name``.

    ``rewards`` [G, N], finite (NaN or infinity raises ``ValueError``); ``correct`` [G, N] bool, by
    default ``rewards > 0.5``; ``params``: the keyword arguments the filter declared
    (``Settings.component_params("group_filter")``).
    """
    fn = group_filters.get(name)
    correct = _correctness(rewards, correct)
    keep = fn(rewards, correct, **params)
    if keep.shape != (rewards.shape[0],) or keep.dtype != torch.bool:
        raise ValueError(f"group filter {name!r} must return a bool tensor of shape ({rewards.shape[0]},)")
    return keep


@register("none", params={})
def keep_all(rewards: Tensor, correct: Tensor) -> Tensor:
    """Keeps every group."""
    return torch.ones(rewards.shape[0], dtype=torch.bool, device=rewards.device)


@register("drop_homogeneous", params={})
def drop_homogeneous(rewards: Tensor, correct: Tensor) -> Tensor:
    """DAPO's dynamic sampling (arXiv 2503.14476): drops groups whose rewards are all equal, since
    their group-normalised advantages are all zero. A group of one is homogeneous."""
    return ~(rewards == rewards[:, :1]).all(dim=1)


@register("drop_all_correct", params={})
def drop_all_correct(rewards: Tensor, correct: Tensor) -> Tensor:
    """Drops groups in which every response is correct (the released NGRPO code, arXiv 2509.18851)."""
    return ~correct.all(dim=1)


@register("drop_all_incorrect", params={})
def drop_all_incorrect(rewards: Tensor, correct: Tensor) -> Tensor:
    """Drops groups in which no response is correct."""
    return correct.any(dim=1)


def group_stats(rewards: Tensor, correct: Tensor | None = None, advantages: Tensor | None = None) -> dict[str, float]:
    """Metrics that explain a batch of groups (rewards [G, N], correct [G, N] bool).

    ``groups/frac_all_incorrect``, ``groups/frac_all_correct``, ``groups/frac_mixed`` (they sum to 1;
    all 0.0 for no groups). With ``advantages`` (any shape, usually [G, N]) also
    ``advantages/frac_zero`` (|A| < 1e-8), ``advantages/mean``, ``advantages/std`` (population std),
    ``advantages/min``, ``advantages/max`` (all 0.0 when empty).
    """
    correct = _correctness(rewards, correct)
    num_groups = correct.shape[0]
    stats: dict[str, float] = {}
    if num_groups == 0:
        stats.update({"groups/frac_all_incorrect": 0.0, "groups/frac_all_correct": 0.0, "groups/frac_mixed": 0.0})
    else:
        all_correct = correct.all(dim=1)
        all_incorrect = ~correct.any(dim=1) & ~all_correct  # a group of size 0 counts as all-correct
        mixed = ~(all_correct | all_incorrect)
        stats["groups/frac_all_incorrect"] = all_incorrect.double().mean().item()
        stats["groups/frac_all_correct"] = all_correct.double().mean().item()
        stats["groups/frac_mixed"] = mixed.double().mean().item()
    if advantages is not None:
        flat = advantages.detach().reshape(-1).double()
        if flat.numel() == 0:
            stats.update({f"advantages/{k}": 0.0 for k in ("frac_zero", "mean", "std", "min", "max")})
        else:
            values = torch.stack(
                [(flat.abs() < 1e-8).double().mean(), flat.mean(), flat.std(correction=0), flat.min(), flat.max()]
            ).tolist()
            stats.update(dict(zip(("advantages/frac_zero", "advantages/mean", "advantages/std",
                                   "advantages/min", "advantages/max"), values)))
    return stats

"""The stages between collection and learning, and the metrics that explain what they did.

Every stage is ``batch -> batch``; the factories below close over the stage's settings. The
metrics functions are pure functions of batches, so no dict is passed around for stages to mutate.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch

from ngrpo_rl import advantages, group_filters, losses
from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.pipeline.collect import Collected, Stage
from ngrpo_rl.value import outcome_token_rewards


def filter_stage(name: str, params: Mapping[str, Any] | None = None) -> Stage:
    """Keeps the groups group filter ``name`` keeps. Filters see the environment's scores and the
    verifier's verdicts, not shaped rewards: DAPO's dynamic sampling keeps groups by accuracy, so
    an overlong penalty must not make a group "mixed"."""
    params = dict(params or {})

    def filter_groups(batch: TrainingBatch) -> TrainingBatch:
        if not len(batch):
            return batch
        keep = group_filters.apply(
            name, batch.grouped(batch.scores), batch.grouped(batch.correct), **params
        )
        return batch.select_groups(keep)

    return filter_groups


def token_rewards_stage(*, kl_coef: float = 0.0, kl_estimator: str = "k1") -> Stage:
    """Fills ``token_rewards``: each response's reward on its last token, minus ``kl_coef`` times
    the per-token KL estimate of the sampling policy to the reference (PPO's KL in the reward;
    verl's ``apply_kl_penalty``, nangongrui-ngr/NGRPO ``verl/trainer/ppo/ray_trainer.py`` l. 191-220)."""

    def add_token_rewards(batch: TrainingBatch) -> TrainingBatch:
        mask = batch.response_mask()
        kl = None
        if kl_coef:
            if batch.ref_logprobs is None:
                raise ValueError("KL in the reward needs the batch's ref_logprobs")
            kl = losses.kl_penalty(batch.padded_old_logprobs(), batch.ref_logprobs, kl_estimator) * mask
        token_rewards = outcome_token_rewards(batch.rewards, mask, kl=kl, kl_coef=kl_coef)
        return batch.with_fields(token_rewards=token_rewards)

    return add_token_rewards


def estimate_stage(name: str, params: Mapping[str, Any] | None = None) -> Stage:
    """Fills ``advantages`` with estimator ``name``: a sequence-level estimator sees the rewards as
    ``[num_groups, group_size]`` and gives ``[N]``; a token-level one (registered with
    ``level="token"``, e.g. GAE) receives the batch and returns it with ``[N, R]`` advantages."""
    params = dict(params or {})
    token_level = advantages.is_token_level(name)

    def estimate(batch: TrainingBatch) -> TrainingBatch:
        if token_level:
            return advantages.compute_token_level(name, batch, **params)
        grouped = advantages.compute(name, batch.grouped(batch.rewards), **params)
        return batch.with_fields(advantages=grouped.flatten())

    return estimate


def drop_zero_advantage_stage() -> Stage:
    """Removes the rows whose advantage is exactly 0, so they leave the token-mean denominator too
    (the official PSR / NSR runs subset the batch to the correct / incorrect samples,
    nangongrui-ngr/NGRPO ``verl/trainer/ppo/ray_trainer.py`` l. 1230-1240)."""

    def drop(batch: TrainingBatch) -> TrainingBatch:
        if batch.advantages is None or batch.advantages.dim() != 1:
            raise ValueError("dropping zero-advantage samples needs sequence-level advantages")
        return batch.select_rows(batch.advantages != 0)

    return drop


# -- metrics ----------------------------------------------------------------------------------------


def sampling_metrics(collected: Collected) -> dict[str, float]:
    """Groups, rewards, lengths, verifier outcomes and throughput of one collection."""
    every, batch = collected.sampled, collected.batch
    metrics: dict[str, float] = dict(collected.timers)
    metrics.update(
        {
            "groups/sampled": float(every.num_groups),
            "groups/sampling_rounds": float(collected.rounds),
            "groups/kept": float(batch.num_groups),
            "groups/carried_over": float(collected.carried_over),
        }
    )
    if not len(every):
        return metrics
    metrics.update(group_filters.group_stats(every.grouped(every.rewards), every.grouped(every.correct)))
    lengths = every.response_lengths()
    generate_seconds = max(collected.timers.get("timers/generate", 0.0), 1e-9)
    reasons = Counter(every.reasons)
    metrics.update(
        {
            "reward/sampled_accuracy": float(every.correct.float().mean()),
            "response/length_mean": float(lengths.mean()),
            "response/length_max": float(lengths.max()),
            "response/truncation_rate": float(torch.tensor(every.truncated).float().mean()),
            "throughput/tokens_per_s": float(lengths.sum()) / generate_seconds,
            "throughput/samples_per_s": len(every) / generate_seconds,
            "verifier/no_answer_frac": reasons["no_answer"] / len(every),
            "verifier/timeouts": float(reasons["timeout"]),
        }
    )
    if len(batch):
        metrics["reward/mean"] = float(batch.rewards.mean())
        metrics["reward/accuracy"] = float(batch.correct.float().mean())
    return metrics


def advantage_metrics(batch: TrainingBatch) -> dict[str, float]:
    """``advantages/*`` over the responses trained on (token-level advantages over their tokens)."""
    values = batch.advantages
    if values is None:
        return {}
    if values.dim() == 2:
        values = values[batch.response_mask().bool()]
    stats = group_filters.group_stats(batch.grouped(batch.rewards), batch.grouped(batch.correct), values)
    return {k: v for k, v in stats.items() if k.startswith("advantages/")}


__all__ = [
    "advantage_metrics",
    "drop_zero_advantage_stage",
    "estimate_stage",
    "filter_stage",
    "sampling_metrics",
    "token_rewards_stage",
]

"""The learner's loss as a sum of registered terms: policy, KL, entropy, value.

A term has one signature, ``fn(inputs: TermInputs, **params) -> TermOutput``: it reads one
micro-batch's tensors and returns its weighted share of the mini-batch loss (aggregated with the
mini-batch's global token and sequence counts, so micro-batch shares add up to the mini-batch loss
exactly) and additive statistics. ``active_terms`` picks the terms a configuration needs, so the
learner holds no per-term special cases. Add one with ``@loss_terms.register("name")``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from ngrpo_rl import losses
from ngrpo_rl.registry import Registry
from ngrpo_rl.value import clipped_value_loss


@dataclass
class TermInputs:
    """One micro-batch as the loss terms see it; every tensor is ``[b, R]`` unless noted.

    Attributes:
        logp: the policy's log-probs of the response tokens (with gradient).
        old_logp: the sampling policy's log-probs.
        advantages: ``[b]`` or ``[b, R]``.
        mask: 1.0 on the response tokens that count (float).
        loss_agg_mode: how token losses reduce (``losses.aggregate``).
        counts: the mini-batch's ``num_tokens``, ``num_seqs`` and ``max_len``.
        entropy: the policy entropy per token, with gradient when an entropy term is active.
        ref_logp: the reference policy's log-probs (when a KL term is active).
        values / old_values / returns: the critic's values now (with gradient), when the batch
            was sampled, and the regression targets (PPO only).
        is_weights: truncated importance weights min(pi_learner / pi_sampler, C) that multiply
            each token's policy loss (``tis_cap``), else None.
    """

    logp: Tensor
    old_logp: Tensor
    advantages: Tensor
    mask: Tensor
    loss_agg_mode: str
    counts: Mapping[str, Any]
    entropy: Tensor | None = None
    ref_logp: Tensor | None = None
    values: Tensor | None = None
    old_values: Tensor | None = None
    returns: Tensor | None = None
    is_weights: Tensor | None = None

    def aggregate(self, per_token: Tensor, mode: str | None = None) -> Tensor:
        """``per_token`` reduced over the mask with the mini-batch's counts."""
        return losses.aggregate(per_token, self.mask, mode or self.loss_agg_mode, **self.counts)


@dataclass
class TermOutput:
    """A term's weighted loss on one micro-batch and its additive statistics."""

    loss: Tensor
    sums: dict[str, float] = field(default_factory=dict)


LossTerm = Callable[..., TermOutput]

loss_terms: Registry[LossTerm] = Registry("loss term")


@loss_terms.register("policy")
def policy_term(inputs: TermInputs, *, policy_loss: str, params: Mapping[str, Any]) -> TermOutput:
    """The registered policy loss (``ppo_clip`` by default), each token's loss weighted by
    ``is_weights`` when given, aggregated by ``loss_agg_mode``. Its sums are ``PolicyLossOutput.stat_sums()`` (clip counts, ratio statistics)."""
    out = losses.compute_policy_loss(
        policy_loss, inputs.logp, inputs.old_logp, inputs.advantages, inputs.mask, **params
    )
    per_token = out.per_token_loss
    if inputs.is_weights is not None:  # truncated importance sampling (verl's tis_imp_ratio_cap)
        per_token = per_token * inputs.is_weights.detach()
    return TermOutput(inputs.aggregate(per_token), out.stat_sums())


@loss_terms.register("kl")
def kl_term(
    inputs: TermInputs, *, kl_coef: float, kl_estimator: str, kl_clamp: float | None = None
) -> TermOutput:
    """``kl_coef`` times the per-token KL estimate to the reference policy, clamped to
    ``[-kl_clamp, kl_clamp]`` when set (verl's ``low_var_kl`` clamps to 10, nangongrui-ngr/NGRPO
    ``verl/trainer/ppo/core_algos.py`` l. 486-490)."""
    if inputs.ref_logp is None:
        raise ValueError("the KL term needs reference log-probs (ref_logprobs in the batch)")
    kl = losses.kl_penalty(inputs.logp, inputs.ref_logp, kl_estimator)
    if kl_clamp is not None:
        kl = kl.clamp(-kl_clamp, kl_clamp)
    kl = kl * inputs.mask
    return TermOutput(kl_coef * inputs.aggregate(kl), {"kl": float(kl.detach().sum())})


@loss_terms.register("entropy")
def entropy_term(inputs: TermInputs, *, entropy_coef: float) -> TermOutput:
    """Minus ``entropy_coef`` times the policy entropy (a bonus for exploring)."""
    if inputs.entropy is None:
        raise ValueError("the entropy term needs the policy entropy")
    return TermOutput(-entropy_coef * inputs.aggregate(inputs.entropy * inputs.mask))


@loss_terms.register("value")
def value_term(inputs: TermInputs, *, value_clip: float | None) -> TermOutput:
    """The critic's clipped value loss, token-mean over the mini-batch as verl's critic takes it
    (nangongrui-ngr/NGRPO ``verl/trainer/ppo/core_algos.py`` l. 438-461). The critic is a separate
    model, so this term's gradient reaches only the critic's parameters."""
    if inputs.values is None or inputs.old_values is None or inputs.returns is None:
        raise ValueError("the value term needs values, old values and returns")
    out = clipped_value_loss(inputs.values, inputs.old_values, inputs.returns, inputs.mask, clip=value_clip)
    loss = inputs.aggregate(out.per_token_loss, "token-mean")
    valid = inputs.mask.bool()
    return TermOutput(
        loss,
        {
            "value_loss": float(out.per_token_loss.detach()[valid].sum()),
            "value_clipped": float((out.clipped & valid).sum()),
            "values": float(inputs.values.detach()[valid].sum()),
        },
    )


def active_terms(settings: Any, *, has_critic: bool) -> dict[str, dict[str, Any]]:
    """The terms ``settings`` (a ``Settings``) train with, each with its keyword arguments; the
    policy loss gets the parameters it declared."""
    params = settings.component_params("policy_loss", settings.policy_loss)
    terms: dict[str, dict[str, Any]] = {"policy": {"policy_loss": settings.policy_loss, "params": params}}
    if settings.kl_coef > 0 and not settings.kl_in_reward:
        terms["kl"] = {
            "kl_coef": settings.kl_coef,
            "kl_estimator": settings.kl_estimator,
            "kl_clamp": settings.kl_clamp,
        }
    if settings.entropy_coef > 0:
        terms["entropy"] = {"entropy_coef": settings.entropy_coef}
    if has_critic:
        terms["value"] = {"value_clip": settings.value_clip}
    return terms


__all__ = [
    "LossTerm",
    "TermInputs",
    "TermOutput",
    "active_terms",
    "entropy_term",
    "kl_term",
    "loss_terms",
    "policy_term",
    "value_term",
]

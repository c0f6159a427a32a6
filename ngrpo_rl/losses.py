"""Token-level losses: the clipped policy loss, loss aggregation, KL penalties and entropy.

Shapes used throughout: ``B`` sequences (responses) of ``T`` tokens; ``logp``, ``old_logp``,
``ref_logp`` and ``mask`` are [B, T] with ``mask`` 1 (or True) on response tokens and 0 on prompt and
padding; ``advantages`` are [B] (one per response, broadcast over its tokens) or [B, T].
Losses are minimised.

Three registries make each piece pluggable by name: ``policy_losses`` (``ppo_clip``),
``aggregations`` (the ``loss_agg_mode`` values) and ``kl_estimators`` (``k1``, ``k2``, ``k3``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl.registry import ParamSource, Registry, bind_keywords

# ---- input checks ------------------------------------------------------------------------------


def as_bool_mask(mask: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """``mask`` as a bool tensor, checking that it is a tensor of ``shape`` holding only 0 and 1."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"mask must be a torch.Tensor, got {type(mask).__name__}")
    if mask.shape != shape:
        raise ValueError(f"mask must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    if mask.dtype == torch.bool:
        return mask
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 and 1 (1 = response token)")
    return mask != 0


def _bool_mask(mask: Tensor, like: Tensor) -> Tensor:
    return as_bool_mask(mask, like.shape)


def _token_advantages(advantages: Tensor, logp: Tensor) -> Tensor:
    """Advantages [B] or [B, T] as [B, T] (detached: advantages carry no gradient)."""
    batch, tokens = logp.shape
    if advantages.shape == (batch,):
        advantages = advantages.unsqueeze(1)
    elif advantages.shape != (batch, tokens):
        raise ValueError(
            f"advantages must have shape [B] = ({batch},) or [B, T] = ({batch}, {tokens}), "
            f"got {tuple(advantages.shape)}"
        )
    return advantages.detach().to(logp.dtype).expand(batch, tokens)


def _check_logps(logp: Tensor, other: Tensor, other_name: str) -> None:
    if logp.dim() != 2:
        raise ValueError(f"logp must have shape [B, T], got {tuple(logp.shape)}")
    if other.shape != logp.shape:
        raise ValueError(f"{other_name} must have the shape of logp {tuple(logp.shape)}, got {tuple(other.shape)}")


# ---- policy losses -----------------------------------------------------------------------------


@dataclass
class PolicyLossOutput:
    """The per-token policy loss and what the clipping did, all [B, T].

    ``per_token_loss`` is zero off the mask and keeps the autograd graph; the other tensors are
    detached. ``ratio`` is 1 off the mask. The clip flags count only masked tokens:
    ``clipped_upper`` = A > 0 and rho > 1 + epsilon_pos, ``clipped_lower`` = A < 0 and
    rho < 1 - epsilon_neg, ``dual_clipped`` = A < 0 and the dual-clip bound -A*c was taken.
    """

    per_token_loss: Tensor
    ratio: Tensor
    clipped_upper: Tensor
    clipped_lower: Tensor
    dual_clipped: Tensor
    mask: Tensor

    def stat_sums(self) -> dict[str, float]:
        """Additive sums of this (micro-)batch's statistics; combine several with ``merge_stat_sums``.

        Keys: ``clip/upper_count``, ``clip/lower_count``, ``clip/dual_count``, ``ratio/sum``,
        ``tokens`` (masked token count), ``ratio/min``, ``ratio/max`` (+inf / -inf with no tokens).
        """
        with torch.no_grad():
            mask = self.mask
            ratio = self.ratio.to(torch.float64)
            inf = torch.tensor(math.inf, dtype=torch.float64, device=ratio.device)
            values = torch.stack(
                [
                    self.clipped_upper.sum().to(torch.float64),
                    self.clipped_lower.sum().to(torch.float64),
                    self.dual_clipped.sum().to(torch.float64),
                    torch.where(mask, ratio, 0.0).sum(),
                    mask.sum().to(torch.float64),
                    torch.where(mask, ratio, inf).amin() if ratio.numel() else inf,
                    torch.where(mask, ratio, -inf).amax() if ratio.numel() else -inf,
                ]
            ).tolist()  # one device sync for all statistics
        keys = ("clip/upper_count", "clip/lower_count", "clip/dual_count", "ratio/sum", "tokens", "ratio/min", "ratio/max")
        return dict(zip(keys, values))

    def stats(self) -> dict[str, float]:
        """``clip/upper_frac``, ``clip/lower_frac``, ``clip/dual_frac`` (fractions of all masked tokens)
        and ``ratio/mean``, ``ratio/min``, ``ratio/max`` over masked tokens; see ``merge_stat_sums``."""
        return merge_stat_sums([self.stat_sums()])


def merge_stat_sums(sums: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Exact statistics over several micro-batches from their ``PolicyLossOutput.stat_sums()``.

    Returns ``clip/upper_frac``, ``clip/lower_frac``, ``clip/dual_frac`` (count / all masked tokens),
    ``ratio/mean``, ``ratio/min``, ``ratio/max`` (over masked tokens). With no masked tokens the
    fractions are 0.0 and the ratio statistics NaN.
    """
    tokens = sum(s["tokens"] for s in sums)
    if tokens == 0:
        nan = math.nan
        return {"clip/upper_frac": 0.0, "clip/lower_frac": 0.0, "clip/dual_frac": 0.0,
                "ratio/mean": nan, "ratio/min": nan, "ratio/max": nan}
    return {
        "clip/upper_frac": sum(s["clip/upper_count"] for s in sums) / tokens,
        "clip/lower_frac": sum(s["clip/lower_count"] for s in sums) / tokens,
        "clip/dual_frac": sum(s["clip/dual_count"] for s in sums) / tokens,
        "ratio/mean": sum(s["ratio/sum"] for s in sums) / tokens,
        "ratio/min": min(s["ratio/min"] for s in sums),
        "ratio/max": max(s["ratio/max"] for s in sums),
    }


PolicyLoss = Callable[..., PolicyLossOutput]

policy_losses: Registry[PolicyLoss] = Registry("policy loss")


def register_policy_loss(
    name: str, params: Mapping[str, ParamSource] | None = None, **metadata: Any
) -> Callable[[PolicyLoss], PolicyLoss]:
    """Decorator adding ``fn(logp, old_logp, advantages, mask, **params) -> PolicyLossOutput``.

    ``params`` maps its keywords to the config fields that feed them (or to a ``Param`` of its
    own); undeclared, it receives its keywords named like config fields.
    """
    return policy_losses.register(name, params, **metadata)


def available_policy_losses() -> list[str]:
    """The registered policy-loss names, sorted."""
    return policy_losses.available()


def bind_policy_loss_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` (e.g. a whole config) that policy loss ``name`` accepts."""
    return bind_keywords(policy_losses.get(name), params, skip=4)


def compute_policy_loss(
    name: str, logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, **params: Any
) -> PolicyLossOutput:
    """Runs policy loss ``name`` on logp/old_logp/mask [B, T] and advantages [B] or [B, T]."""
    fn = policy_losses.get(name)
    _check_logps(logp, old_logp, "old_logp")
    _bool_mask(mask, logp)
    _token_advantages(advantages, logp)
    return fn(logp, old_logp, advantages, mask, **params)


@register_policy_loss(
    "ppo_clip", params={"epsilon_pos": "epsilon_pos", "epsilon_neg": "epsilon_neg", "dual_clip_c": "dual_clip_c"}
)
def ppo_clip(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    epsilon_pos: float = 0.2,
    epsilon_neg: float = 0.2,
    dual_clip_c: float | None = None,
) -> PolicyLossOutput:
    """PPO's clipped surrogate with asymmetric bounds (PPO, arXiv 1707.06347; DAPO's clip-higher,
    arXiv 2503.14476; NGRPO's asymmetric clipping, arXiv 2509.18851) and optional dual clip (arXiv 1912.09729).

    Per token, with ``rho = exp(logp - old_logp)``:
    ``l = max(-A*rho, -A*clamp(rho, 1 - epsilon_neg, 1 + epsilon_pos))``, i.e. ``-A*min(rho, 1+epsilon_pos)``
    for A > 0 and ``-A*max(rho, 1-epsilon_neg)`` for A < 0. With ``dual_clip_c`` (> 1), for A < 0
    ``l = min(l, -A*c)`` bounds the loss of a negative sample whose ratio exploded.
    Presets: GRPO 0.2/0.2, DAPO 0.2/0.28 (epsilon_neg/epsilon_pos), NGRPO 0.16/0.24.

    Shapes: logp, old_logp, mask [B, T]; advantages [B] or [B, T]. ``old_logp`` and ``advantages``
    are detached. Returns a ``PolicyLossOutput`` of [B, T] tensors.
    """
    if not (epsilon_pos >= 0 and math.isfinite(epsilon_pos)):
        raise ValueError(f"epsilon_pos must be a finite number >= 0, got {epsilon_pos!r}")
    if not 0 <= epsilon_neg <= 1:
        raise ValueError(f"epsilon_neg must be in [0, 1], got {epsilon_neg!r}")
    if dual_clip_c is not None and not dual_clip_c > 1:
        raise ValueError(f"dual_clip_c must be > 1 (or None to disable dual clipping), got {dual_clip_c!r}")
    _check_logps(logp, old_logp, "old_logp")
    valid = _bool_mask(mask, logp)
    adv = _token_advantages(advantages, logp)

    # Masking the log-ratio (not just the loss) keeps padding with -inf log-probs from producing NaN
    # gradients through exp.
    log_ratio = torch.where(valid, logp - old_logp.detach(), torch.zeros_like(logp))
    ratio = torch.exp(log_ratio)
    clipped_ratio = torch.clamp(ratio, 1.0 - epsilon_neg, 1.0 + epsilon_pos)
    loss = torch.maximum(-adv * ratio, -adv * clipped_ratio)

    dual_clipped = torch.zeros_like(valid)
    if dual_clip_c is not None:
        dual_bound = -adv * dual_clip_c
        dual_clipped = valid & (adv < 0) & (loss > dual_bound)
        loss = torch.where(adv < 0, torch.minimum(loss, dual_bound), loss)

    with torch.no_grad():
        clipped_upper = valid & (adv > 0) & (ratio > 1.0 + epsilon_pos)
        clipped_lower = valid & (adv < 0) & (ratio < 1.0 - epsilon_neg)
    return PolicyLossOutput(
        per_token_loss=torch.where(valid, loss, torch.zeros_like(loss)),
        ratio=ratio.detach(),
        clipped_upper=clipped_upper,
        clipped_lower=clipped_lower,
        dual_clipped=dual_clipped.detach(),
        mask=valid,
    )


# ---- loss aggregation --------------------------------------------------------------------------

Aggregation = Callable[..., Tensor]

aggregations: Registry[Aggregation] = Registry("loss aggregation mode")


def register_aggregation(name: str) -> Callable[[Aggregation], Aggregation]:
    """Decorator adding ``fn(masked_loss [B, T], valid [B, T] bool, *, num_tokens, num_seqs, max_len)``."""
    return aggregations.register(name)


def available_aggregations() -> list[str]:
    """The registered loss aggregation modes, sorted."""
    return aggregations.available()


def aggregate(
    per_token_loss: Tensor,
    mask: Tensor,
    mode: str,
    *,
    num_tokens: float | Tensor | None = None,
    num_seqs: float | Tensor | None = None,
    max_len: int | None = None,
) -> Tensor:
    """Reduces a per-token loss [B, T] over the masked tokens to a scalar by ``mode``.

    ``num_tokens`` / ``num_seqs`` default to this batch's masked-token count and B. For gradient
    accumulation pass the counts of the whole mini-batch to every micro-batch: the micro-batch losses
    then sum to the mini-batch loss exactly. ``max_len`` (= max_new_tokens) is required by
    ``seq-mean-token-sum-norm``. A zero count gives a loss of 0 (with zero gradient), never NaN.
    """
    fn = aggregations.get(mode)
    if per_token_loss.dim() != 2:
        raise ValueError(f"per_token_loss must have shape [B, T], got {tuple(per_token_loss.shape)}")
    valid = _bool_mask(mask, per_token_loss)
    masked = torch.where(valid, per_token_loss, torch.zeros_like(per_token_loss))
    num_tokens = valid.sum() if num_tokens is None else num_tokens
    num_seqs = per_token_loss.shape[0] if num_seqs is None else num_seqs
    return fn(masked, valid, num_tokens=num_tokens, num_seqs=num_seqs, max_len=max_len)


def _divide(total: Tensor, count: float | Tensor) -> Tensor:
    """total / count, or 0 (keeping the graph, zero gradient) when count is 0."""
    count = torch.as_tensor(count, dtype=total.dtype, device=total.device)
    safe = torch.where(count > 0, count, torch.ones_like(count))
    return torch.where(count > 0, total / safe, total * 0.0)


@register_aggregation("token-mean")
def token_mean(masked: Tensor, valid: Tensor, *, num_tokens: float | Tensor, **_: Any) -> Tensor:
    """sum(m * l) / num_tokens: every token of the mini-batch weighs the same (DAPO, NGRPO)."""
    return _divide(masked.sum(), num_tokens)


@register_aggregation("seq-mean-token-mean")
def seq_mean_token_mean(masked: Tensor, valid: Tensor, *, num_seqs: float | Tensor, **_: Any) -> Tensor:
    """Sum over sequences of each sequence's token mean, / num_seqs (original GRPO).

    A sequence without masked tokens contributes 0.
    """
    per_seq = _divide(masked.sum(dim=1), valid.sum(dim=1))
    return _divide(per_seq.sum(), num_seqs)


@register_aggregation("seq-mean-token-sum")
def seq_mean_token_sum(masked: Tensor, valid: Tensor, *, num_seqs: float | Tensor, **_: Any) -> Tensor:
    """Sum over sequences of each sequence's token sum, / num_seqs."""
    return _divide(masked.sum(), num_seqs)


@register_aggregation("seq-mean-token-sum-norm")
def seq_mean_token_sum_norm(
    masked: Tensor, valid: Tensor, *, num_seqs: float | Tensor, max_len: int | None, **_: Any
) -> Tensor:
    """sum(m * l) / (num_seqs * max_len) with the constant max_len = max_new_tokens (Dr. GRPO,
    arXiv 2503.20783): no length normalisation that would favour long wrong answers."""
    if max_len is None or max_len < 1:
        raise ValueError(
            f"loss aggregation 'seq-mean-token-sum-norm' needs max_len >= 1 (= max_new_tokens), got {max_len!r}"
        )
    return _divide(masked.sum(), torch.as_tensor(num_seqs, dtype=masked.dtype, device=masked.device) * max_len)


# ---- KL penalty --------------------------------------------------------------------------------

KLEstimator = Callable[[Tensor, Tensor], Tensor]

kl_estimators: Registry[KLEstimator] = Registry("KL estimator")

# exp(20) ~ 5e8: beyond this the k3 estimate is meaningless and exp would overflow in half precision.
K3_LOG_RATIO_BOUND = 20.0


def register_kl_estimator(name: str) -> Callable[[KLEstimator], KLEstimator]:
    """Decorator adding ``fn(logp [B, T], ref_logp [B, T]) -> per-token KL estimate [B, T]``."""
    return kl_estimators.register(name)


def available_kl_estimators() -> list[str]:
    """The registered KL estimator names, sorted."""
    return kl_estimators.available()


def kl_penalty(logp: Tensor, ref_logp: Tensor, estimator: str) -> Tensor:
    """Per-token estimate [B, T] of KL(pi || pi_ref) from samples of pi, by ``estimator`` (k1 | k2 | k3).

    Schulman, "Approximating KL Divergence" (2020), with log r = ref_logp - logp:
    k1 = -log r, k2 = (log r)^2 / 2, k3 = (r - 1) - log r. Aggregate with ``aggregate``.
    """
    fn = kl_estimators.get(estimator)
    _check_logps(logp, ref_logp, "ref_logp")
    return fn(logp, ref_logp)


@register_kl_estimator("k1")
def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 = logp - ref_logp: unbiased, high variance, can be negative."""
    return logp - ref_logp


@register_kl_estimator("k2")
def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 = (logp - ref_logp)^2 / 2: biased, low variance, >= 0."""
    return 0.5 * (logp - ref_logp) ** 2


@register_kl_estimator("k3")
def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = exp(ref_logp - logp) - (ref_logp - logp) - 1: unbiased, low variance, >= 0.

    The log-ratio is clamped to [-20, 20] so exp cannot overflow; it is computed as
    expm1(x) - x and floored at 0 so rounding never makes it negative.
    """
    log_ratio = torch.clamp(ref_logp - logp, -K3_LOG_RATIO_BOUND, K3_LOG_RATIO_BOUND)
    return torch.clamp(torch.expm1(log_ratio) - log_ratio, min=0.0)


# ---- entropy -----------------------------------------------------------------------------------


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy [B, T] of the softmax over the last axis of logits [B, T, V].

    H = -sum(p * log p) with log p = log_softmax(z), which is shift invariant and stable for large
    logits. Half-precision logits are upcast to float32; logits of -inf (masked vocabulary entries)
    contribute 0, with a finite gradient.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    log_probs = torch.log_softmax(logits, dim=-1)
    # p * log p is 0 * -inf = NaN where p = 0; those entries contribute nothing (and no gradient).
    finite = torch.where(torch.isneginf(log_probs), torch.zeros_like(log_probs), log_probs)
    return -(log_probs.exp() * finite).sum(dim=-1)

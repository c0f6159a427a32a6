"""The pure tensor pieces of PPO with a critic: token rewards, GAE, whitening and the value loss.

They follow the NGRPO paper's official PPO baseline (nangongrui-ngr/NGRPO at e7a3804,
``train_scripts/train_qwen2.5-math-7b_ppo.sh`` and verl inside it): the outcome score sits on the
last response token and a k1 KL penalty (coefficient 0.001) is subtracted from every token's reward
(``verl/trainer/ppo/ray_trainer.py`` ``apply_kl_penalty``, lines 191-220); advantages come from
GAE with gamma = lambda = 1 (``verl/trainer/config/ppo_trainer.yaml`` lines 164-165) and are
whitened over the response tokens, while the critic's returns are advantages + values taken before
whitening (``verl/trainer/ppo/core_algos.py`` lines 70-108); the critic minimises the clipped
value loss with clip 0.5 (``core_algos.py`` lines 438-461, ``ppo_trainer.yaml`` line 134).

Shapes: ``B`` responses of ``T`` tokens; ``mask`` is [B, T] with 1 (or True) on response tokens and
0 on padding. Every function returns 0 off the mask, so padding never leaks into a result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ngrpo_rl.losses import as_bool_mask

# ---- input checks ------------------------------------------------------------------------------


def _check_2d(name: str, tensor: Tensor) -> None:
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape [B, T], got {tuple(tensor.shape)}")
    if not tensor.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")


def _check_same_shape(name: str, tensor: Tensor, like_name: str, like: Tensor) -> None:
    _check_2d(name, tensor)
    if tensor.shape != like.shape:
        raise ValueError(
            f"{name} must have the shape of {like_name} {tuple(like.shape)}, got {tuple(tensor.shape)}"
        )


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")


# ---- rewards -----------------------------------------------------------------------------------


def outcome_token_rewards(
    scores: Tensor,
    mask: Tensor,
    *,
    kl: Tensor | None = None,
    kl_coef: float = 0.0,
) -> Tensor:
    """Per-token rewards of outcome-scored responses: ``[B, T]``.

    Row i holds ``scores[i]`` on its last masked token and ``-kl_coef * kl[i, t]`` on every masked
    token t (both on the last one), 0 off the mask; a row with no masked token is all zeros. This
    is verl's ``token_level_rewards = token_level_scores - beta * kld`` (NGRPO e7a3804,
    ``verl/trainer/ppo/ray_trainer.py`` lines 191-220), where ``kld`` is the k1 estimate
    ``old_logp - ref_logp`` and beta = 0.001 in ``train_qwen2.5-math-7b_ppo.sh``.

    Args:
        scores: ``[B]`` scalar outcome reward of each response.
        mask: ``[B, T]`` 1 on response tokens.
        kl: ``[B, T]`` per-token KL estimate; required when ``kl_coef`` is not 0.
        kl_coef: the KL coefficient beta (>= 0).
    """
    if not isinstance(scores, Tensor) or scores.dim() != 1:
        shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"scores must be a tensor of shape [B], got {shape}")
    if not isinstance(mask, Tensor) or mask.dim() != 2 or mask.shape[0] != scores.shape[0]:
        shape = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must have shape [B, T] with B = {scores.shape[0]}, got {shape}")
    valid = as_bool_mask(mask, mask.shape)
    if not (math.isfinite(kl_coef) and kl_coef >= 0):
        raise ValueError(f"kl_coef must be a finite number >= 0, got {kl_coef!r}")
    if kl_coef != 0 and kl is None:
        raise ValueError(f"kl_coef is {kl_coef} but no kl was given")

    dtype = scores.dtype if scores.is_floating_point() else torch.float32
    positions = torch.arange(valid.shape[1], device=valid.device)
    at_last = torch.zeros_like(valid)
    if valid.shape[1] > 0:
        last = torch.where(valid, positions, -1).amax(dim=1)  # -1: the row has no masked token
        at_last = valid & (positions == last[:, None])
    rewards = torch.where(at_last, scores.to(dtype)[:, None], torch.zeros((), dtype=dtype))
    if kl is not None:
        _check_same_shape("kl", kl, "mask", mask)
        rewards = rewards - kl_coef * torch.where(valid, kl.to(dtype), torch.zeros((), dtype=dtype))
    return rewards


# ---- advantages and returns --------------------------------------------------------------------


@torch.no_grad()
def gae(
    token_rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    *,
    gamma: float = 1.0,
    lam: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation (Schulman et al., arXiv 1506.02438) over masked tokens.

    With t running over a row's masked tokens in order and t+1 the next masked one,
    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where
    ``V`` and ``A`` after the row's last masked token are 0; returns are ``A_t + V_t``. Unmasked
    positions are skipped, so padding (and its values) never enters. For gamma = lam = 1, A_t is
    the reward-to-go minus V_t. As in verl (NGRPO e7a3804, ``verl/trainer/ppo/core_algos.py``
    lines 70-108) but not whitened: whiten the advantages with :func:`masked_whiten` and give the
    critic these returns.

    Shapes: token_rewards, values, mask ``[B, T]`` -> ``(advantages [B, T], returns [B, T])``, both
    0 off the mask, computed without gradient (they are targets).
    """
    _check_2d("token_rewards", token_rewards)
    _check_same_shape("values", values, "token_rewards", token_rewards)
    valid = as_bool_mask(mask, token_rewards.shape)
    _check_unit_interval("gamma", gamma)
    _check_unit_interval("lam", lam)

    dtype = torch.promote_types(token_rewards.dtype, values.dtype)
    rewards = token_rewards.to(dtype)
    values = values.to(dtype)
    zero = torch.zeros((), dtype=dtype, device=values.device)
    next_value = torch.zeros(values.shape[0], dtype=dtype, device=values.device)
    next_advantage = torch.zeros_like(next_value)
    advantages = torch.zeros_like(values)
    for t in reversed(range(values.shape[1])):
        here = valid[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        advantage = delta + gamma * lam * next_advantage
        advantages[:, t] = torch.where(here, advantage, zero)
        # Carry the state across unmasked positions: they are not steps of the episode.
        next_value = torch.where(here, values[:, t], next_value)
        next_advantage = torch.where(here, advantage, next_advantage)
    returns = torch.where(valid, advantages + values, zero)
    return advantages, returns


def masked_whiten(
    values: Tensor,
    mask: Tensor,
    *,
    shift_mean: bool = True,
    eps: float = 1e-8,
) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` with mean and unbiased variance over the masked entries.

    As verl's ``masked_whiten`` / ``masked_var`` (NGRPO e7a3804, ``verl/utils/torch_functional.py``
    lines 118-147), which PPO applies to the GAE advantages of the whole batch. With
    ``shift_mean=False`` the mean is added back (only the scale changes).

    Shapes: values, mask ``[...]`` (same shape) -> ``[...]``, 0 off the mask. Needs at least two
    masked entries (the unbiased variance of one is undefined).
    """
    if not isinstance(values, Tensor) or not values.is_floating_point():
        raise TypeError("values must be a floating-point torch.Tensor")
    valid = as_bool_mask(mask, values.shape)
    count = int(valid.sum())
    if count < 2:
        raise ValueError(
            f"masked_whiten needs at least 2 masked entries for an unbiased variance, got {count}"
        )
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    masked = torch.where(valid, values, zero)
    mean = masked.sum() / count
    variance = torch.where(valid, (values - mean) ** 2, zero).sum() / (count - 1)
    whitened = (values - mean) * torch.rsqrt(variance + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(valid, whitened, zero)


# ---- the critic's loss -------------------------------------------------------------------------


@dataclass
class ValueLossOutput:
    """The per-token value loss ``[B, T]`` (0 off the mask, with the autograd graph) and
    ``clipped [B, T]`` (bool, detached): on a masked token, the clipped term was strictly larger,
    i.e. the clip bound the loss (verl's ``vf_clipfrac`` counts these)."""

    per_token_loss: Tensor
    clipped: Tensor


def clipped_value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    *,
    clip: float | None = 0.5,
) -> ValueLossOutput:
    """PPO's clipped value loss, per token, not reduced.

    ``l = 0.5 * max((v - R)^2, (clamp(v, v_old - clip, v_old + clip) - R)^2)`` on masked tokens,
    as in verl's ``compute_value_loss`` (NGRPO e7a3804, ``verl/trainer/ppo/core_algos.py`` lines
    438-461; ``cliprange_value: 0.5`` in ``ppo_trainer.yaml`` line 134). ``clip=None`` gives the
    plain ``0.5 * (v - R)^2``. Reduce with
    ``ngrpo_rl.losses.aggregate(out.per_token_loss, mask, "token-mean", num_tokens=...)``, passing
    the mini-batch's token count to every micro-batch so the micro-batch losses add up exactly.

    Shapes: values (with gradient), old_values, returns, mask ``[B, T]``; old_values and returns
    are detached.
    """
    _check_2d("values", values)
    _check_same_shape("old_values", old_values, "values", values)
    _check_same_shape("returns", returns, "values", values)
    valid = as_bool_mask(mask, values.shape)
    if clip is not None and not (math.isfinite(clip) and clip >= 0):
        raise ValueError(f"clip must be a finite number >= 0 (or None for no clipping), got {clip!r}")

    returns = returns.detach().to(values.dtype)
    unclipped = (values - returns) ** 2
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    if clip is None:
        loss, clipped = unclipped, torch.zeros_like(valid)
    else:
        old_values = old_values.detach().to(values.dtype)
        near_old = torch.clamp(values, old_values - clip, old_values + clip)
        clipped_term = (near_old - returns) ** 2
        loss = torch.maximum(unclipped, clipped_term)
        clipped = valid & (clipped_term > unclipped).detach()
    return ValueLossOutput(per_token_loss=torch.where(valid, 0.5 * loss, zero), clipped=clipped)

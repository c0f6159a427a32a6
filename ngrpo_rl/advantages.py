"""Advantage estimators: group rewards in, per-response advantages out.

Every estimator has one signature::

    fn(rewards: Tensor[num_groups, group_size], **params) -> Tensor[num_groups, group_size]

where row ``g`` holds the scalar rewards of the ``group_size`` responses sampled for prompt ``g``.
Estimators are registered by name and selected by string::

    advantages.compute("ngrpo", rewards, virtual_reward=1.0)

Add your own with ``@advantages.register("my_name")``; ``params=`` declares which config fields
feed its keywords (undeclared: its keywords named like config fields) and any parameter of its own
(``ngrpo_rl.settings.Param``, set through the ``component_kwargs`` field). ``compute`` validates the rewards (2-D,
floating, finite) before calling the estimator, and ``bind_params`` picks out of a whole config the
keyword arguments one estimator accepts, so a training loop needs no per-estimator special cases.

Group statistics are computed in float64 (float32 on devices without float64) and the result is
returned in the dtype of ``rewards``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ngrpo_rl.batch import TrainingBatch
from ngrpo_rl.registry import ParamSource, Registry, bind_keywords, keyword_parameters
from ngrpo_rl.value import gae, masked_whiten

AdvantageEstimator = Callable[..., Tensor]

estimators: Registry[AdvantageEstimator] = Registry("advantage estimator")


def register(
    name: str, params: Mapping[str, ParamSource] | None = None, **metadata: Any
) -> Callable[[AdvantageEstimator], AdvantageEstimator]:
    """Decorator: ``@advantages.register("name")`` adds an estimator; a taken name raises ValueError.

    ``params`` maps the estimator's keywords to the config fields that feed them
    (``{"epsilon": "advantage_epsilon"}``) or to a ``Param`` of its own; ``metadata`` declares
    traits the pipeline reads: ``min_group_size`` (``validate()`` refuses a smaller group_size) and
    ``drop_zero_advantage_samples`` (the default of that field).
    """
    return estimators.register(name, params, **metadata)


def available() -> list[str]:
    """The registered estimator names, sorted."""
    return estimators.available()


def get(name: str) -> AdvantageEstimator:
    """The estimator registered as ``name``; an unknown name raises ``UnknownNameError``."""
    return estimators.get(name)


def bind_params(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of ``params`` that estimator ``name`` accepts as keyword arguments.

    The training loop passes its whole config through this, e.g.
    ``compute(name, rewards, **bind_params(name, config))``. An estimator that takes ``**kwargs``
    receives every entry except ``rewards``.
    """
    return bind_keywords(get(name), params, skip=1)


def validate_rewards(rewards: Tensor) -> None:
    """Raises if ``rewards`` is not a finite floating tensor of shape [num_groups, group_size]."""
    if not isinstance(rewards, Tensor):
        raise TypeError(f"rewards must be a torch.Tensor, got {type(rewards).__name__}")
    if rewards.dim() != 2:
        hint = ""
        if rewards.dim() == 1:
            hint = "; reshape a flat tensor with rewards.view(num_groups, group_size)"
        raise ValueError(
            f"rewards must have shape [num_groups, group_size], got {rewards.dim()}-D shape "
            f"{tuple(rewards.shape)}{hint}"
        )
    if not rewards.is_floating_point():
        raise TypeError(
            f"rewards must be a floating tensor, got dtype {rewards.dtype}; convert with rewards.float()"
        )
    bad = ~torch.isfinite(rewards)
    num_bad = int(bad.sum())
    if num_bad:
        group, index = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"rewards contain {num_bad} non-finite values (first at group {group}, index {index}); "
            "the verifier must return finite rewards"
        )


def compute(name: str, rewards: Tensor, **params: Any) -> Tensor:
    """Advantages [num_groups, group_size] from rewards [num_groups, group_size] by estimator ``name``.

    Validates ``rewards`` (2-D, floating, finite) and ``params`` (only keywords the estimator
    accepts; filter a full config with ``bind_params``). The result has the dtype of ``rewards``;
    advantages that overflow it (rewards near the dtype's largest value) raise ``ValueError``.
    """
    fn = get(name)
    if is_token_level(name):
        raise TypeError(
            f"advantage estimator {name!r} is token-level: it needs the batch, not group rewards; "
            f"call compute_token_level({name!r}, batch)"
        )
    validate_rewards(rewards)
    names, takes_any = keyword_parameters(fn, skip=1)
    unknown = sorted(set(params) - names) if not takes_any else []
    if unknown:
        raise TypeError(
            f"advantage estimator {name!r} does not accept {', '.join(unknown)}; it accepts "
            f"{', '.join(sorted(names)) or 'no parameters'} (bind_params filters a full config)"
        )
    advantages = fn(rewards, **params)
    if not isinstance(advantages, Tensor) or advantages.shape != rewards.shape:
        got = tuple(advantages.shape) if isinstance(advantages, Tensor) else type(advantages).__name__
        raise ValueError(
            f"advantage estimator {name!r} must return a tensor of shape {tuple(rewards.shape)}, got {got}"
        )
    advantages = advantages.to(rewards.dtype)
    _check_finite_advantages(name, advantages, rewards)
    return advantages


def is_token_level(name: str) -> bool:
    """True for estimators registered with ``token_level=True`` (they take the whole batch)."""
    return bool(estimators.metadata(name).get("token_level", False))


def needs_critic(name: str) -> bool:
    """True for estimators registered with ``needs_critic=True`` (the algorithm builds a critic)."""
    return bool(estimators.metadata(name).get("needs_critic", False))


def compute_token_level(name: str, batch: TrainingBatch, **params: Any) -> TrainingBatch:
    """Runs token-level estimator ``name`` on ``batch``; returns the batch with ``[N, R]``
    advantages (and whatever else the estimator fills in, e.g. GAE's returns)."""
    if not is_token_level(name):
        raise TypeError(f"advantage estimator {name!r} is sequence-level: use compute({name!r}, rewards)")
    for field in ("rewards", "token_rewards", "values"):
        values = getattr(batch, field)
        if values is not None and not bool(torch.isfinite(values).all()):
            bad = ~torch.isfinite(values)
            raise ValueError(
                f"the batch's {field} contain {int(bad.sum())} non-finite values (first at row "
                f"{int(bad.nonzero()[0][0])}); advantage estimator {name!r} needs finite inputs"
            )
    out = get(name)(batch, **params)
    expected = (len(batch), batch.response_width)
    if not isinstance(out, TrainingBatch) or out.advantages is None or out.advantages.shape != expected:
        raise ValueError(
            f"token-level estimator {name!r} must return the batch with advantages of shape {expected}"
        )
    _check_finite_advantages(name, out.advantages, batch.rewards)
    return out


# ---- helpers -----------------------------------------------------------------------------------


def _check_finite_advantages(name: str, advantages: Tensor, rewards: Tensor) -> None:
    """Refuses NaN or infinite advantages from finite inputs (rewards near the dtype's largest
    value overflow the group statistics) instead of passing them silently to the loss."""
    if not bool(torch.isfinite(advantages).all()):
        largest = float(rewards.abs().max()) if rewards.numel() else 0.0
        raise ValueError(
            f"advantage estimator {name!r} gave non-finite advantages from finite inputs (largest "
            f"|reward| {largest:.3g}): they overflow {rewards.dtype}; rescale the rewards"
        )


def _stat_dtype(rewards: Tensor) -> torch.dtype:
    # MPS has no float64; everywhere else the statistics are exact to float64.
    return torch.float32 if rewards.device.type == "mps" else torch.float64


def _check_epsilon(epsilon: float) -> None:
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise ValueError(f"epsilon must be a finite number >= 0, got {epsilon!r}")


def _normalized(values: Tensor, stats_over: Tensor, std_normalize: bool, epsilon: float) -> Tensor:
    """(values - mean) / (std + epsilon) with mean and unbiased std over each row of ``stats_over``.

    Rows of ``stats_over`` with fewer than two entries (std undefined) or with all entries equal get
    exactly zero, so homogeneous groups never carry rounding noise.
    """
    num_groups, count = stats_over.shape
    if count < 2 or num_groups == 0:
        return torch.zeros_like(values)
    mean = stats_over.mean(dim=1, keepdim=True)
    centered = values - mean
    homogeneous = (stats_over == stats_over[:, :1]).all(dim=1, keepdim=True)
    if std_normalize:
        denominator = stats_over.std(dim=1, correction=1, keepdim=True) + epsilon
        safe = torch.where(denominator > 0, denominator, torch.ones_like(denominator))
        centered = torch.where(denominator > 0, centered / safe, torch.zeros_like(centered))
    return torch.where(homogeneous, torch.zeros_like(centered), centered)


def _correct(rewards: Tensor, correct_threshold: float) -> Tensor:
    return rewards > correct_threshold


# ---- estimators --------------------------------------------------------------------------------


@register("grpo", params={"std_normalize": "std_normalize", "epsilon": "advantage_epsilon"}, min_group_size=2)
def grpo(rewards: Tensor, *, std_normalize: bool = True, epsilon: float = 1e-6) -> Tensor:
    """GRPO's group-normalised advantage (DeepSeekMath, arXiv 2402.03300; as implemented in verl).

    ``A_i = (r_i - mean(r)) / (std(r) + epsilon)`` over each group, std unbiased (ddof = 1).
    ``std_normalize=False`` gives Dr. GRPO's ``A_i = r_i - mean(r)``. A group of one gets A = 0.

    Shapes: rewards [num_groups, group_size] -> advantages [num_groups, group_size].
    """
    _check_epsilon(epsilon)
    r = rewards.to(_stat_dtype(rewards))
    return _normalized(r, r, std_normalize, epsilon).to(rewards.dtype)


@register(
    "ngrpo",
    params={
        "virtual_reward": "virtual_reward",
        "num_virtual_samples": "num_virtual_samples",
        "std_normalize": "std_normalize",
        "epsilon": "advantage_epsilon",
    },
    min_group_size=2,
)
def ngrpo(
    rewards: Tensor,
    *,
    virtual_reward: float = 1.0,
    num_virtual_samples: int = 1,
    std_normalize: bool = True,
    epsilon: float = 1e-6,
) -> Tensor:
    """NGRPO's advantage with virtual maximum-reward samples (arXiv 2509.18851, "Negative-enhanced GRPO").

    The group statistics are taken over the ``G + num_virtual_samples`` values
    ``{r_1..r_G, virtual_reward x num_virtual_samples}``; the virtual samples are never generated and
    get no advantage of their own:
    ``A_i = (r_i - mean(r ∪ v)) / (std(r ∪ v) + epsilon)``, std unbiased over the augmented group.
    So a group with no correct response still gets a learning signal (all -1/sqrt(G+1) for 0/1
    rewards) while an all-correct group gets zero. With G = 8 and 0/1 rewards the (correct, incorrect)
    advantages are: 1 correct -> +1.76 / -0.50; 4 correct -> +0.843 / -1.054; 7 correct ->
    +0.333 / -2.667 (Fig. 3 of the paper).

    Shapes: rewards [num_groups, G] -> advantages [num_groups, G].
    """
    _check_epsilon(epsilon)
    if not isinstance(num_virtual_samples, int) or isinstance(num_virtual_samples, bool) or num_virtual_samples < 0:
        raise ValueError(f"num_virtual_samples must be an int >= 0, got {num_virtual_samples!r}")
    if not math.isfinite(virtual_reward):
        raise ValueError(f"virtual_reward must be finite, got {virtual_reward!r}")
    r = rewards.to(_stat_dtype(rewards))
    virtual = r.new_full((r.shape[0], num_virtual_samples), float(virtual_reward))
    augmented = torch.cat([r, virtual], dim=1)
    return _normalized(r, augmented, std_normalize, epsilon).to(rewards.dtype)


@register("dr_grpo", params={}, min_group_size=2)
def dr_grpo(rewards: Tensor) -> Tensor:
    """Dr. GRPO's advantage ``A_i = r_i - mean(r)``, no std normalisation (arXiv 2503.20783).

    Shapes: rewards [num_groups, group_size] -> advantages [num_groups, group_size].
    """
    r = rewards.to(_stat_dtype(rewards))
    return _normalized(r, r, std_normalize=False, epsilon=0.0).to(rewards.dtype)


@register("rloo", params={}, min_group_size=2)
def rloo(rewards: Tensor) -> Tensor:
    """REINFORCE leave-one-out: ``A_i = r_i - mean_{j != i}(r_j)``; a group of one gets A = 0.

    Uses the identity ``r_i - mean_{j != i} r_j = G / (G - 1) * (r_i - mean(r))``.
    Shapes: rewards [num_groups, group_size] -> advantages [num_groups, group_size].
    """
    group_size = rewards.shape[1]
    if group_size < 2:
        return torch.zeros_like(rewards)
    r = rewards.to(_stat_dtype(rewards))
    centered = _normalized(r, r, std_normalize=False, epsilon=0.0)
    return (centered * (group_size / (group_size - 1))).to(rewards.dtype)


@register("w_reinforce", params={"positive_weight": "positive_weight", "correct_threshold": "correct_threshold"})
def w_reinforce(rewards: Tensor, *, positive_weight: float = 0.1, correct_threshold: float = 0.5) -> Tensor:
    """Weighted REINFORCE (PSR-NSR paper, "The Surprising Effectiveness of Negative Reinforcement in
    LLM Reasoning", arXiv 2506.01347): ``A = +positive_weight`` (lambda, 0.1 in the paper) for a
    correct response (reward > correct_threshold), ``A = -1`` otherwise. No group statistics.

    Shapes: rewards [num_groups, group_size] -> advantages [num_groups, group_size].
    """
    positive = torch.full_like(rewards, float(positive_weight))
    return torch.where(_correct(rewards, correct_threshold), positive, torch.full_like(rewards, -1.0))


@register("psr", params={"correct_threshold": "correct_threshold"}, drop_zero_advantage_samples=True)
def psr(rewards: Tensor, *, correct_threshold: float = 0.5) -> Tensor:
    """Positive sample reinforcement (arXiv 2506.01347): ``A = +1`` for correct responses, 0 otherwise.

    Shapes: rewards [num_groups, group_size] -> advantages [num_groups, group_size].
    """
    return _correct(rewards, correct_threshold).to(rewards.dtype)


@register("nsr", params={"correct_threshold": "correct_threshold"}, drop_zero_advantage_samples=True)
def nsr(rewards: Tensor, *, correct_threshold: float = 0.5) -> Tensor:
    """Negative sample reinforcement (arXiv 2506.01347): ``A = -1`` for incorrect responses, 0 otherwise.

    Shapes: rewards [num_groups, group_size] -> advantages [num_groups, group_size].
    """
    correct = _correct(rewards, correct_threshold)
    return torch.where(correct, torch.zeros_like(rewards), torch.full_like(rewards, -1.0))


@register(
    "gae",
    params={"gamma": "gamma", "lam": "gae_lambda", "whiten": "whiten_advantages"},
    token_level=True,
    needs_critic=True,
)
def gae_estimator(batch: TrainingBatch, *, gamma: float = 1.0, lam: float = 1.0, whiten: bool = True) -> TrainingBatch:
    """PPO's generalised advantage estimation (arXiv 1506.02438) from the critic's values.

    Needs the batch's ``token_rewards`` (the reward on each response's last token, minus any KL in
    the reward) and ``values`` ``[N, R]``; fills ``advantages`` and ``returns`` ``[N, R]``. With
    ``whiten`` the advantages are whitened over all response tokens of the batch, and the returns
    (the critic's targets) are taken before whitening, as verl does (nangongrui-ngr/NGRPO
    ``verl/trainer/ppo/core_algos.py`` l. 70-108). The official PPO run uses gamma = lam = 1.
    """
    if batch.token_rewards is None or batch.values is None:
        raise ValueError("the gae estimator needs the batch's token_rewards and the critic's values")
    mask = batch.response_mask()
    advantages, returns = gae(batch.token_rewards, batch.values, mask, gamma=gamma, lam=lam)
    if whiten and int(mask.sum()) >= 2:
        advantages = masked_whiten(advantages, mask)
    return batch.with_fields(advantages=advantages.float(), returns=returns.float())

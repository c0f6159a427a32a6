"""The pure pieces of PPO with a critic (ngrpo_rl.value) against hand-computed numbers."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl import losses
from ngrpo_rl.value import clipped_value_loss, gae, masked_whiten, outcome_token_rewards

# Two rows: lengths 3 and 2 (one padding column, whose value 9.0 must not leak in).
REWARDS = torch.tensor([[0.0, 0.0, 1.0], [0.1, -1.0, 5.0]])
VALUES = torch.tensor([[0.5, 0.2, 0.7], [0.4, -0.3, 9.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])


# ---- GAE ---------------------------------------------------------------------------------------


def test_gae_with_unit_gamma_and_lambda_is_reward_to_go_minus_value() -> None:
    advantages, returns = gae(REWARDS, VALUES, MASK, gamma=1.0, lam=1.0)
    # Row 0: reward-to-go [1, 1, 1] minus values [0.5, 0.2, 0.7].
    # Row 1: reward-to-go [0.1 - 1, -1] = [-0.9, -1] minus values [0.4, -0.3]; padding is 0.
    expected_advantages = torch.tensor([[0.5, 0.8, 0.3], [-1.3, -0.7, 0.0]])
    expected_returns = torch.tensor([[1.0, 1.0, 1.0], [-0.9, -1.0, 0.0]])
    torch.testing.assert_close(advantages, expected_advantages)
    torch.testing.assert_close(returns, expected_returns)


def test_gae_with_discount_matches_the_recursion_by_hand() -> None:
    gamma, lam = 0.9, 0.8
    advantages, returns = gae(REWARDS, VALUES, MASK, gamma=gamma, lam=lam)
    # delta_t = r_t + gamma V_{t+1} - V_t (V after the last token = 0); A_t = delta_t + gamma lam A_{t+1}.
    # Row 0: delta_2 = 1 - 0.7 = 0.3                   A_2 = 0.3
    #        delta_1 = 0 + 0.9 * 0.7 - 0.2 = 0.43      A_1 = 0.43 + 0.72 * 0.3 = 0.646
    #        delta_0 = 0 + 0.9 * 0.2 - 0.5 = -0.32     A_0 = -0.32 + 0.72 * 0.646 = 0.14512
    # Row 1: delta_1 = -1 - (-0.3) = -0.7              A_1 = -0.7
    #        delta_0 = 0.1 + 0.9 * (-0.3) - 0.4 = -0.57 A_0 = -0.57 + 0.72 * (-0.7) = -1.074
    expected_advantages = torch.tensor([[0.14512, 0.646, 0.3], [-1.074, -0.7, 0.0]])
    expected_returns = expected_advantages + VALUES * MASK  # [[0.64512, 0.846, 1.0], [-0.674, -1.0, 0]]
    torch.testing.assert_close(advantages, expected_advantages)
    torch.testing.assert_close(returns, expected_returns)
    torch.testing.assert_close(returns[0], torch.tensor([0.64512, 0.846, 1.0]))


def test_gae_outputs_carry_no_gradient() -> None:
    values = VALUES.clone().requires_grad_(True)
    advantages, returns = gae(REWARDS, values, MASK)
    assert not advantages.requires_grad and not returns.requires_grad


def _gae_reference(rewards: list[float], values: list[float], mask: list[bool], gamma: float, lam: float):
    """One row, plain Python: the recursion over the masked tokens only."""
    steps = [t for t, m in enumerate(mask) if m]
    advantages = [0.0] * len(mask)
    returns = [0.0] * len(mask)
    next_value, next_advantage = 0.0, 0.0
    for t in reversed(steps):
        delta = rewards[t] + gamma * next_value - values[t]
        next_advantage = delta + gamma * lam * next_advantage
        next_value = values[t]
        advantages[t] = next_advantage
        returns[t] = next_advantage + values[t]
    return advantages, returns


finite = st.floats(-10, 10, allow_nan=False, width=32)


@st.composite
def gae_cases(draw):
    batch = draw(st.integers(1, 4))
    length = draw(st.integers(1, 7))
    cells = st.lists(finite, min_size=length, max_size=length)
    rewards = draw(st.lists(cells, min_size=batch, max_size=batch))
    values = draw(st.lists(cells, min_size=batch, max_size=batch))
    mask_rows = st.lists(st.booleans(), min_size=length, max_size=length)
    mask = draw(st.lists(mask_rows, min_size=batch, max_size=batch))
    gamma = draw(st.floats(0, 1))
    lam = draw(st.floats(0, 1))
    padding = draw(st.integers(1, 3))
    return rewards, values, mask, gamma, lam, padding


@settings(max_examples=150, deadline=None)
@given(gae_cases())
def test_gae_matches_the_loop_reference_and_ignores_padding(case) -> None:
    rewards, values, mask, gamma, lam, padding = case
    r = torch.tensor(rewards, dtype=torch.float64)
    v = torch.tensor(values, dtype=torch.float64)
    m = torch.tensor(mask)
    advantages, returns = gae(r, v, m, gamma=gamma, lam=lam)
    assert torch.isfinite(advantages).all() and torch.isfinite(returns).all()
    for i in range(r.shape[0]):
        ref_advantages, ref_returns = _gae_reference(rewards[i], values[i], mask[i], gamma, lam)
        torch.testing.assert_close(advantages[i], torch.tensor(ref_advantages, dtype=torch.float64))
        torch.testing.assert_close(returns[i], torch.tensor(ref_returns, dtype=torch.float64))

    # Padding columns with garbage rewards and values change nothing.
    garbage = torch.full((r.shape[0], padding), 123.0, dtype=torch.float64)
    no = torch.zeros((r.shape[0], padding), dtype=torch.bool)
    padded_advantages, padded_returns = gae(
        torch.cat([r, garbage], 1), torch.cat([v, -garbage], 1), torch.cat([m, no], 1),
        gamma=gamma, lam=lam,
    )
    assert torch.equal(padded_advantages[:, : r.shape[1]], advantages)
    assert torch.equal(padded_returns[:, : r.shape[1]], returns)
    assert not padded_advantages[:, r.shape[1] :].any() and not padded_returns[:, r.shape[1] :].any()


def test_gae_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError, match="gamma"):
        gae(REWARDS, VALUES, MASK, gamma=1.5)
    with pytest.raises(ValueError, match="lam"):
        gae(REWARDS, VALUES, MASK, lam=-0.1)
    with pytest.raises(ValueError, match="values must have the shape"):
        gae(REWARDS, VALUES[:, :2], MASK)
    with pytest.raises(ValueError, match="mask must have shape"):
        gae(REWARDS, VALUES, MASK[:1])
    with pytest.raises(ValueError, match="only 0 and 1"):
        gae(REWARDS, VALUES, MASK * 2)
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        gae(REWARDS[0], VALUES[0], MASK[0])


# ---- whitening ---------------------------------------------------------------------------------


def test_masked_whiten_has_mean_zero_and_unit_std_on_the_mask() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 9, generator=generator, dtype=torch.float64) * 3 + 2
    mask = torch.rand(5, 9, generator=generator) < 0.6
    x = torch.where(mask, x, torch.full_like(x, 1e6))  # padding must not move the statistics
    white = masked_whiten(x, mask)
    on = white[mask]
    torch.testing.assert_close(on.mean(), torch.tensor(0.0, dtype=torch.float64))
    torch.testing.assert_close(on.std(), torch.tensor(1.0, dtype=torch.float64))
    assert not white[~mask].any()
    kept_mean = masked_whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(kept_mean[mask], on + x[mask].mean())


def test_masked_whiten_by_hand_and_needs_two_entries() -> None:
    # [1, 3] on the mask: mean 2, unbiased variance 2 -> [-1, 1] / sqrt(2).
    white = masked_whiten(torch.tensor([[1.0, 3.0, 50.0]]), torch.tensor([[1, 1, 0]]), eps=0.0)
    torch.testing.assert_close(white, torch.tensor([[-(0.5**0.5), 0.5**0.5, 0.0]]))
    with pytest.raises(ValueError, match="at least 2"):
        masked_whiten(torch.tensor([[1.0, 3.0]]), torch.tensor([[1, 0]]))


# ---- the clipped value loss --------------------------------------------------------------------


def test_clipped_value_loss_by_hand() -> None:
    # Token 0: the clip binds. v = 1, v_old = 0, R = 2: (v - R)^2 = 1, clamp(v, -0.5, 0.5) = 0.5,
    #          (0.5 - 2)^2 = 2.25 is larger -> loss 0.5 * 2.25 = 1.125, no gradient through v.
    # Token 1: inside the clip range. v = 0.2, v_old = 0, R = 1: both terms 0.64 -> loss 0.32.
    # Token 2: clipped but not binding. v = 1, v_old = 0, R = 0: (v - R)^2 = 1 beats 0.25 -> 0.5.
    # Token 3: padding.
    values = torch.tensor([[1.0, 0.2, 1.0, 7.0]], requires_grad=True)
    old_values = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    returns = torch.tensor([[2.0, 1.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    out = clipped_value_loss(values, old_values, returns, mask, clip=0.5)
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[1.125, 0.32, 0.5, 0.0]]))
    assert out.clipped.tolist() == [[True, False, False, False]]
    out.per_token_loss.sum().backward()
    # d/dv of 0.5 (v - R)^2 is v - R; zero where the clipped (constant) term was taken or masked.
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, -0.8, 1.0, 0.0]]))


def test_clipped_value_loss_without_clip_is_half_squared_error() -> None:
    values = torch.tensor([[1.0, 0.2]])
    out = clipped_value_loss(values, torch.zeros(1, 2), torch.tensor([[2.0, 1.0]]), torch.ones(1, 2), clip=None)
    torch.testing.assert_close(out.per_token_loss, torch.tensor([[0.5, 0.32]]))
    assert not out.clipped.any()


def test_clipped_value_loss_micro_batches_add_up_with_token_mean() -> None:
    generator = torch.Generator().manual_seed(1)
    values, old_values, returns = torch.randn(3, 6, 5, generator=generator).unbind(0)
    mask = torch.rand(6, 5, generator=generator) < 0.7
    whole = losses.aggregate(
        clipped_value_loss(values, old_values, returns, mask).per_token_loss, mask, "token-mean"
    )
    parts = sum(
        losses.aggregate(
            clipped_value_loss(values[rows], old_values[rows], returns[rows], mask[rows]).per_token_loss,
            mask[rows], "token-mean", num_tokens=mask.sum(),
        )
        for rows in (slice(0, 2), slice(2, 6))
    )
    torch.testing.assert_close(parts, whole)


def test_clipped_value_loss_rejects_bad_inputs() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="clip"):
        clipped_value_loss(x, x, x, x, clip=-1.0)
    with pytest.raises(ValueError, match="returns must have the shape"):
        clipped_value_loss(x, x, x[:, :2], x)


# ---- outcome rewards ---------------------------------------------------------------------------


def test_outcome_token_rewards_puts_the_score_last_and_subtracts_the_kl() -> None:
    scores = torch.tensor([1.0, 0.5, 3.0, -1.0])
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    expected = torch.tensor(
        [[0.0, 0.0, 1.0, 0.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1.0]]
    )
    torch.testing.assert_close(outcome_token_rewards(scores, mask), expected)

    kl = torch.arange(16, dtype=torch.float32).reshape(4, 4)
    shaped = outcome_token_rewards(scores, mask, kl=kl, kl_coef=0.1)
    torch.testing.assert_close(shaped, expected - 0.1 * kl * mask)
    # Row 0 by hand: [-0.0, -0.1, 1 - 0.2, 0] ; the padding keeps 0 although kl is 3 there.
    torch.testing.assert_close(shaped[0], torch.tensor([0.0, -0.1, 0.8, 0.0]))


def test_outcome_token_rewards_rejects_bad_inputs() -> None:
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="no kl"):
        outcome_token_rewards(torch.ones(2), mask, kl_coef=0.001)
    with pytest.raises(ValueError, match="kl_coef"):
        outcome_token_rewards(torch.ones(2), mask, kl=torch.zeros(2, 3), kl_coef=-1.0)
    with pytest.raises(ValueError, match="mask must have shape"):
        outcome_token_rewards(torch.ones(3), mask)
    with pytest.raises(ValueError, match="scores"):
        outcome_token_rewards(torch.ones(2, 1), mask)
    with pytest.raises(ValueError, match="kl must have the shape"):
        outcome_token_rewards(torch.ones(2), mask, kl=torch.zeros(2, 2), kl_coef=0.1)

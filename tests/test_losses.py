"""Policy loss (clipping, dual clip, statistics), loss aggregation, KL estimators and entropy."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl import losses
from ngrpo_rl.losses import PolicyLossOutput, aggregate, compute_policy_loss, kl_penalty, merge_stat_sums
from ngrpo_rl.registry import UnknownNameError

AGGREGATION_MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


def single_token(log_ratio: float, advantage: float, **params: float) -> PolicyLossOutput:
    logp = torch.tensor([[log_ratio]], dtype=torch.float64)
    return compute_policy_loss(
        "ppo_clip", logp, torch.zeros_like(logp), torch.tensor([advantage], dtype=torch.float64), torch.ones(1, 1), **params
    )


# ---- ppo_clip ------------------------------------------------------------------------------------


def expected_sign_clipped(rho: float, advantage: float, epsilon_pos: float, epsilon_neg: float) -> float:
    """The objective clipped by the sign of A (DESIGN.md section 3), as a loss."""
    if advantage > 0:
        return -advantage * min(rho, 1 + epsilon_pos)
    if advantage < 0:
        return -advantage * max(rho, 1 - epsilon_neg)
    return 0.0


def test_clip_equals_sign_clipping_on_a_grid() -> None:
    log_ratios = [math.log(r) for r in (0.05, 0.5, 0.79, 0.8, 0.84, 0.9, 1.0, 1.1, 1.2, 1.24, 1.25, 1.6, 4.0)]
    advantage_values = [-2.5, -1.0, -1 / 3, 0.0, 0.1, 1.0, 2.47]
    for (epsilon_neg, epsilon_pos), log_ratio, advantage in itertools.product(
        [(0.2, 0.2), (0.2, 0.28), (0.16, 0.24)], log_ratios, advantage_values
    ):
        out = single_token(log_ratio, advantage, epsilon_pos=epsilon_pos, epsilon_neg=epsilon_neg)
        expected = expected_sign_clipped(math.exp(log_ratio), advantage, epsilon_pos, epsilon_neg)
        assert out.per_token_loss.item() == pytest.approx(expected, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    log_ratio=st.floats(-3, 3),
    advantage=st.floats(-5, 5),
    epsilon_pos=st.floats(0, 0.5),
    epsilon_neg=st.floats(0, 0.9),
)
def test_clip_equals_sign_clipping_property(log_ratio: float, advantage: float, epsilon_pos: float, epsilon_neg: float) -> None:
    out = single_token(log_ratio, advantage, epsilon_pos=epsilon_pos, epsilon_neg=epsilon_neg)
    expected = expected_sign_clipped(math.exp(log_ratio), advantage, epsilon_pos, epsilon_neg)
    assert out.per_token_loss.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_gradient_vanishes_only_where_clipped() -> None:
    for log_ratio, advantage, clipped in [
        (math.log(1.5), 1.0, True),  # A > 0 above 1 + epsilon_pos
        (math.log(1.1), 1.0, False),
        (math.log(0.5), 1.0, False),  # A > 0 below 1 - epsilon_neg: not clipped (pessimistic bound)
        (math.log(0.5), -1.0, True),  # A < 0 below 1 - epsilon_neg
        (math.log(1.5), -1.0, False),
    ]:
        logp = torch.tensor([[log_ratio]], dtype=torch.float64, requires_grad=True)
        out = losses.ppo_clip(logp, torch.zeros(1, 1, dtype=torch.float64), torch.tensor([advantage]), torch.ones(1, 1))
        out.per_token_loss.sum().backward()
        expected = 0.0 if clipped else -advantage * math.exp(log_ratio)  # d(-A rho)/d logp = -A rho
        assert logp.grad.item() == pytest.approx(expected, abs=1e-12)
        assert out.clipped_upper.item() == (clipped and advantage > 0)
        assert out.clipped_lower.item() == (clipped and advantage < 0)


def test_dual_clip() -> None:
    c = 3.0
    # A < 0, rho = 5 > c: the loss -A*rho = 10 is capped at -A*c = 6.
    out = single_token(math.log(5.0), -2.0, dual_clip_c=c)
    assert out.per_token_loss.item() == pytest.approx(6.0)
    assert out.dual_clipped.item() and not out.clipped_lower.item()
    # A < 0, rho = 2 < c: unchanged.
    out = single_token(math.log(2.0), -2.0, dual_clip_c=c)
    assert out.per_token_loss.item() == pytest.approx(4.0)
    assert not out.dual_clipped.item()
    # A > 0: dual clip never applies.
    out = single_token(math.log(5.0), 2.0, dual_clip_c=c)
    assert out.per_token_loss.item() == pytest.approx(-2.0 * 1.2)
    assert not out.dual_clipped.item()
    # Without dual clip the A < 0 loss is unbounded in rho.
    assert single_token(math.log(5.0), -2.0).per_token_loss.item() == pytest.approx(10.0)


@settings(max_examples=100, deadline=None)
@given(log_ratio=st.floats(-3, 3), advantage=st.floats(-5, 5), c=st.floats(1.01, 10))
def test_dual_clip_property(log_ratio: float, advantage: float, c: float) -> None:
    plain = single_token(log_ratio, advantage).per_token_loss.item()
    dual = single_token(log_ratio, advantage, dual_clip_c=c).per_token_loss.item()
    expected = min(plain, -advantage * c) if advantage < 0 else plain
    assert dual == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_invalid_clip_parameters() -> None:
    with pytest.raises(ValueError, match="dual_clip_c"):
        single_token(0.0, -1.0, dual_clip_c=1.0)
    with pytest.raises(ValueError, match="epsilon_neg"):
        single_token(0.0, -1.0, epsilon_neg=1.5)
    with pytest.raises(ValueError, match="epsilon_pos"):
        single_token(0.0, -1.0, epsilon_pos=-0.1)


def test_mask_advantage_shapes_and_padding() -> None:
    torch.manual_seed(0)
    logp = torch.randn(3, 4, dtype=torch.float64)
    old_logp = logp + 0.3 * torch.randn(3, 4, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.float64)
    adv = torch.tensor([1.0, -1.0, 0.5], dtype=torch.float64)
    by_seq = compute_policy_loss("ppo_clip", logp, old_logp, adv, mask)
    by_token = compute_policy_loss("ppo_clip", logp, old_logp, adv[:, None].expand(3, 4), mask.bool())
    torch.testing.assert_close(by_seq.per_token_loss, by_token.per_token_loss)
    assert (by_seq.per_token_loss[mask == 0] == 0).all()
    assert (by_seq.ratio[mask == 0] == 1).all()
    with pytest.raises(ValueError, match="advantages"):
        compute_policy_loss("ppo_clip", logp, old_logp, torch.zeros(4), mask)
    with pytest.raises(ValueError, match="mask"):
        compute_policy_loss("ppo_clip", logp, old_logp, adv, torch.ones(3, 5))

    # -inf log-probs on padding must not turn the gradient into NaN.
    padded = logp.clone().requires_grad_(True)
    old_padded = old_logp.masked_fill(mask == 0, -math.inf)
    out = compute_policy_loss("ppo_clip", padded, old_padded, adv, mask)
    aggregate(out.per_token_loss, mask, "token-mean").backward()
    assert torch.isfinite(padded.grad).all()


def test_clip_statistics_by_hand() -> None:
    # rho per token (row 0 has A = +1, row 1 has A = -1), mask drops the last token of row 1.
    rho = torch.tensor([[1.5, 1.0, 0.7], [0.5, 4.0, 0.1]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    out = losses.ppo_clip(rho.log(), torch.zeros(2, 3, dtype=torch.float64), torch.tensor([1.0, -1.0]), mask, dual_clip_c=3.0)
    # upper: (0,0) rho 1.5 > 1.2 with A > 0; lower: (1,0) rho 0.5 < 0.8 with A < 0 ((1,2) is masked);
    # dual: (1,1) rho 4 > 3 with A < 0. Five masked tokens.
    assert out.stats() == pytest.approx(
        {
            "clip/upper_frac": 1 / 5,
            "clip/lower_frac": 1 / 5,
            "clip/dual_frac": 1 / 5,
            "ratio/mean": (1.5 + 1.0 + 0.7 + 0.5 + 4.0) / 5,
            "ratio/min": 0.5,
            "ratio/max": 4.0,
        }
    )
    assert out.stat_sums()["tokens"] == 5


def test_stat_sums_merge_exactly_across_micro_batches() -> None:
    torch.manual_seed(1)
    batch, tokens = 7, 6
    logp = torch.randn(batch, tokens, dtype=torch.float64)
    old_logp = logp + 0.5 * torch.randn(batch, tokens, dtype=torch.float64)
    mask = torch.rand(batch, tokens) > 0.3
    adv = torch.randn(batch, dtype=torch.float64)
    full = losses.ppo_clip(logp, old_logp, adv, mask, dual_clip_c=1.5).stats()
    parts = [
        losses.ppo_clip(logp[rows], old_logp[rows], adv[rows], mask[rows], dual_clip_c=1.5).stat_sums()
        for rows in (slice(0, 2), slice(2, 3), slice(3, 7))
    ]
    assert merge_stat_sums(parts) == pytest.approx(full)
    no_tokens = losses.ppo_clip(logp, old_logp, adv, torch.zeros_like(mask)).stats()
    assert no_tokens["clip/upper_frac"] == 0.0 and math.isnan(no_tokens["ratio/mean"])


def test_policy_loss_registry() -> None:
    assert "ppo_clip" in losses.available_policy_losses()
    with pytest.raises(ValueError, match="already registered"):
        losses.register_policy_loss("ppo_clip")(losses.ppo_clip)
    with pytest.raises(UnknownNameError, match="ppo_clip"):
        compute_policy_loss("ppo", torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1))
    config = {"epsilon_pos": 0.24, "epsilon_neg": 0.16, "dual_clip_c": None, "lr": 1e-6, "virtual_reward": 1.0}
    assert losses.bind_policy_loss_params("ppo_clip", config) == {"epsilon_pos": 0.24, "epsilon_neg": 0.16, "dual_clip_c": None}

    name = "test_vanilla_pg"
    if name not in losses.available_policy_losses():

        @losses.register_policy_loss(name)
        def vanilla_pg(logp, old_logp, advantages, mask):  # type: ignore[no-untyped-def]
            valid = mask.bool()
            adv = advantages[:, None].expand_as(logp)
            none = torch.zeros_like(valid)
            return PolicyLossOutput(torch.where(valid, -adv * logp, 0.0), torch.ones_like(logp), none, none, none, valid)

    out = compute_policy_loss(name, torch.full((1, 2), -1.0), torch.zeros(1, 2), torch.tensor([2.0]), torch.ones(1, 2))
    assert out.per_token_loss.tolist() == [[2.0, 2.0]]


# ---- aggregation -----------------------------------------------------------------------------------


def test_aggregation_hand_values() -> None:
    loss = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    # token-mean: (1 + 2 + 3 + 4) / 4; seq-mean-token-mean: (2 + 4) / 2; seq-mean-token-sum: (6 + 4) / 2;
    # seq-mean-token-sum-norm with max_len 5: 10 / (2 * 5).
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(2.5)
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx(3.0)
    assert aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx(5.0)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm", max_len=5).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="max_len"):
        aggregate(loss, mask, "seq-mean-token-sum-norm")
    with pytest.raises(UnknownNameError, match="token-mean"):
        aggregate(loss, mask, "token_mean")
    assert sorted(losses.available_aggregations()) == sorted(AGGREGATION_MODES)


@pytest.mark.parametrize("mode", AGGREGATION_MODES)
def test_aggregation_with_no_tokens_is_zero_not_nan(mode: str) -> None:
    loss = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    out = aggregate(loss, torch.zeros(2, 3), mode, max_len=3)
    out.backward()
    assert out.item() == 0.0 and torch.equal(loss.grad, torch.zeros(2, 3, dtype=torch.float64))
    assert aggregate(loss.detach(), torch.ones(2, 3), mode, num_tokens=0, num_seqs=0, max_len=3).item() == 0.0


def test_seq_mean_token_mean_skips_empty_sequences() -> None:
    loss = torch.tensor([[2.0, 4.0], [7.0, 9.0]])
    mask = torch.tensor([[1, 1], [0, 0]])
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx(1.5)  # (3 + 0) / 2


@settings(max_examples=25, deadline=None)
@given(
    mode=st.sampled_from(AGGREGATION_MODES),
    batch=st.integers(1, 8),
    tokens=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    split_seed=st.integers(0, 2**16),
)
def test_gradient_accumulation_equals_full_batch(mode: str, batch: int, tokens: int, seed: int, split_seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(tokens, dtype=torch.float64, generator=generator, requires_grad=True)
    features = torch.randn(batch, tokens, dtype=torch.float64, generator=generator)
    mask = torch.rand(batch, tokens, generator=generator) > 0.3
    old_logp = torch.randn(batch, tokens, dtype=torch.float64, generator=generator) * 0.1
    adv = torch.randn(batch, dtype=torch.float64, generator=generator)

    def loss_of(rows: torch.Tensor, **counts: float) -> torch.Tensor:
        logp = torch.tanh(features[rows] * weights)  # a stand-in model, differentiable in weights
        out = losses.ppo_clip(logp, old_logp[rows], adv[rows], mask[rows], epsilon_pos=0.24, epsilon_neg=0.16)
        kl = kl_penalty(logp, old_logp[rows], "k3")
        return aggregate(out.per_token_loss + 0.1 * kl, mask[rows], mode, max_len=tokens, **counts)

    (full_grad,) = torch.autograd.grad(loss_of(torch.arange(batch)), weights)

    permutation = torch.randperm(batch, generator=torch.Generator().manual_seed(split_seed))
    cuts = sorted(torch.randint(0, batch + 1, (3,), generator=torch.Generator().manual_seed(split_seed)).tolist())
    accumulated = torch.zeros_like(weights)
    global_counts = {"num_tokens": int(mask.sum()), "num_seqs": batch}
    for rows in torch.tensor_split(permutation, cuts):
        if len(rows):
            (grad,) = torch.autograd.grad(loss_of(rows, **global_counts), weights)
            accumulated += grad
    torch.testing.assert_close(accumulated, full_grad, atol=1e-10, rtol=0)


# ---- KL ------------------------------------------------------------------------------------------


def test_kl_estimators_by_hand() -> None:
    logp = torch.tensor([[math.log(0.5), math.log(0.2)]], dtype=torch.float64)
    ref_logp = torch.tensor([[math.log(0.25), math.log(0.4)]], dtype=torch.float64)
    # log r = ref - logp = [log 0.5, log 2]
    k1 = [math.log(2.0), -math.log(2.0)]
    k2 = [0.5 * math.log(2.0) ** 2] * 2
    k3 = [0.5 - math.log(0.5) - 1, 2.0 - math.log(2.0) - 1]  # r - log r - 1
    for name, expected in (("k1", k1), ("k2", k2), ("k3", k3)):
        assert kl_penalty(logp, ref_logp, name)[0].tolist() == pytest.approx(expected, abs=1e-12)
    assert kl_penalty(logp, logp, "k3").abs().max().item() == 0.0
    with pytest.raises(UnknownNameError, match="k1, k2, k3"):
        kl_penalty(logp, ref_logp, "k4")


@settings(max_examples=200, deadline=None)
@given(
    logp=st.floats(-60, 0),
    ref_logp=st.floats(-60, 0),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_k3_is_non_negative_and_finite(logp: float, ref_logp: float, dtype: torch.dtype) -> None:
    value = kl_penalty(torch.tensor([[logp]], dtype=dtype), torch.tensor([[ref_logp]], dtype=dtype), "k3")
    assert torch.isfinite(value).all() and (value >= 0).all()


def test_k3_log_ratio_is_clamped() -> None:
    value = kl_penalty(torch.tensor([[-100.0]]), torch.tensor([[0.0]]), "k3").item()
    assert value == pytest.approx(math.exp(20) - 20 - 1, rel=1e-6)


# ---- entropy -------------------------------------------------------------------------------------


def test_entropy_matches_direct_formula() -> None:
    torch.manual_seed(2)
    logits = torch.randn(2, 3, 11, dtype=torch.float64) * 3
    probs = torch.softmax(logits, dim=-1)
    direct = -(probs * probs.log()).sum(dim=-1)
    torch.testing.assert_close(losses.entropy_from_logits(logits), direct, atol=1e-12, rtol=0)


def test_entropy_uniform_is_log_vocab_and_maximal() -> None:
    vocab = 50
    uniform = losses.entropy_from_logits(torch.full((2, 4, vocab), 7.0, dtype=torch.float64))
    torch.testing.assert_close(uniform, torch.full((2, 4), math.log(vocab), dtype=torch.float64))
    random = losses.entropy_from_logits(torch.randn(2, 4, vocab, dtype=torch.float64))
    assert (random < math.log(vocab)).all()


def test_entropy_handles_masked_and_large_logits() -> None:
    logits = torch.tensor([[[0.0, -math.inf, 0.0, 0.0]]], requires_grad=True)
    value = losses.entropy_from_logits(logits)
    value.sum().backward()
    assert value.item() == pytest.approx(math.log(3))
    assert torch.isfinite(logits.grad).all()
    big = losses.entropy_from_logits(torch.tensor([[[1e4, 1e4, -1e4]]], dtype=torch.bfloat16))
    assert big.dtype == torch.float32 and big.item() == pytest.approx(math.log(2), abs=1e-6)


def test_clip_flags_use_each_sign_its_own_epsilon() -> None:
    """NGRPO's asymmetric bounds: 1.2 lies inside 1 + 0.24 but outside 1 + 0.16, and 0.8 inside
    1 - 0.24 but outside 1 - 0.16, so swapping the epsilons in the flags changes every count."""
    rho = torch.tensor([[1.2, 1.3, 0.8, 0.8]], dtype=torch.float64)
    advantages = torch.tensor([[1.0, 1.0, -1.0, 1.0]], dtype=torch.float64)
    out = losses.ppo_clip(rho.log(), torch.zeros_like(rho), advantages, torch.ones_like(rho),
                          epsilon_pos=0.24, epsilon_neg=0.16)
    assert out.clipped_upper.tolist() == [[False, True, False, False]]
    assert out.clipped_lower.tolist() == [[False, False, True, False]]
    stats = out.stats()
    assert stats["clip/upper_frac"] == pytest.approx(0.25) and stats["clip/lower_frac"] == pytest.approx(0.25)


def test_ratio_is_new_over_old_probability() -> None:
    # rho = pi / pi_old per token: 0.6 / 0.5 = 1.2 (inside 1 + 0.28), 0.6 / 0.4 = 1.5 (clipped at 1.28 for
    # A > 0), 0.2 / 0.4 = 0.5 (clipped at 1 - 0.2 for A < 0).
    new = torch.tensor([[0.6, 0.6, 0.2]], dtype=torch.float64)
    old = torch.tensor([[0.5, 0.4, 0.4]], dtype=torch.float64)
    out = losses.ppo_clip(new.log(), old.log(), torch.tensor([[1.0, 1.0, -1.0]], dtype=torch.float64),
                          torch.ones(1, 3), epsilon_pos=0.28, epsilon_neg=0.2)
    assert out.ratio[0].tolist() == pytest.approx([1.2, 1.5, 0.5], rel=1e-12)
    assert out.per_token_loss[0].tolist() == pytest.approx([-1.2, -1.28, 0.8], rel=1e-12)


def test_zero_advantage_tokens_are_never_counted_as_clipped() -> None:
    rho = torch.tensor([[1.5, 0.5, 1.5, 0.5]], dtype=torch.float64)
    out = losses.ppo_clip(rho.log(), torch.zeros_like(rho), torch.tensor([[0.0, 0.0, 1.0, -1.0]], dtype=torch.float64),
                          torch.ones(1, 4), dual_clip_c=1.2)
    assert out.clipped_upper.tolist() == [[False, False, True, False]]
    assert out.clipped_lower.tolist() == [[False, False, False, True]]
    assert out.dual_clipped.tolist() == [[False, False, False, False]]
    assert out.per_token_loss[0, :2].tolist() == [0.0, 0.0]


def test_dual_clip_flag_only_when_the_bound_is_below_the_loss() -> None:
    log_ratio = 0.7
    rho = torch.exp(torch.tensor(log_ratio, dtype=torch.float64)).item()
    at_bound = single_token(log_ratio, -1.0, dual_clip_c=rho)  # -A*rho == -A*c: the bound changes nothing
    assert at_bound.per_token_loss.item() == pytest.approx(rho) and not at_bound.dual_clipped.item()
    below = single_token(log_ratio, -1.0, dual_clip_c=rho * (1 - 1e-9))
    assert below.dual_clipped.item() and below.per_token_loss.item() == pytest.approx(rho * (1 - 1e-9), rel=1e-15)


def test_merge_with_no_tokens_gives_zero_fractions_and_nan_ratios() -> None:
    empty = {"clip/upper_count": 0.0, "clip/lower_count": 0.0, "clip/dual_count": 0.0, "ratio/sum": 0.0,
             "tokens": 0.0, "ratio/min": math.inf, "ratio/max": -math.inf}
    merged = merge_stat_sums([empty, empty])
    assert (merged["clip/upper_frac"], merged["clip/lower_frac"], merged["clip/dual_frac"]) == (0.0, 0.0, 0.0)
    assert all(math.isnan(merged[k]) for k in ("ratio/mean", "ratio/min", "ratio/max"))


def test_compute_policy_loss_validates_for_any_registered_loss() -> None:
    name = "test_unchecked_loss"
    if name not in losses.available_policy_losses():

        @losses.register_policy_loss(name)
        def unchecked(logp, old_logp, advantages, mask):  # type: ignore[no-untyped-def]
            ones = torch.ones_like(logp, dtype=torch.bool)
            return PolicyLossOutput(logp * 0, torch.ones_like(logp), ones, ones, ones, ones)

    good = torch.zeros(2, 3)
    compute_policy_loss(name, good, good, torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="old_logp must have the shape of logp"):
        compute_policy_loss(name, good, torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\)"):
        compute_policy_loss(name, good, good, torch.zeros(2), torch.ones(3, 2))
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        compute_policy_loss(name, good, good, torch.zeros(2), torch.full((2, 3), 0.5))
    with pytest.raises(ValueError, match="advantages must have shape"):
        compute_policy_loss(name, good, good, torch.zeros(3), torch.ones(2, 3))


@pytest.mark.parametrize("mode", AGGREGATION_MODES)
def test_zero_counts_give_zero_gradient_even_with_tokens(mode: str) -> None:
    loss = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    out = aggregate(loss, torch.ones(2, 3), mode, num_tokens=0, num_seqs=0, max_len=3)
    out.backward()
    assert out.item() == 0.0 and torch.equal(loss.grad, torch.zeros(2, 3, dtype=torch.float64))


def test_kl_registry_and_shape_check() -> None:
    assert losses.available_kl_estimators() == ["k1", "k2", "k3"]
    with pytest.raises(ValueError, match="ref_logp must have the shape of logp"):
        kl_penalty(torch.zeros(2, 3), torch.zeros(2, 2), "k1")
    with pytest.raises(ValueError, match=r"logp must have shape \[B, T\]"):
        kl_penalty(torch.zeros(3), torch.zeros(3), "k2")


def test_a_mask_with_any_value_other_than_0_and_1_is_refused() -> None:
    with pytest.raises(ValueError, match="mask must hold only 0 and 1"):
        losses.as_bool_mask(torch.tensor([[1.0, 0.0, 0.5]]), (1, 3))
    assert losses.as_bool_mask(torch.tensor([[1.0, 0.0, 1.0]]), (1, 3)).tolist() == [[True, False, True]]


def test_an_empty_micro_batch_does_not_change_the_merged_ratio_range() -> None:
    empty = losses.ppo_clip(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3)).stat_sums()
    assert empty["tokens"] == 0 and (empty["ratio/min"], empty["ratio/max"]) == (math.inf, -math.inf)
    rho = torch.tensor([[0.5, 2.0]], dtype=torch.float64)
    full = losses.ppo_clip(rho.log(), torch.zeros_like(rho), torch.tensor([1.0]), torch.ones(1, 2)).stat_sums()
    merged = merge_stat_sums([empty, full, empty])
    assert (merged["ratio/min"], merged["ratio/max"]) == pytest.approx((0.5, 2.0))
    assert merged["ratio/mean"] == pytest.approx(1.25)


def test_clip_flags_are_strict_at_the_bounds_and_each_uses_its_own_side() -> None:
    # rho = exp(0) = 1 exactly with epsilons 0: on both bounds, so neither flag (they need rho > 1 + eps
    # or rho < 1 - eps). With epsilon_neg 0.16, rho = 1 is inside the lower bound for A < 0.
    ones = torch.zeros(1, 2, dtype=torch.float64)
    adv = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    at_bounds = losses.ppo_clip(ones, ones, adv, torch.ones(1, 2), epsilon_pos=0.0, epsilon_neg=0.0)
    assert at_bounds.clipped_upper.tolist() == [[False, False]] and at_bounds.clipped_lower.tolist() == [[False, False]]
    inside = losses.ppo_clip(ones, ones, adv, torch.ones(1, 2), epsilon_pos=0.24, epsilon_neg=0.16)
    assert inside.clipped_lower.tolist() == [[False, False]]


def test_dual_clip_never_flags_positive_advantages() -> None:
    # A = 0.5 > 0 with rho = 1 and c = 3: -A*rho = -0.5 lies above -A*c = -1.5, but the dual clip is
    # for negative advantages only.
    out = single_token(0.0, 0.5, dual_clip_c=3.0)
    assert out.per_token_loss.item() == pytest.approx(-0.5) and not out.dual_clipped.item()


def test_epsilon_neg_of_one_is_allowed_and_never_clips() -> None:
    out = single_token(math.log(0.01), -2.0, epsilon_neg=1.0)  # 1 - epsilon_neg = 0: rho is never below
    assert out.per_token_loss.item() == pytest.approx(2.0 * 0.01) and not out.clipped_lower.item()


def test_ppo_clip_checks_shapes_when_called_directly() -> None:
    with pytest.raises(ValueError, match="old_logp must have the shape of logp"):
        losses.ppo_clip(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))


def test_counts_below_one_still_divide() -> None:
    # The counts are divisors, not flags: any positive count divides (only 0 gives the 0 loss).
    loss = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    assert aggregate(loss, torch.ones(1, 2), "token-mean", num_tokens=0.5).item() == pytest.approx(8.0)
    assert aggregate(loss, torch.ones(1, 2), "seq-mean-token-sum", num_seqs=0.25).item() == pytest.approx(16.0)

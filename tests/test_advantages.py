"""Advantage estimators: the papers' reference numbers, invariances, loop equivalence, validation."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl import advantages
from ngrpo_rl.component_table import format_component_table
from ngrpo_rl.registry import UnknownNameError

G = 8


def group(num_correct: int, size: int = G) -> torch.Tensor:
    """One group of 0/1 rewards, correct responses first: shape [1, size], float64."""
    return torch.tensor([[1.0] * num_correct + [0.0] * (size - num_correct)], dtype=torch.float64)


def unbiased_std(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


# ---- reference numbers ---------------------------------------------------------------------------
# NGRPO, G = 8, 0/1 rewards: statistics over 9 values (8 rewards + one virtual 1.0).
#  0 correct: values {1, 0 x8}: mean 1/9, var = ((8/9)^2 + 8 (1/9)^2) / 8 = 1/9, std 1/3
#             -> A = (0 - 1/9) / (1/3) = -1/3.
#  1 correct: {1 x2, 0 x7}: mean 2/9, var = (2 (7/9)^2 + 7 (2/9)^2) / 8 = 7/36, std = sqrt(7)/6
#             -> +(7/9) / (sqrt(7)/6) = 14/(3 sqrt 7) = 1.7638, -(2/9) / (sqrt(7)/6) = -4/(3 sqrt 7) = -0.5040.
#  4 correct: {1 x5, 0 x4}: mean 5/9, var = (5 (4/9)^2 + 4 (5/9)^2) / 8 = 5/18
#             -> +(4/9)/sqrt(5/18) = 0.8433, -(5/9)/sqrt(5/18) = -1.0541.
#  7 correct: {1 x8, 0}: mean 8/9, var 1/9, std 1/3 -> +1/3, -8/3.
#  8 correct: all nine values 1 -> 0.
# GRPO, 1 correct of 8: mean 1/8, var = ((7/8)^2 + 7/64) / 7 = 1/8 -> +(7/8) sqrt 8 = 2.4749, -(1/8) sqrt 8 = -0.3536.
NGRPO_REFERENCE = {
    0: (None, -1 / 3),
    1: (14 / (3 * math.sqrt(7)), -4 / (3 * math.sqrt(7))),
    4: ((4 / 9) / math.sqrt(5 / 18), -(5 / 9) / math.sqrt(5 / 18)),
    7: (1 / 3, -8 / 3),
    8: (0.0, None),
}


@pytest.mark.parametrize("num_correct", sorted(NGRPO_REFERENCE))
def test_ngrpo_reference_numbers(num_correct: int) -> None:
    a = advantages.compute("ngrpo", group(num_correct))[0]
    expected_correct, expected_incorrect = NGRPO_REFERENCE[num_correct]
    if expected_correct is not None:
        torch.testing.assert_close(a[:num_correct], torch.full((num_correct,), expected_correct, dtype=a.dtype), atol=1e-5, rtol=0)
    if expected_incorrect is not None:
        n = G - num_correct
        torch.testing.assert_close(a[num_correct:], torch.full((n,), expected_incorrect, dtype=a.dtype), atol=1e-5, rtol=0)


def test_ngrpo_reference_numbers_as_printed_in_the_paper() -> None:
    printed = {1: (1.76, -0.50), 4: (0.843, -1.054), 7: (0.333, -2.667)}
    for num_correct, (plus, minus) in printed.items():
        a = advantages.compute("ngrpo", group(num_correct))[0]
        assert a[0].item() == pytest.approx(plus, abs=5e-3 if plus == 1.76 else 1e-3)
        assert a[-1].item() == pytest.approx(minus, abs=5e-3 if minus == -0.50 else 1e-3)
    assert advantages.compute("ngrpo", group(0))[0].tolist() == pytest.approx([-1 / math.sqrt(G + 1)] * G, abs=1e-5)


def test_grpo_one_correct_reference() -> None:
    a = advantages.compute("grpo", group(1))[0]
    assert a[0].item() == pytest.approx(7 / 8 * math.sqrt(8), abs=1e-5)  # 2.4749
    assert a[1].item() == pytest.approx(-1 / 8 * math.sqrt(8), abs=1e-5)  # -0.3536
    assert a[0].item() == pytest.approx(2.47, abs=5e-3)
    assert a[1].item() == pytest.approx(-0.35, abs=5e-3)


def test_grpo_homogeneous_groups_get_zero_and_ngrpo_all_wrong_does_not() -> None:
    for num_correct in (0, G):
        assert torch.equal(advantages.compute("grpo", group(num_correct)), torch.zeros(1, G, dtype=torch.float64))
    assert (advantages.compute("ngrpo", group(0)) < 0).all()


def test_grpo_matches_formula_with_epsilon() -> None:
    rewards = torch.tensor([[0.3, 1.2, -0.5, 2.0]], dtype=torch.float64)
    values = rewards[0].tolist()
    mean, std = sum(values) / 4, unbiased_std(values)
    expected = torch.tensor([[(v - mean) / (std + 1e-6) for v in values]], dtype=torch.float64)
    torch.testing.assert_close(advantages.compute("grpo", rewards), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        advantages.compute("grpo", rewards, std_normalize=False), rewards - mean, atol=1e-12, rtol=0
    )


def test_ngrpo_group_of_one_uses_two_values() -> None:
    # {0, 1}: mean 1/2, unbiased std sqrt(1/2) -> (0 - 1/2) / sqrt(1/2) = -1/sqrt(2)
    a = advantages.compute("ngrpo", torch.zeros(3, 1))
    torch.testing.assert_close(a, torch.full((3, 1), -1 / math.sqrt(2)), atol=1e-5, rtol=0)


def test_ngrpo_several_virtual_samples_and_no_virtual_sample() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.5]], dtype=torch.float64)
    values = rewards[0].tolist() + [2.0, 2.0]
    mean, std = sum(values) / 6, unbiased_std(values)
    expected = (rewards - mean) / (std + 1e-6)
    torch.testing.assert_close(
        advantages.compute("ngrpo", rewards, virtual_reward=2.0, num_virtual_samples=2), expected, atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        advantages.compute("ngrpo", rewards, num_virtual_samples=0), advantages.compute("grpo", rewards)
    )


def test_fixed_reward_estimators() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.7, 0.2]])
    assert advantages.compute("w_reinforce", rewards).tolist() == [[pytest.approx(0.1), -1.0, pytest.approx(0.1), -1.0]]
    assert advantages.compute("w_reinforce", rewards, positive_weight=0.5).tolist() == [[0.5, -1.0, 0.5, -1.0]]
    assert advantages.compute("psr", rewards).tolist() == [[1.0, 0.0, 1.0, 0.0]]
    assert advantages.compute("nsr", rewards).tolist() == [[0.0, -1.0, 0.0, -1.0]]
    assert advantages.compute("psr", rewards, correct_threshold=0.8).tolist() == [[1.0, 0.0, 0.0, 0.0]]


def test_dr_grpo_and_rloo_hand_values() -> None:
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(advantages.compute("dr_grpo", rewards), rewards - 0.25)
    torch.testing.assert_close(
        advantages.compute("rloo", rewards), torch.tensor([[1.0, -1 / 3, -1 / 3, -1 / 3]], dtype=torch.float64)
    )
    assert torch.equal(advantages.compute("rloo", torch.ones(2, 1)), torch.zeros(2, 1))


# ---- property tests ------------------------------------------------------------------------------

reward_value = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)
shapes = st.tuples(st.integers(1, 5), st.integers(1, 9))


@st.composite
def reward_tensors(draw: st.DrawFn, values: st.SearchStrategy[float] = reward_value) -> torch.Tensor:
    num_groups, group_size = draw(shapes)
    if draw(st.booleans()):  # often homogeneous groups, the interesting edge
        rows = [[draw(values)] * group_size for _ in range(num_groups)]
    else:
        rows = [draw(st.lists(values, min_size=group_size, max_size=group_size)) for _ in range(num_groups)]
    return torch.tensor(rows, dtype=torch.float64)


@settings(max_examples=60, deadline=None)
@given(rewards=reward_tensors(), name=st.sampled_from(["grpo", "ngrpo", "dr_grpo", "rloo", "w_reinforce", "psr", "nsr"]))
def test_every_estimator_is_finite_and_keeps_shape_and_dtype(rewards: torch.Tensor, name: str) -> None:
    for dtype in (torch.float64, torch.float32):
        out = advantages.compute(name, rewards.to(dtype))
        assert out.shape == rewards.shape and out.dtype == dtype
        assert torch.isfinite(out).all()


@settings(max_examples=60, deadline=None)
@given(rewards=reward_tensors(), shift=st.floats(-100, 100))
def test_shift_invariance(rewards: torch.Tensor, shift: float) -> None:
    for name in ("grpo", "dr_grpo", "rloo"):
        torch.testing.assert_close(
            advantages.compute(name, rewards + shift), advantages.compute(name, rewards), atol=1e-6, rtol=0
        )
    torch.testing.assert_close(
        advantages.compute("ngrpo", rewards + shift, virtual_reward=1.0 + shift),
        advantages.compute("ngrpo", rewards, virtual_reward=1.0),
        atol=1e-6,
        rtol=0,
    )


@settings(max_examples=60, deadline=None)
@given(rewards=reward_tensors(st.integers(-5, 5).map(float)), scale=st.floats(0.01, 100))
def test_grpo_positive_scale_invariance(rewards: torch.Tensor, scale: float) -> None:
    # Exact with epsilon = 0; with the default epsilon = 1e-6 it holds to about epsilon / std.
    torch.testing.assert_close(
        advantages.compute("grpo", rewards * scale, epsilon=0.0), advantages.compute("grpo", rewards, epsilon=0.0)
    )
    torch.testing.assert_close(
        advantages.compute("grpo", rewards * scale), advantages.compute("grpo", rewards), atol=1e-3, rtol=0
    )


def loop_normalized(rewards: torch.Tensor, extra: list[float]) -> torch.Tensor:
    """Reference: (r - mean) / (std + 1e-6) per group over rewards + extra, one group at a time."""
    out = torch.zeros_like(rewards)
    for g, row in enumerate(rewards.tolist()):
        values = row + extra
        if len(values) < 2:
            continue
        mean, std = sum(values) / len(values), unbiased_std(values)
        for i, r in enumerate(row):
            out[g, i] = (r - mean) / (std + 1e-6)
    return out


@settings(max_examples=60, deadline=None)
@given(rewards=reward_tensors(st.floats(0, 1)), virtual=st.floats(-2, 2), copies=st.integers(0, 3))
def test_vectorised_grpo_and_ngrpo_equal_python_loops(rewards: torch.Tensor, virtual: float, copies: int) -> None:
    torch.testing.assert_close(advantages.compute("grpo", rewards), loop_normalized(rewards, []), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        advantages.compute("ngrpo", rewards, virtual_reward=virtual, num_virtual_samples=copies),
        loop_normalized(rewards, [virtual] * copies),
        atol=1e-6,
        rtol=0,
    )


@settings(max_examples=60, deadline=None)
@given(rewards=reward_tensors())
def test_rloo_equals_leave_one_out_loop(rewards: torch.Tensor) -> None:
    expected = torch.zeros_like(rewards)
    for g, row in enumerate(rewards.tolist()):
        if len(row) > 1:
            for i, r in enumerate(row):
                others = row[:i] + row[i + 1 :]
                expected[g, i] = r - sum(others) / len(others)
    torch.testing.assert_close(advantages.compute("rloo", rewards), expected, atol=1e-9, rtol=0)


@settings(max_examples=40, deadline=None)
@given(
    rewards=reward_tensors(),
    position=st.tuples(st.integers(0, 4), st.integers(0, 8)),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
    name=st.sampled_from(["grpo", "ngrpo", "dr_grpo", "rloo", "w_reinforce", "psr", "nsr"]),
)
def test_non_finite_rewards_are_rejected(rewards: torch.Tensor, position: tuple[int, int], bad: float, name: str) -> None:
    g, i = position[0] % rewards.shape[0], position[1] % rewards.shape[1]
    rewards[g, i] = bad
    with pytest.raises(ValueError, match=rf"1 non-finite values \(first at group {g}, index {i}\)"):
        advantages.compute(name, rewards)


# ---- validation and registry ---------------------------------------------------------------------


def test_error_messages() -> None:
    rewards = torch.zeros(2, 4)
    rewards[0, 3] = math.nan
    rewards[1, 0] = math.inf
    with pytest.raises(ValueError) as info:
        advantages.compute("grpo", rewards)
    assert str(info.value) == (
        "rewards contain 2 non-finite values (first at group 0, index 3); the verifier must return finite rewards"
    )
    with pytest.raises(ValueError, match=r"reshape .*\[num_groups, group_size\]|\[num_groups, group_size\].*reshape"):
        advantages.compute("grpo", torch.zeros(8))
    with pytest.raises(TypeError, match="floating"):
        advantages.compute("grpo", torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="does not accept virtual_reward"):
        advantages.compute("grpo", torch.zeros(2, 4), virtual_reward=1.0)
    with pytest.raises(ValueError, match="num_virtual_samples"):
        advantages.compute("ngrpo", torch.zeros(2, 4), num_virtual_samples=-1)


def test_unknown_estimator_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        advantages.compute("ngrpoo", torch.zeros(1, 2))
    for name in ("grpo", "ngrpo", "dr_grpo", "rloo", "w_reinforce", "psr", "nsr"):
        assert name in str(info.value)


def test_duplicate_registration_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        advantages.register("grpo")(lambda rewards: rewards)


def test_custom_estimator_is_selected_by_name() -> None:
    name = "test_median_baseline"
    if name not in advantages.available():

        @advantages.register(name)
        def median_baseline(rewards: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
            return scale * (rewards - rewards.median(dim=1, keepdim=True).values)

    assert name in advantages.available()
    out = advantages.compute(name, torch.tensor([[1.0, 2.0, 6.0]]), scale=2.0)
    assert out.tolist() == [[-2.0, 0.0, 8.0]]
    assert advantages.bind_params(name, {"scale": 3.0, "lr": 1e-6}) == {"scale": 3.0}


def test_bind_params_filters_a_config() -> None:
    config = {"virtual_reward": 1.0, "num_virtual_samples": 1, "epsilon": 1e-6, "lr": 1e-6, "epsilon_pos": 0.24}
    assert advantages.bind_params("ngrpo", config) == {"virtual_reward": 1.0, "num_virtual_samples": 1, "epsilon": 1e-6}
    assert advantages.bind_params("grpo", config) == {"epsilon": 1e-6}
    assert advantages.bind_params("rloo", config) == {}


def test_empty_batch() -> None:
    # The built-in estimators (other tests register their own, with required parameters).
    for name in advantages.available():
        if advantages.get(name).__module__.startswith("ngrpo_rl") and not advantages.is_token_level(name):
            assert advantages.compute(name, torch.zeros(0, G)).shape == (0, G)


def test_token_level_estimators_refuse_group_rewards() -> None:
    assert advantages.is_token_level("gae") and advantages.needs_critic("gae")
    assert not advantages.is_token_level("ngrpo") and not advantages.needs_critic("ngrpo")
    with pytest.raises(TypeError, match="token-level"):
        advantages.compute("gae", torch.zeros(2, G))


def test_gae_estimator_whitens_advantages_and_keeps_unwhitened_returns() -> None:
    from ngrpo_rl.batch import TrainingBatch
    from ngrpo_rl.value import gae

    rewards = torch.tensor([1.0, 0.0, 0.0])
    lengths = [3, 2, 1]
    batch = TrainingBatch(
        problem_ids=["a"] * 3, golds=["1"] * 3, prompt_token_ids=[[1]] * 3,
        response_token_ids=[[5] * n for n in lengths], old_logprobs=[[-1.0] * n for n in lengths],
        texts=[""] * 3, truncated=[False] * 3, correct=rewards.bool(), scores=rewards,
        rewards=rewards, reasons=["x"] * 3, group_size=3,
        values=torch.tensor([[0.2, 0.4, 0.6], [0.1, 0.3, 0.0], [0.5, 0.0, 0.0]]),
        token_rewards=torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]),
    )
    out = advantages.compute_token_level("gae", batch, gamma=1.0, lam=1.0, whiten=True)
    mask = batch.response_mask()
    raw, returns = gae(batch.token_rewards, batch.values, mask)
    # gamma = lam = 1: the advantage is the reward-to-go minus the value; returns are reward-to-go.
    torch.testing.assert_close(returns, torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))
    torch.testing.assert_close(out.returns, returns)
    valid = mask.bool()
    assert abs(float(out.advantages[valid].mean())) < 1e-6
    assert float(out.advantages[valid].std()) == pytest.approx(1.0, abs=1e-3)
    # Whitening is affine with a positive scale: the order of the raw advantages is kept.
    assert torch.equal(out.advantages[valid].argsort(), raw[valid].argsort())
    assert bool((out.advantages[~valid] == 0).all())


def test_component_table_ngrpo_row() -> None:
    table = format_component_table(8)
    row = next(line for line in table.splitlines() if line.strip().startswith("1/8"))
    cells = row.split()
    # columns: correct, GRPO +, GRPO -, NGRPO +, NGRPO -, Dr.GRPO +, Dr.GRPO -, RLOO +, RLOO -
    assert cells[1:5] == ["+2.475", "-0.354", "+1.764", "-0.504"]
    assert cells[3].startswith("+1.76") and cells[4].startswith("-0.50")


def test_custom_estimator_example_runs() -> None:
    script = Path(__file__).resolve().parents[1] / "examples" / "custom_estimator.py"
    result = subprocess.run([sys.executable, str(script)], check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "median_baseline:" in result.stdout and "+1.764" in result.stdout


def test_group_statistics_are_float64_for_float32_rewards() -> None:
    # 2^24 + 2 and 2^24 are exact in float32, but their mean 2^24 + 0.5 is not (float32 spacing is 2
    # there): statistics taken in float32 would centre on 2^24 and give [2, 0, 0, 0]. Exactly:
    # mean = 2^24 + 1/2, so r - mean = [1.5, -0.5, -0.5, -0.5], all exact in float32.
    big = float(2**24)
    rewards = torch.tensor([[big + 2, big, big, big]], dtype=torch.float32)
    expected = [[1.5, -0.5, -0.5, -0.5]]
    assert advantages.compute("dr_grpo", rewards).tolist() == expected
    assert advantages.compute("rloo", rewards)[0].tolist() == pytest.approx([2.0, -2 / 3, -2 / 3, -2 / 3])  # x 4/3
    # unbiased std of [1.5, -0.5, -0.5, -0.5] = sqrt(3 / 3) = 1
    assert advantages.compute("grpo", rewards, epsilon=0.0).tolist() == expected


def test_a_reward_of_exactly_the_threshold_is_not_correct() -> None:
    rewards = torch.tensor([[0.5, 0.75, 0.25]])
    assert advantages.compute("psr", rewards).tolist() == [[0.0, 1.0, 0.0]]
    assert advantages.compute("nsr", rewards).tolist() == [[-1.0, 0.0, -1.0]]
    assert advantages.compute("w_reinforce", rewards).tolist() == [[-1.0, pytest.approx(0.1), -1.0]]


def test_negative_epsilon_is_refused_by_grpo_and_ngrpo() -> None:
    for name in ("grpo", "ngrpo"):
        with pytest.raises(ValueError, match="epsilon must be a finite number >= 0"):
            advantages.compute(name, torch.zeros(1, 4), epsilon=-1e-3)


def _gae_batch(lengths: list[int], token_rewards: list[list[float]], values: list[list[float]]):
    from ngrpo_rl.batch import TrainingBatch

    n = len(lengths)
    scores = torch.tensor([max(row) for row in token_rewards])
    return TrainingBatch(
        problem_ids=["a"] * n, golds=["1"] * n, prompt_token_ids=[[1]] * n,
        response_token_ids=[[5] * k for k in lengths], old_logprobs=[[-1.0] * k for k in lengths],
        texts=[""] * n, truncated=[False] * n, correct=scores.bool(), scores=scores, rewards=scores,
        reasons=["x"] * n, group_size=n, values=torch.tensor(values), token_rewards=torch.tensor(token_rewards),
    )


def test_gae_estimator_defaults_are_the_official_run() -> None:
    # Defaults gamma = lam = 1 and whitening. Rows of 2 and 1 tokens, the reward on the last token.
    # gamma = lam = 1: A_t = reward-to-go - V_t: row 0: 1 - 0.5 = 0.5, 1 - 0.25 = 0.75; row 1: 0 - 0.5.
    # Whitened over the 3 tokens: mean 0.25, deviations [0.25, 0.5, -0.75], unbiased variance
    # (0.0625 + 0.25 + 0.5625) / 2 = 0.4375.
    batch = _gae_batch([2, 1], [[0.0, 1.0], [0.0, 0.0]], [[0.5, 0.25], [0.5, 0.0]])
    out = advantages.compute_token_level("gae", batch)
    scale = math.sqrt(0.4375 + 1e-8)
    expected = torch.tensor([[0.25 / scale, 0.5 / scale], [-0.75 / scale, 0.0]])
    torch.testing.assert_close(out.advantages, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.returns, torch.tensor([[1.0, 1.0], [0.0, 0.0]]))


def test_gae_estimator_whitens_two_tokens_and_not_one() -> None:
    # Two tokens: raw A = [1 - 0.25, 0 - 0.5] = [0.75, -0.5]; mean 0.125, deviations +-0.625,
    # unbiased variance 2 * 0.625^2 / 1 = 0.78125.
    two = _gae_batch([1, 1], [[1.0], [0.0]], [[0.25], [0.5]])
    whitened = advantages.compute_token_level("gae", two, gamma=1.0, lam=1.0, whiten=True).advantages
    expected = 0.625 / math.sqrt(0.78125 + 1e-8)
    torch.testing.assert_close(whitened, torch.tensor([[expected], [-expected]]), atol=1e-6, rtol=0)
    # One token: no variance to whiten with, the raw advantage is kept.
    one = _gae_batch([1], [[1.0]], [[0.25]])
    assert advantages.compute_token_level("gae", one, whiten=True).advantages.tolist() == [[0.75]]


def test_token_level_inputs_must_be_finite() -> None:
    batch = _gae_batch([1, 1, 1], [[1.0], [0.0], [0.0]], [[0.25], [math.nan], [0.5]])
    with pytest.raises(ValueError, match=r"the batch's values contain 1 non-finite values \(first at row 1\)"):
        advantages.compute_token_level("gae", batch)
    batch = _gae_batch([1, 1], [[1.0], [0.0]], [[0.25], [0.5]])
    batch = batch.with_fields(token_rewards=torch.tensor([[1.0], [math.inf]]))
    with pytest.raises(ValueError, match=r"token_rewards contain 1 non-finite values \(first at row 1\)"):
        advantages.compute_token_level("gae", batch)


def test_an_estimator_must_return_one_advantage_per_reward() -> None:
    outputs = {"short": torch.zeros(2, 3), "list": [[0.0] * 4] * 2}
    for kind, output in outputs.items():
        name = f"test_returns_{kind}"
        if name not in advantages.available():
            advantages.register(name, params={})(lambda rewards, _output=output: _output)
    with pytest.raises(ValueError, match=r"must return a tensor of shape \(2, 4\), got \(2, 3\)"):
        advantages.compute("test_returns_short", torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"must return a tensor of shape \(2, 4\), got list"):
        advantages.compute("test_returns_list", torch.zeros(2, 4))


def test_overflowing_advantages_are_refused_naming_the_largest_reward() -> None:
    # The group sum 1.7e308 + 1.7e308 - 1.7e308 + 1 overflows float64: the mean is infinite.
    rewards = torch.tensor([[1.7e308, 1.7e308, -1.7e308, 1.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match=r"non-finite advantages from finite inputs \(largest \|reward\| 1.7e\+308\)"):
        advantages.compute("dr_grpo", rewards)


def test_token_level_estimators_are_checked_like_the_others() -> None:
    batch = _gae_batch([1, 1], [[1.0], [0.0]], [[0.25], [0.5]])
    with pytest.raises(ValueError, match="needs the batch's token_rewards and the critic's values"):
        advantages.compute_token_level("gae", batch.with_fields(values=None))
    with pytest.raises(ValueError, match="needs the batch's token_rewards and the critic's values"):
        advantages.compute_token_level("gae", batch.with_fields(token_rewards=None))
    outputs = {"wrong_shape": torch.zeros(2, 2), "nan": torch.tensor([[0.0], [math.nan]])}
    for kind, output in outputs.items():
        name = f"test_token_level_{kind}"
        if name not in advantages.available():
            advantages.register(name, params={}, token_level=True)(
                lambda batch, _output=output: batch.with_fields(advantages=_output)
            )
    with pytest.raises(ValueError, match=r"must return the batch with advantages of shape \(2, 1\)"):
        advantages.compute_token_level("test_token_level_wrong_shape", batch)
    with pytest.raises(ValueError, match="gave non-finite advantages"):
        advantages.compute_token_level("test_token_level_nan", batch)
    with pytest.raises(TypeError, match="sequence-level"):
        advantages.compute_token_level("grpo", batch)


def test_a_zero_standard_deviation_never_divides() -> None:
    # 1e-200 and 2e-200 differ, but their squared deviations (2.5e-401) underflow float64: the std is
    # exactly 0. With epsilon = 0 there is nothing to normalise by, and the advantages are 0 (not the
    # unnormalised r - mean, nor +-inf).
    rewards = torch.tensor([[1e-200, 2e-200]], dtype=torch.float64)
    assert advantages.compute("grpo", rewards, epsilon=0.0).tolist() == [[0.0, 0.0]]
    assert advantages.compute("ngrpo", rewards, epsilon=0.0, virtual_reward=1e-200).tolist() == [[0.0, 0.0]]

"""Group filters and group statistics."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl import advantages, group_filters
from ngrpo_rl.registry import UnknownNameError

# rows: all correct, all incorrect, mixed, all equal to 0.3 (incorrect but homogeneous), mixed non-0/1
REWARDS = torch.tensor(
    [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.3], [0.2, 0.4, 0.3]]
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("none", [True, True, True, True, True]),
        ("drop_homogeneous", [False, False, True, False, True]),
        ("drop_all_correct", [False, True, True, True, True]),
        ("drop_all_incorrect", [True, False, True, False, False]),
    ],
)
def test_filters(name: str, expected: list[bool]) -> None:
    keep = group_filters.apply(name, REWARDS)
    assert keep.dtype == torch.bool and keep.tolist() == expected


def test_explicit_correctness_overrides_the_threshold() -> None:
    correct = torch.tensor([[True, True, True], [False, False, False], [True, False, False],
                            [True, True, True], [False, True, False]])
    assert group_filters.apply("drop_all_correct", REWARDS, correct).tolist() == [False, True, True, False, True]
    assert group_filters.apply("drop_all_incorrect", REWARDS, correct).tolist() == [True, False, True, True, True]
    with pytest.raises(ValueError, match="bool tensor"):
        group_filters.apply("none", REWARDS, correct.float())


def test_registry() -> None:
    assert {"drop_all_correct", "drop_all_incorrect", "drop_homogeneous", "none"} <= set(group_filters.available())
    with pytest.raises(UnknownNameError, match="drop_homogeneous"):
        group_filters.apply("dynamic_sampling", REWARDS)
    with pytest.raises(ValueError, match="already registered"):
        group_filters.register("none")(lambda rewards, correct: None)
    name = "test_keep_high_mean"
    if name not in group_filters.available():

        @group_filters.register(name)
        def keep_high_mean(rewards: torch.Tensor, correct: torch.Tensor) -> torch.Tensor:
            return rewards.mean(dim=1) > 0.5

    assert group_filters.apply(name, REWARDS).tolist() == [True, False, False, False, False]


def test_group_stats_by_hand() -> None:
    adv = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [2.0, -1.0, -1.0], [0.0] * 3, [0.0] * 3])
    stats = group_filters.group_stats(REWARDS, advantages=adv)
    assert stats["groups/frac_all_correct"] == pytest.approx(1 / 5)
    assert stats["groups/frac_all_incorrect"] == pytest.approx(3 / 5)  # 0/0/0, 0.3 x3 and 0.2/0.4/0.3
    assert stats["groups/frac_mixed"] == pytest.approx(1 / 5)
    assert stats["advantages/frac_zero"] == pytest.approx(12 / 15)
    assert stats["advantages/mean"] == pytest.approx(0.0)
    assert stats["advantages/std"] == pytest.approx((6 / 15) ** 0.5)  # population std: sum A^2 / 15
    assert (stats["advantages/min"], stats["advantages/max"]) == (-1.0, 2.0)
    assert "advantages/mean" not in group_filters.group_stats(REWARDS)


def test_empty_input() -> None:
    empty = torch.zeros(0, 8)
    assert group_filters.apply("drop_homogeneous", empty).shape == (0,)
    stats = group_filters.group_stats(empty, advantages=empty)
    assert set(stats.values()) == {0.0}
    assert "groups/frac_mixed" in stats and "advantages/std" in stats


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=3, max_size=3), min_size=1, max_size=6))
def test_group_fractions_sum_to_one_and_filters_agree(rows: list[list[float]]) -> None:
    rewards = torch.tensor(rows)
    stats = group_filters.group_stats(rewards, advantages=advantages.compute("grpo", rewards))
    assert stats["groups/frac_all_incorrect"] + stats["groups/frac_all_correct"] + stats["groups/frac_mixed"] == pytest.approx(1.0)
    kept_correct = group_filters.apply("drop_all_correct", rewards).float().mean().item()
    kept_incorrect = group_filters.apply("drop_all_incorrect", rewards).float().mean().item()
    assert kept_correct == pytest.approx(1 - stats["groups/frac_all_correct"])
    assert kept_incorrect == pytest.approx(1 - stats["groups/frac_all_incorrect"])
    # Every group dropped by drop_homogeneous has all-zero GRPO advantages.
    homogeneous = ~group_filters.apply("drop_homogeneous", rewards)
    assert (advantages.compute("grpo", rewards)[homogeneous] == 0).all()


def test_without_verdicts_a_reward_counts_as_correct_only_above_one_half() -> None:
    """Rewards strictly between 0 and 1 (partial credit): 0.5 itself is not correct."""
    rewards = torch.tensor([[0.5, 0.5], [0.6, 0.0], [0.4, 0.5]])
    assert group_filters.apply("drop_all_incorrect", rewards).tolist() == [False, True, False]
    assert group_filters.apply("drop_all_correct", torch.tensor([[0.5, 0.9], [0.51, 0.9]])).tolist() == [True, False]
    stats = group_filters.group_stats(rewards)
    assert stats["groups/frac_all_incorrect"] == pytest.approx(2 / 3)
    assert stats["groups/frac_mixed"] == pytest.approx(1 / 3)


def test_non_finite_rewards_are_refused_naming_the_first() -> None:
    rewards = torch.zeros(3, 4)
    rewards[1, 2] = float("nan")
    rewards[2, 0] = float("inf")
    for call in (lambda: group_filters.apply("none", rewards), lambda: group_filters.group_stats(rewards)):
        with pytest.raises(ValueError, match=r"2 non-finite values \(first at group 1, index 2\)"):
            call()
    with pytest.raises(ValueError, match=r"shape \[num_groups, group_size\]"):
        group_filters.apply("none", torch.zeros(4))


def test_a_filter_must_return_one_bool_per_group() -> None:
    outputs = {"floats": torch.ones(5), "too_short": torch.ones(4, dtype=torch.bool)}
    for name in outputs:
        if f"test_returns_{name}" not in group_filters.available():
            group_filters.register(f"test_returns_{name}")(lambda rewards, correct, _name=name: outputs[_name])
        with pytest.raises(ValueError, match=rf"group filter 'test_returns_{name}' must return a bool tensor of shape \(5,\)"):
            group_filters.apply(f"test_returns_{name}", REWARDS)


def test_frac_zero_counts_only_magnitudes_below_1e_8() -> None:
    advantages_ = torch.tensor([[1e-8, -1e-8, 5e-9, 0.0]], dtype=torch.float64)
    stats = group_filters.group_stats(torch.zeros(1, 4), advantages=advantages_)
    assert stats["advantages/frac_zero"] == pytest.approx(2 / 4)  # 5e-9 and 0.0; 1e-8 itself is not zero

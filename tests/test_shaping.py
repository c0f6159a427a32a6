"""Reward shaping: DAPO's soft overlong penalty, the registered shapers and the shape-rewards stage."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl.pipeline.shaping import overlong_penalty


def test_overlong_penalty_by_hand() -> None:
    # L_max = 100, L_cache = 20: free up to 80, then -(len - 80)/20, -1 at 100 and beyond.
    lengths = torch.tensor([0, 50, 80, 81, 90, 99, 100, 130])
    penalty = overlong_penalty(lengths, max_new_tokens=100, overlong_buffer=20)
    expected = [0.0, 0.0, 0.0, -0.05, -0.5, -0.95, -1.0, -1.0]
    assert penalty.tolist() == pytest.approx(expected)
    assert penalty.dtype == torch.get_default_dtype()
    scaled = overlong_penalty(lengths.double(), max_new_tokens=100, overlong_buffer=20, penalty_factor=0.5)
    assert scaled.dtype == torch.float64
    assert scaled.tolist() == pytest.approx([0.5 * e for e in expected])


def test_buffer_equal_to_max_new_tokens() -> None:
    penalty = overlong_penalty(torch.tensor([0, 5, 10]), max_new_tokens=10, overlong_buffer=10)
    assert penalty.tolist() == pytest.approx([0.0, -0.5, -1.0])


@pytest.mark.parametrize("buffer", [0, 101, -5, 2.5])
def test_invalid_buffer_names_the_field(buffer: object) -> None:
    with pytest.raises(ValueError, match="overlong_buffer"):
        overlong_penalty(torch.tensor([1]), max_new_tokens=100, overlong_buffer=buffer)  # type: ignore[arg-type]


def test_other_validation() -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        overlong_penalty(torch.tensor([1]), max_new_tokens=0, overlong_buffer=1)
    with pytest.raises(ValueError, match="penalty_factor"):
        overlong_penalty(torch.tensor([1]), max_new_tokens=10, overlong_buffer=2, penalty_factor=-1.0)
    with pytest.raises(ValueError, match="lengths"):
        overlong_penalty(torch.tensor([-1]), max_new_tokens=10, overlong_buffer=2)


@settings(max_examples=100, deadline=None)
@given(max_new_tokens=st.integers(1, 4096), data=st.data())
def test_penalty_is_monotone_and_bounded(max_new_tokens: int, data: st.DataObject) -> None:
    buffer = data.draw(st.integers(1, max_new_tokens))
    lengths = torch.arange(0, max_new_tokens + 10)
    penalty = overlong_penalty(lengths, max_new_tokens=max_new_tokens, overlong_buffer=buffer)
    assert (penalty <= 0).all() and (penalty >= -1).all()
    assert (penalty[1:] <= penalty[:-1]).all()
    assert penalty[max_new_tokens - buffer].item() == 0.0
    assert penalty[max_new_tokens].item() == pytest.approx(-1.0)


# ---- the shape-rewards stage and the registered shapers -------------------------------------------


def shaping_batch(scores: list[float], lengths: list[int], correct: list[bool] | None = None):
    from ngrpo_rl.batch import TrainingBatch

    values = torch.tensor(scores, dtype=torch.float32)
    return TrainingBatch(
        problem_ids=["p"] * len(scores), golds=["1"] * len(scores), prompt_token_ids=[[1, 2]] * len(scores),
        response_token_ids=[[5] * n for n in lengths], old_logprobs=[[-1.0] * n for n in lengths],
        texts=["x"] * len(scores), truncated=[False] * len(scores),
        correct=torch.tensor(correct if correct is not None else [s >= 1.0 for s in scores]),
        scores=values, rewards=values.clone(), reasons=["x"] * len(scores), group_size=len(scores),
    )


def test_registered_shapers_are_listed_sorted() -> None:
    from ngrpo_rl.pipeline import shaping

    names = shaping.available()
    assert {"binary", "overlong_penalty"} <= set(names) and names == sorted(names)


def test_binary_shaper_ignores_partial_credit_and_keeps_the_scores() -> None:
    from ngrpo_rl.pipeline.shaping import shape_rewards

    batch = shaping_batch([0.3, 1.0, 0.0, 0.7], [2, 2, 2, 2], correct=[False, True, False, True])
    shaped = shape_rewards(batch, ("binary",))  # no params: every shaper gets its defaults
    assert shaped.rewards.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert shaped.rewards.dtype == batch.scores.dtype
    assert shaped.scores.tolist() == pytest.approx([0.3, 1.0, 0.0, 0.7])
    # No shaper: the rewards are the scores.
    assert shape_rewards(batch, ()).rewards.tolist() == pytest.approx([0.3, 1.0, 0.0, 0.7])


def test_overlong_shaper_defaults_and_order() -> None:
    from ngrpo_rl.pipeline.shaping import shape_rewards

    # max_new_tokens 31: the default buffer is 31 // 3 = 10, so lengths up to 21 are free and
    # length 26 gets -(26 - 21) / 10 = -0.5, with the default factor 1.
    batch = shaping_batch([1.0, 1.0, 0.0], [21, 26, 31])
    shaped = shape_rewards(batch, ("overlong_penalty",), {"overlong_penalty": {"max_new_tokens": 31}})
    assert shaped.rewards.tolist() == pytest.approx([1.0, 0.5, -1.0])
    # max_new_tokens 2: a third rounds down to 0, and the buffer is at least one token.
    tiny = shaping_batch([1.0, 1.0, 1.0], [0, 1, 2])
    shaped = shape_rewards(tiny, ("overlong_penalty",), {"overlong_penalty": {"max_new_tokens": 2}})
    assert shaped.rewards.tolist() == pytest.approx([1.0, 1.0, 0.0])
    # Shapers run in order: binary then the penalty on the binary reward, and the reverse.
    partial = shaping_batch([0.4], [26], correct=[True])
    params = {"overlong_penalty": {"max_new_tokens": 31}}
    assert shape_rewards(partial, ("binary", "overlong_penalty"), params).rewards.tolist() == pytest.approx([0.5])
    assert shape_rewards(partial, ("overlong_penalty", "binary"), params).rewards.tolist() == pytest.approx([1.0])


def test_shape_rewards_refuses_non_finite_scores_and_bad_shaper_output() -> None:
    from ngrpo_rl.pipeline import shaping
    from ngrpo_rl.pipeline.shaping import shape_rewards

    batch = shaping_batch([1.0, 0.0, 0.0], [2, 2, 2])
    bad = batch.with_fields(scores=torch.tensor([1.0, 0.0, math.nan]))
    with pytest.raises(ValueError, match=r"1 non-finite values \(first at row 2\)"):
        shape_rewards(bad, ())

    outputs = {"shape": torch.zeros(2), "finite": torch.tensor([0.0, math.inf, 0.0]), "good": torch.tensor([2.0, 3.0, 4.0])}
    for name in outputs:
        if f"test_returns_{name}" not in shaping.available():
            shaping.reward_shapers.register(f"test_returns_{name}")(lambda batch, _name=name: outputs[_name])
    for name in ("shape", "finite"):
        with pytest.raises(ValueError, match=f"reward shaper 'test_returns_{name}' must return finite rewards of shape"):
            shape_rewards(batch, (f"test_returns_{name}",))
    assert shape_rewards(batch, ("test_returns_good",)).rewards.tolist() == [2.0, 3.0, 4.0]


@pytest.mark.parametrize("max_new_tokens", [True, 2.5, 0])
def test_max_new_tokens_must_be_a_positive_int(max_new_tokens: object) -> None:
    with pytest.raises(ValueError, match="max_new_tokens"):
        overlong_penalty(torch.tensor([1]), max_new_tokens=max_new_tokens, overlong_buffer=1)  # type: ignore[arg-type]


def test_zero_penalty_factor_and_any_negative_length() -> None:
    penalty = overlong_penalty(torch.tensor([0, 50, 100]), max_new_tokens=100, overlong_buffer=20, penalty_factor=0.0)
    assert penalty.tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="lengths"):
        overlong_penalty(torch.tensor([5, -1, 7]), max_new_tokens=10, overlong_buffer=2)

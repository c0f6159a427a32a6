"""DAPO's soft overlong penalty."""

from __future__ import annotations

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

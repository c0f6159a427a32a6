"""pass@k (unbiased estimator) and the NGRPO paper's Pass@k AUC."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ngrpo_rl.metrics import benchmark_pass_at_k, pass_at_k, pass_at_k_auc


def test_pass_at_k_reference_values() -> None:
    # 1 - C(8, 3) / C(10, 3) = 1 - 56 / 120
    assert pass_at_k(10, 2, 3) == pytest.approx(0.5333, abs=1e-4)
    assert pass_at_k(10, 2, 3) == pytest.approx(1 - 56 / 120, abs=1e-12)
    # 1 - C(253, 16) / C(256, 16) = 1 - (240 * 239 * 238) / (256 * 255 * 254)
    assert pass_at_k(256, 3, 16) == pytest.approx(0.17667, abs=1e-4)
    assert pass_at_k(256, 3, 16) == pytest.approx(1 - (240 * 239 * 238) / (256 * 255 * 254), abs=1e-12)


def test_pass_at_k_edges() -> None:
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 5, 1) == 1.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c = 2 < k: every 3-subset holds a correct sample
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    for args, match in [
        ((5, 6, 1), r"c \(correct samples\) must be in \[0, n=5\]"),
        ((5, -1, 1), r"c \(correct samples\)"),
        ((5, 2, 0), r"k must be in \[1, n=5\]"),
        ((5, 2, 6), r"k must be in \[1, n=5\]"),
        ((0, 0, 1), r"n \(samples per problem\) must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            pass_at_k(*args)
    with pytest.raises(TypeError, match="k must be an int"):
        pass_at_k(5, 2, 1.5)  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), n=st.integers(1, 300))
def test_pass_at_k_agrees_with_comb_formula(data: st.DataObject, n: int) -> None:
    c = data.draw(st.integers(0, n))
    k = data.draw(st.integers(1, n))
    expected = 1.0 - math.comb(n - c, k) / math.comb(n, k)
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-9)


def test_benchmark_pass_at_k_is_mean_over_problems() -> None:
    result = benchmark_pass_at_k([0, 2, 10], n=10, ks=[1, 3])
    assert result[1] == pytest.approx((0.0 + 0.2 + 1.0) / 3)
    assert result[3] == pytest.approx((0.0 + (1 - 56 / 120) + 1.0) / 3)
    with pytest.raises(ValueError, match="empty"):
        benchmark_pass_at_k([], n=10, ks=[1])


def test_auc_hand_computed_curve() -> None:
    # k = 1, 2, 4, 8 -> log2 k = 0, 1, 2, 3; pass@k = 0.2, 0.4, 0.5, 0.8
    # trapezoids: (0.2 + 0.4)/2 + (0.4 + 0.5)/2 + (0.5 + 0.8)/2 = 0.30 + 0.45 + 0.65 = 1.40
    # AUC = 100 * 1.40 / log2(8) = 100 * 1.40 / 3 = 46.666...
    assert pass_at_k_auc({1: 0.2, 2: 0.4, 4: 0.5, 8: 0.8}) == pytest.approx(140 / 3)
    # uneven spacing, k = 1, 4, 8: 2 * (0.1 + 0.5)/2 + 1 * (0.5 + 0.6)/2 = 0.60 + 0.55 = 1.15 -> 100 * 1.15 / 3
    assert pass_at_k_auc({8: 0.6, 1: 0.1, 4: 0.5}) == pytest.approx(115 / 3)
    # a curve from k = 2: divided by log2(8) - log2(2) = 2: 2 * (0.4 + 0.8)/2 = 1.2 -> 100 * 1.2 / 2 = 60
    assert pass_at_k_auc({2: 0.4, 8: 0.8}) == pytest.approx(60.0)
    assert pass_at_k_auc({1: 1.0, 256: 1.0}) == pytest.approx(100.0)
    assert pass_at_k_auc({1: 0.0, 256: 0.0}) == 0.0


def test_auc_paper_form_for_k_1_to_256() -> None:
    ks = [2**i for i in range(9)]
    curve = {k: pass_at_k(256, 5, k) for k in ks}
    p = [curve[k] for k in ks]
    paper = 100 * (p[0] + 2 * sum(p[1:8]) + p[8]) / 16
    assert pass_at_k_auc(curve) == pytest.approx(paper, abs=1e-12)


def test_auc_validation() -> None:
    with pytest.raises(ValueError, match=">= 2"):
        pass_at_k_auc({1: 0.5})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        pass_at_k_auc({1: 0.5, 2: 1.5})
    with pytest.raises(ValueError, match="k must be >= 1"):
        pass_at_k_auc({0: 0.5, 2: 0.6})


def test_auc_refuses_keys_that_are_not_ints() -> None:
    with pytest.raises(TypeError, match="k must be an int"):
        pass_at_k_auc({1: 0.2, 2.0: 0.4})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="k must be an int"):
        pass_at_k_auc({True: 0.2, 4: 0.4})  # a bool is not a sample count

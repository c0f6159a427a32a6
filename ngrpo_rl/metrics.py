"""Evaluation metrics: unbiased pass@k and the NGRPO paper's Pass@k AUC."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import pairwise


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    return value


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021, arXiv 2107.03374).

    pass@k = 1 - C(n - c, k) / C(n, k), evaluated in the stable product form
    1 - prod_{i = n-c+1}^{n} (1 - k / i); 1.0 when n - c < k (every k-subset has a correct sample).
    Requires 0 <= c <= n and 1 <= k <= n.
    """
    n, c, k = _check_int("n", n), _check_int("c", c), _check_int("k", k)
    if n < 1:
        raise ValueError(f"n (samples per problem) must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c (correct samples) must be in [0, n={n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}], got {k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def benchmark_pass_at_k(correct_counts: Sequence[int], n: int, ks: Sequence[int]) -> dict[int, float]:
    """Mean pass@k over problems, for each k in ``ks``; ``correct_counts[j]`` is c for problem j."""
    if len(correct_counts) == 0:
        raise ValueError("correct_counts is empty: need at least one problem")
    return {k: sum(pass_at_k(n, c, k) for c in correct_counts) / len(correct_counts) for k in ks}


def pass_at_k_auc(values: Mapping[int, float]) -> float:
    """The NGRPO paper's Pass@k AUC (arXiv 2509.18851), in [0, 100].

    100 * (trapezoid of pass@k over log2 k) / (log2 k_max - log2 k_min). For a curve starting at
    k = 1 the divisor is log2 k_max, and for k = 1, 2, 4, ..., 256 the AUC is
    100 * [p1 + 2 (p2 + ... + p128) + p256] / 16. ``values`` maps k -> pass@k (at least two ks).
    """
    if len(values) < 2:
        raise ValueError(f"pass_at_k_auc needs pass@k at >= 2 values of k, got {len(values)}")
    for k, p in values.items():
        _check_int("k", k)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"pass@{k} must be in [0, 1], got {p!r}")
    points = sorted((math.log2(k), p) for k, p in values.items())
    area = sum((x1 - x0) * (p0 + p1) / 2 for (x0, p0), (x1, p1) in pairwise(points))
    return 100.0 * area / (points[-1][0] - points[0][0])

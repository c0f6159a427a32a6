"""Means with Student-t confidence intervals, and paired differences, for results over seeds.

A study trains every variant with the same seeds, so two variants are compared seed by seed (a
paired difference): the seed's shared data order and warm-start samples cancel, and what remains is
the spread of the difference itself. Pure Python (``math`` only): the t quantile comes from the
regularised incomplete beta function, so nothing here needs scipy.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A sample mean with its two-sided confidence interval ``[low, high]``.

    ``std`` is the sample standard deviation (ddof = 1); with fewer than two values the interval is
    undefined and ``low`` / ``high`` are NaN.
    """

    mean: float
    low: float
    high: float
    n: int
    std: float
    confidence: float = CONFIDENCE

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def excludes(self, value: float = 0.0) -> bool:
        """Whether the interval lies wholly above or below ``value`` (False when undefined): for a
        paired difference, whether it exceeds seed noise at this confidence."""
        return self.n >= 2 and (self.low > value or self.high < value)

    def format(self, spec: str = ".1f") -> str:
        """``mean [low, high]``, or the mean alone when the interval is undefined."""
        if self.n < 2 or math.isnan(self.low):
            return f"{self.mean:{spec}}"
        return f"{self.mean:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` with the Student-t interval mean +- t_{(1+c)/2, n-1} * s / sqrt(n)."""
    n = len(values)
    if n == 0:
        raise ValueError("no values to average")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, math.nan, confidence)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = t_quantile((1.0 + confidence) / 2.0, n - 1) * std / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, std, confidence)


def paired_difference(
    a: Mapping[Hashable, float], b: Mapping[Hashable, float], confidence: float = CONFIDENCE
) -> Interval:
    """The mean of ``a[s] - b[s]`` over the keys (seeds) both have, with its t interval."""
    common = [key for key in a if key in b]
    if not common:
        raise ValueError("the two samples share no key (seed) to pair on")
    return mean_interval([a[key] - b[key] for key in common], confidence)


# ---- Student's t distribution ------------------------------------------------------------------


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with ``df`` degrees of freedom:
    1 - I_{df / (df + x^2)}(df / 2, 1 / 2) / 2 for x >= 0, and symmetric."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if math.isinf(x):
        return 1.0 if x > 0 else 0.0
    tail = 0.5 * regularized_beta(df / (df + x * x), df / 2.0, 0.5)
    return 1.0 - tail if x >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The x with P(T <= x) = p (e.g. 2.776 for p = 0.975, df = 4), by bisection on ``t_cdf``."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = (low + high) / 2.0
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-13 * max(1.0, high):
            break
    return (low + high) / 2.0


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularised incomplete beta function, by its continued fraction (modified
    Lentz), evaluated on whichever side of the mean (a + 1) / (a + b + 2) converges fast."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must be in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(x, a, b) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(1.0 - x, b, a) / b


def _beta_continued_fraction(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return fraction

"""Seeds as statistics, with ``scipy.stats``: a cell's mean, sample sd and 95% interval, Welch's
test of a variant against the baseline and its interval, and the seeds per arm a difference would
need (power 0.8). The formulas: docs/reports.md, "The statistics' formulas".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05  # a difference is significant where Welch's p < ALPHA
POWER = 0.8
MAX_SEEDS = 10_000  # beyond this the difference is called unresolvable in practice


@dataclass(frozen=True)
class Summary:
    """One cell's seeds: their count, mean, sample std (ddof 1) and 95% interval (None: n < 2)."""

    n: int
    mean: float
    std: float | None
    low: float | None
    high: float | None


def summary(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Summary:
    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("no values to summarise")
    mean = float(x.mean())
    if len(x) < 2:
        return Summary(len(x), mean, None, None, None)
    low, high = interval(x, confidence)
    return Summary(len(x), mean, 0.0 if _constant(x) else float(x.std(ddof=1)), low, high)


def _constant(x: np.ndarray) -> bool:
    """Every value equal (exactly: a computed std of equal floats can be 1e-17, not 0)."""
    return bool(np.ptp(x) == 0)


def interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Student-t confidence interval of the mean of ``values`` (at least two)."""
    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        raise ValueError("a confidence interval needs at least two values")
    if _constant(x):  # every seed equal: scipy returns nan; the interval is the point
        return float(x.mean()), float(x.mean())
    sem = float(x.std(ddof=1)) / math.sqrt(len(x))
    low, high = stats.t.interval(confidence, len(x) - 1, loc=float(x.mean()), scale=sem)
    return float(low), float(high)


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Welch's two-sided p-value of a against b; None where it is undefined (an arm with fewer
    than two values, or both arms without spread)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2 or (_constant(x) and _constant(y)):
        return None
    with warnings.catch_warnings():  # one constant arm: scipy warns of precision loss in its variance (0)
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(x, y, equal_var=False).pvalue)


def difference_interval(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The Welch confidence interval of mean(a) - mean(b) (the interval of Welch's test, with the
    Welch-Satterthwaite degrees of freedom); None where ``welch_p`` is undefined (an arm with
    fewer than two values, or both arms without spread)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2 or (_constant(x) and _constant(y)):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(confidence)
    return float(ci.low), float(ci.high)


def pooled_std(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    dof = len(x) + len(y) - 2
    return math.sqrt(((len(x) - 1) * x.var(ddof=1) + (len(y) - 1) * y.var(ddof=1)) / dof)


def power(effect: float, n: int, alpha: float = ALPHA) -> float:
    """The power of the two-sided equal-n two-sample t-test with n per arm at Cohen's d ``effect``."""
    if n < 2:
        raise ValueError("power needs at least two values per arm")
    df = 2 * n - 2
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    ncp = abs(effect) * math.sqrt(n / 2)
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def seeds_for_power(a: Sequence[float], b: Sequence[float], target: float = POWER, alpha: float = ALPHA) -> int | None:
    """The seeds per arm that would resolve the observed difference of means of a and b (see the
    module docstring); None where it cannot be told: an arm with fewer than two values, no
    spread, no difference, or more than ``MAX_SEEDS``."""
    if len(a) < 2 or len(b) < 2:
        return None
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diff = float(x.mean() - y.mean())
    if (_constant(x) and _constant(y)) or diff == 0:
        return None
    spread = pooled_std(x, y)
    effect = diff / spread
    # Power grows with n. Doubling n first keeps the noncentrality near the crossing (scipy's nct
    # loses precision far beyond it), then bisection finds the smallest n reaching the target.
    high = 2
    while power(effect, high, alpha) < target:
        if high >= MAX_SEEDS:
            return None
        high = min(2 * high, MAX_SEEDS)
    low = max(2, high // 2)
    while low < high:
        mid = (low + high) // 2
        if power(effect, mid, alpha) >= target:
            high = mid
        else:
            low = mid + 1
    return low

"""Statistics that decide a comparison of two models: pure functions over score arrays.

Every comparison of a table is paired twice over (the anchors: Dacrema et al. 2019 and
Rendle et al. 2019 on untuned baselines, Sun et al. 2020 on rigorous evaluation):

- over SEEDS: run ``i`` of model A and run ``i`` of model B share the seed, hence the
  training samples and their order: :func:`paired_t` and :func:`wilcoxon` test the mean
  of the per-seed differences; :func:`detectable_difference` is the smallest true
  difference those seeds detect with 80 % power (paired t-test, two-sided 5 %);
- over TEST USERS: every model is scored on the same stored lists, so a user's score
  under A and under B pair up: :func:`paired_bootstrap_ci` resamples users (seeded) for
  a 95 % confidence interval of the mean difference.

Across the comparisons of one table, :func:`holm` adjusts the p-values (Holm 1979).
Uses scipy's tests; a degenerate input (fewer than two seeds, all differences equal)
gives the documented limiting value rather than scipy's warning.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

ALPHA = 0.05
POWER = 0.8


def _diffs(a: ArrayLike, b: ArrayLike) -> NDArray[np.float64]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired samples need equal 1-d shapes, got {x.shape} and {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("paired samples contain NaN or infinite values")
    return x - y


def paired_t(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided p-value of the paired t-test of mean(a - b) = 0; ``nan`` with fewer than
    two pairs; 1 when every difference is 0 and 0 when all are the same non-zero value."""
    from scipy import stats

    d = _diffs(a, b)
    if d.size < 2:
        return math.nan
    if np.all(d == d[0]):
        return 1.0 if d[0] == 0 else 0.0
    return float(stats.ttest_rel(np.asarray(a, float), np.asarray(b, float)).pvalue)


def wilcoxon(a: ArrayLike, b: ArrayLike) -> float:
    """Two-sided p-value of the Wilcoxon signed-rank test (exact for small samples); ``nan``
    with fewer than two pairs, 1 when every difference is 0. With n pairs the smallest
    p-value it can give is 2 / 2**n (0.0625 for 5 seeds): it cannot reject at 5 % below
    6 seeds."""
    from scipy import stats

    d = _diffs(a, b)
    if d.size < 2:
        return math.nan
    if np.all(d == 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)


def detectable_difference(
    sd_diff: float, n: int, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest true mean difference a two-sided paired t-test over ``n`` pairs detects
    with probability ``power`` at level ``alpha``, when the per-pair differences have
    standard deviation ``sd_diff`` (from the noncentral t distribution; ``nan`` below 2
    pairs, 0 when ``sd_diff`` is 0)."""
    from scipy import optimize, stats

    if n < 2 or not math.isfinite(sd_diff):
        return math.nan
    if sd_diff == 0:
        return 0.0
    df = n - 1
    # scipy's noncentral t is unstable for very many degrees of freedom, where it is normal
    dist = stats.norm() if df > 500 else stats.t(df)
    crit = dist.ppf(1 - alpha / 2)

    def power_at(delta: float) -> float:  # delta: the effect in units of sd_diff
        nc = delta * math.sqrt(n)
        if df > 500:
            return float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc)) - power
        got = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
        # scipy's noncentral t gives NaN far in its tail, where the power is 1
        return (got if math.isfinite(got) else 1.0) - power

    high = 1.0
    while power_at(high) < 0:  # power grows with the effect: widen until it brackets
        high *= 2
    delta = optimize.brentq(power_at, 1e-9, high)
    return float(delta * sd_diff)


def paired_bootstrap_ci(
    a: ArrayLike, b: ArrayLike, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of mean(a - b) over paired units (test
    users): ``n_boot`` resamples of the units with replacement, seeded."""
    d = _diffs(a, b)
    if d.size == 0:
        return math.nan, math.nan
    gen = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for lo in range(0, n_boot, 256):  # blocks keep the index matrix small
        hi = min(lo + 256, n_boot)
        idx = gen.integers(0, d.size, size=(hi - lo, d.size))
        means[lo:hi] = d[idx].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (``nan`` entries stay ``nan``
    and do not count in the family)."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


__all__ = [
    "ALPHA",
    "POWER",
    "detectable_difference",
    "holm",
    "paired_bootstrap_ci",
    "paired_t",
    "wilcoxon",
]

"""The statistics of a comparison (mdr.stats): known answers computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mdr.stats import detectable_difference, holm, paired_bootstrap_ci, paired_t, wilcoxon


def test_paired_t_known_answer() -> None:
    # d = 1, 2, 3, 4: mean 2.5, sd sqrt(5/3), t = 2.5 / (sd / 2) = 3.873 on 3 df
    p = paired_t([1, 2, 3, 4], [0, 0, 0, 0])
    assert p == pytest.approx(0.030466, abs=1e-5)
    assert paired_t([1, 2], [1, 2]) == 1.0  # no difference at all
    assert paired_t([2, 3], [1, 2]) == 0.0  # the same non-zero difference every seed
    assert math.isnan(paired_t([1], [0]))


def test_wilcoxon_exact_small_sample() -> None:
    # 5 positive differences of distinct sizes: the most extreme of 2**5 sign patterns,
    # two-sided: 2 / 32
    assert wilcoxon([1.1, 2.2, 3.3, 4.4, 5.5], [0, 0, 0, 0, 0]) == pytest.approx(0.0625)
    assert wilcoxon([1, 2, 3], [1, 2, 3]) == 1.0
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        wilcoxon([1, 2], [1])


def test_detectable_difference_matches_the_normal_limit_and_grows_with_fewer_seeds() -> None:
    # many pairs: (z_0.975 + z_0.8) * sd / sqrt(n) = 2.8016 * sd / sqrt(n)
    assert detectable_difference(1.0, 10_000) == pytest.approx(2.8016 / 100, rel=1e-3)
    five, three = detectable_difference(0.01, 5), detectable_difference(0.01, 3)
    assert 0.01 * 2.8016 / math.sqrt(5) < five < three
    assert detectable_difference(0.0, 5) == 0.0 and math.isnan(detectable_difference(1.0, 1))


def test_detectable_difference_has_the_power_it_claims() -> None:
    """Simulate paired t-tests at the reported difference: about 80 % reject."""
    from scipy import stats

    n, sd = 5, 0.02
    delta = detectable_difference(sd, n)
    gen = np.random.default_rng(0)
    d = gen.normal(delta, sd, size=(20_000, n))
    t = d.mean(1) / (d.std(1, ddof=1) / math.sqrt(n))
    rejected = np.mean(np.abs(t) > stats.t.ppf(0.975, n - 1))
    assert rejected == pytest.approx(0.80, abs=0.015)


def test_bootstrap_ci_known_answers() -> None:
    a, b = np.full(50, 0.7), np.full(50, 0.6)
    low, high = paired_bootstrap_ci(a, b, n_boot=500)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)
    gen = np.random.default_rng(1)
    x, y = gen.normal(0.5, 0.1, 2000), gen.normal(0.5, 0.1, 2000)
    low, high = paired_bootstrap_ci(x, y, seed=3)
    half = 1.96 * np.std(x - y, ddof=1) / math.sqrt(2000)  # the normal approximation
    assert high - low == pytest.approx(2 * half, rel=0.1)
    assert low < np.mean(x - y) < high
    assert paired_bootstrap_ci(x, y, seed=3) == (low, high)  # seeded


def test_holm_known_answer() -> None:
    # sorted 0.01, 0.03, 0.04 -> 3 * 0.01, max(0.03, 2 * 0.03), max(0.06, 1 * 0.04)
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([0.02, float("nan")])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1])


def test_detectable_difference_with_two_seeds_is_large_but_finite() -> None:
    two = detectable_difference(0.01, 2)
    assert math.isfinite(two) and two > detectable_difference(0.01, 3)

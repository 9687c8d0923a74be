"""Always-valid rate bounds (analyzer/stats/confidence.py) against known values and edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from analyzer.stats import RateBounds, rate_bounds
from analyzer.stats.confidence import SCALE_FREE_PRIOR, log_marginal, log_mixture_martingale

TOTALS = [1, 2, 5, 10, 30, 100, 1_000, 10_000, 100_000, 1_000_000]


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """(bad, total) pairs covering 0 events, few events, S = n and fractional Prometheus counts."""
    bad: list[float] = []
    total: list[float] = []
    for n in TOTALS:
        for s in np.unique(np.round(np.linspace(0, n, 13))):
            bad.append(s)
            total.append(n)
        bad.append(0.4 * min(n, 3) + 0.1)  # fractional counts from increase()
        total.append(n + 0.3)
    return np.asarray(bad, dtype=float), np.asarray(total, dtype=float)


def test_bounds_always_contain_the_observed_rate() -> None:
    bad, total = _grid()
    for alpha in (0.001, 0.05, 0.5):
        b = rate_bounds(bad, total, alpha)
        np.testing.assert_allclose(b.rate, bad / total)
        assert np.all(b.lower <= b.rate)
        assert np.all(b.rate <= b.upper)
        assert np.all((b.lower >= 0) & (b.upper <= 1))


def test_vectorised_call_equals_scalar_calls_and_keeps_the_shape() -> None:
    bad, total = _grid()
    b = rate_bounds(bad.reshape(-1, 1), total.reshape(-1, 1), 0.05)
    assert isinstance(b, RateBounds)
    assert b.lower.shape == (len(bad), 1)
    for i in range(0, len(bad), 7):
        one = rate_bounds(bad[i], total[i], 0.05)
        assert one.lower.shape == (1,)
        # the scalar fast path and the array path agree to rounding
        assert one.lower[0] == pytest.approx(b.lower[i, 0], rel=1e-9, abs=1e-15)
        assert one.upper[0] == pytest.approx(b.upper[i, 0], rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("n", TOTALS)
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_zero_events_upper_bound_is_wider_than_exact_fixed_sample_bound(
    n: int, alpha: float
) -> None:
    # One-sided Clopper-Pearson upper bound at 0 events: 1 - alpha**(1/n) (the "rule of three").
    exact = stats.beta.ppf(1 - alpha, 1, n)
    assert exact == pytest.approx(1 - alpha ** (1 / n))
    b = rate_bounds(0, n, alpha)
    assert b.lower[0] == 0.0
    assert b.rate[0] == 0.0
    assert b.upper[0] > exact, "an always-valid bound must be wider than a fixed-sample one"


@pytest.mark.parametrize("n", TOTALS)
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_all_events_lower_bound_is_below_exact_fixed_sample_bound(n: int, alpha: float) -> None:
    exact = stats.beta.ppf(alpha, n, 1)  # one-sided Clopper-Pearson lower bound at S = n
    assert exact == pytest.approx(alpha ** (1 / n))
    b = rate_bounds(n, n, alpha)
    assert b.upper[0] == 1.0
    assert b.rate[0] == 1.0
    assert 0.0 < b.lower[0] < exact


def test_bounds_contain_the_two_sided_clopper_pearson_interval() -> None:
    bad, total = _grid()
    inside = (bad > 0) & (bad < total)
    bad, total = bad[inside], total[inside]
    for alpha in (0.01, 0.05, 0.2):
        b = rate_bounds(bad, total, alpha)
        cp_lower = stats.beta.ppf(alpha / 2, bad, total - bad + 1)
        cp_upper = stats.beta.ppf(1 - alpha / 2, bad + 1, total - bad)
        assert np.all(b.lower <= cp_lower)
        assert np.all(b.upper >= cp_upper)


def test_zero_total_means_no_knowledge() -> None:
    b = rate_bounds([0, 0], [0, 0], 0.05)
    np.testing.assert_array_equal(b.lower, [0.0, 0.0])
    np.testing.assert_array_equal(b.upper, [1.0, 1.0])
    np.testing.assert_array_equal(b.rate, [0.0, 0.0])


def test_bad_slightly_above_total_is_clipped_to_total() -> None:
    # Prometheus' increase() extrapolates, so bad may exceed total by a hair.
    b = rate_bounds(100.2, 100.0, 0.05)
    assert b.rate[0] == 1.0
    assert b.upper[0] == 1.0
    assert b.lower[0] == rate_bounds(100, 100, 0.05).lower[0]


@pytest.mark.parametrize(
    ("bad", "total"),
    [(np.nan, 10), (1, np.nan), (np.inf, 10), (1, np.inf), (-1, 10), (0, -5), ([1, -1], [10, 10])],
)
def test_missing_or_negative_counts_are_rejected(bad: object, total: object) -> None:
    with pytest.raises(ValueError):
        rate_bounds(bad, total, 0.05)  # type: ignore[arg-type]


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_alpha_outside_unit_interval_is_rejected(alpha: float) -> None:
    with pytest.raises(ValueError):
        rate_bounds(1, 10, alpha)


@pytest.mark.parametrize("prior", [(0.0, 0.1), (0.1, 1.0), (-0.5,)])
def test_prior_rates_outside_unit_interval_are_rejected(prior: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        rate_bounds(1, 10, 0.05, prior_rates=prior)


def test_bounds_widen_monotonically_as_alpha_shrinks() -> None:
    bad, total = _grid()
    alphas = [0.5, 0.2, 0.1, 0.05, 0.01, 1e-3, 1e-6]
    previous = rate_bounds(bad, total, alphas[0])
    for alpha in alphas[1:]:
        b = rate_bounds(bad, total, alpha)
        assert np.all(b.lower <= previous.lower)
        assert np.all(b.upper >= previous.upper)
        assert np.all((b.upper - b.lower) > (previous.upper - previous.lower))
        previous = b


@pytest.mark.parametrize("rate", [0.0, 0.001, 0.005, 0.05, 0.5, 0.99])
def test_bounds_shrink_as_traffic_grows_at_a_fixed_rate(rate: float) -> None:
    n = np.geomspace(100, 1e8, 25)
    b = rate_bounds(rate * n, n, 0.05)
    width = b.upper - b.lower
    assert np.all(np.diff(width) < 0)
    assert np.all(np.diff(b.upper) < 0)
    assert width[-1] < 1e-3


def _scan_interval(s: float, n: float, alpha: float) -> tuple[float, float]:
    """Brute force: {p : M_n(p) < 1/alpha} on a fine grid, refined around both crossings."""
    threshold = np.log(1 / alpha)
    logit = np.linspace(-40, 40, 200_001)
    p = 1 / (1 + np.exp(-logit))
    inside = np.nonzero(log_mixture_martingale(s, n, p) < threshold)[0]
    assert inside.size > 0
    first, last = int(inside[0]), int(inside[-1])

    def refine(a: float, b: float) -> float:
        # a inside, b outside; a linear scan of 100k points then another of 100k between neighbours
        for _ in range(2):
            grid = np.linspace(a, b, 100_001)
            pg = 1 / (1 + np.exp(-grid))
            outside = np.nonzero(log_mixture_martingale(s, n, pg) >= threshold)[0]
            k = int(outside[0])
            a, b = float(grid[k - 1]), float(grid[k])
        return float(1 / (1 + np.exp(-b)))

    lower = 0.0 if first == 0 else refine(float(logit[first]), float(logit[first - 1]))
    upper = 1.0 if last == len(logit) - 1 else refine(float(logit[last]), float(logit[last + 1]))
    return lower, upper


@pytest.mark.parametrize(
    ("s", "n"),
    [(0, 10), (0, 5_000), (1, 10), (3, 100), (50, 10_000), (997, 1_000), (2.5, 700.3), (40, 40)],
)
@pytest.mark.parametrize("alpha", [0.05, 0.001])
def test_bisection_matches_brute_force_scan_of_the_martingale(
    s: float, n: float, alpha: float
) -> None:
    b = rate_bounds(s, n, alpha)
    lower, upper = _scan_interval(s, n, alpha)
    if s == 0:
        assert b.lower[0] == 0.0
    else:
        assert b.lower[0] == pytest.approx(lower, rel=1e-6)
    if s >= n:
        assert b.upper[0] == 1.0
    else:
        assert b.upper[0] == pytest.approx(upper, rel=1e-6)


def test_bounds_are_rounded_outwards_to_where_the_martingale_reaches_one_over_alpha() -> None:
    bad, total = _grid()
    inside = (bad > 0) & (bad < total)
    bad, total = bad[inside], total[inside]
    alpha = 0.05
    b = rate_bounds(bad, total, alpha)
    at_lower = log_mixture_martingale(bad, total, b.lower)
    at_upper = log_mixture_martingale(bad, total, b.upper)
    level = np.log(1 / alpha)
    assert np.all(at_lower >= level - 1e-9) and np.all(at_upper >= level - 1e-9)
    np.testing.assert_allclose(at_lower, level, atol=1e-6)
    np.testing.assert_allclose(at_upper, level, atol=1e-6)
    # Inside the interval the martingale stays below 1/alpha.
    mid = 0.5 * (b.lower + b.upper)
    assert np.all(log_mixture_martingale(bad, total, mid) < level)


def test_log_marginal_is_the_beta_mixture_integral() -> None:
    # G = Beta(1, b), b = (1-m)/m: the integral of q^S (1-q)^(n-S) is B(1+S, b+n-S) / B(1, b).
    from scipy import integrate

    for s, n in [(0, 10), (3, 20), (7, 7)]:
        expected = 0.0
        for m in SCALE_FREE_PRIOR:
            b = (1 - m) / m
            value, _ = integrate.quad(
                lambda q, b=b, s=s, n=n: q**s * (1 - q) ** (n - s) * b * (1 - q) ** (b - 1),
                0,
                1,
                points=[1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
                epsabs=0,
                epsrel=1e-12,
                limit=500,
            )
            expected += value / len(SCALE_FREE_PRIOR)
        assert float(log_marginal(s, n)) == pytest.approx(np.log(expected), rel=1e-6)

"""Histogram quantiles and exceedance counts (analyzer/stats/histogram.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.stats import comparison_bucket_bound, exceedance, quantile, quantile_bucket_bound
from analyzer.stats.histogram import comparison_bound_index

INF = math.inf
# Worked example: 100 requests, per-bucket counts (not cumulative).
BOUNDS = np.array([0.1, 0.25, 0.5, 1.0, INF])
COUNTS = np.array([10.0, 20.0, 30.0, 30.0, 10.0])  # cumulative: 10, 30, 60, 90, 100
# Istio's default request-duration buckets (ms), in seconds.
ISTIO_BOUNDS = (
    np.array(
        [
            0.5,
            1,
            5,
            10,
            25,
            50,
            100,
            250,
            500,
            1_000,
            2_500,
            5_000,
            10_000,
            30_000,
            60_000,
            300_000,
            600_000,
            1_800_000,
            3_600_000,
            INF,
        ]
    )
    / 1000.0
)


def _prometheus_histogram_quantile(q: float, bounds: np.ndarray, counts: np.ndarray) -> float:
    """Line-by-line port of bucketQuantile in prometheus/promql/quantile.go (classic buckets).

    It takes cumulative `le` counts, as Prometheus stores them.
    """
    cumulative = np.cumsum(counts)
    if len(bounds) < 2:
        return math.nan
    observations = float(cumulative[-1])
    if observations == 0:
        return math.nan
    rank = q * observations
    b = next((i for i in range(len(bounds) - 1) if cumulative[i] >= rank), len(bounds) - 1)
    if b == len(bounds) - 1:
        return float(bounds[-2])
    if b == 0 and bounds[0] <= 0:
        return float(bounds[0])
    bucket_start, bucket_end, count = 0.0, float(bounds[b]), float(cumulative[b])
    if b > 0:
        bucket_start = float(bounds[b - 1])
        count -= float(cumulative[b - 1])
        rank -= float(cumulative[b - 1])
    return bucket_start + (bucket_end - bucket_start) * (rank / count)


# --- quantile ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.05, 0.0 + 0.1 * 5 / 10),  # first bucket: lower edge 0
        (0.10, 0.1),  # rank on a bucket bound
        (0.20, 0.1 + 0.15 * 10 / 20),
        (0.30, 0.25),
        (0.50, 0.25 + 0.25 * 20 / 30),
        (0.75, 0.5 + 0.5 * 15 / 30),
        (0.90, 1.0),
        (0.95, 1.0),  # +Inf bucket: the highest finite bound
        (0.99, 1.0),
        (1.00, 1.0),
        (0.00, 0.0),
    ],
)
def test_quantile_equals_prometheus_histogram_quantile_on_a_worked_example(
    q: float, expected: float
) -> None:
    assert quantile(q, BOUNDS, COUNTS) == pytest.approx(expected, abs=1e-12)
    assert _prometheus_histogram_quantile(q, BOUNDS, COUNTS) == pytest.approx(expected, abs=1e-12)


def test_quantile_skips_empty_buckets_like_prometheus() -> None:
    counts = np.array([0.0, 0.0, 10.0, 0.0, 0.0])
    assert quantile(0.5, BOUNDS, counts) == pytest.approx(0.25 + 0.25 * 5 / 10)
    assert quantile(0.99, BOUNDS, counts) == pytest.approx(0.25 + 0.25 * 9.9 / 10)
    assert quantile(1.0, BOUNDS, counts) == pytest.approx(0.5)


def test_quantile_with_a_non_positive_first_bound_returns_that_bound() -> None:
    bounds = np.array([0.0, 1.0, INF])
    assert quantile(0.2, bounds, np.array([5.0, 5.0, 0.0])) == 0.0
    assert _prometheus_histogram_quantile(0.2, bounds, np.array([5.0, 5.0, 0.0])) == 0.0


def test_quantile_of_an_empty_histogram_is_nan() -> None:
    assert math.isnan(quantile(0.99, BOUNDS, np.zeros(5)))


def test_quantile_with_only_the_inf_bucket_is_nan() -> None:
    assert math.isnan(quantile(0.5, np.array([INF]), np.array([10.0])))


def test_quantile_when_everything_is_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert quantile(0.5, BOUNDS, np.array([0.0, 0.0, 0.0, 0.0, 7.0])) == 1.0


def test_quantile_matches_a_port_of_prometheus_on_random_histograms() -> None:
    rng = np.random.default_rng(3)
    for _ in range(300):
        counts = rng.poisson(rng.uniform(0, 40, size=len(ISTIO_BOUNDS))).astype(float)
        counts[rng.random(len(counts)) < 0.3] = 0.0
        if counts.sum() == 0:
            continue
        for q in (0.5, 0.9, 0.95, 0.99, 0.999, float(rng.random())):
            expected = _prometheus_histogram_quantile(q, ISTIO_BOUNDS, counts)
            assert quantile(q, ISTIO_BOUNDS, counts) == pytest.approx(expected, rel=1e-12)


def test_quantile_is_within_its_bucket_of_the_true_quantile() -> None:
    rng = np.random.default_rng(4)
    latencies = rng.lognormal(np.log(0.1), 0.6, size=200_000)
    counts = np.histogram(latencies, bins=np.concatenate([[0.0], ISTIO_BOUNDS]))[0].astype(float)
    for q in (0.5, 0.9, 0.99):
        estimate = quantile(q, ISTIO_BOUNDS, counts)
        true = float(np.quantile(latencies, q))
        k = int(np.searchsorted(ISTIO_BOUNDS, true))
        lower = 0.0 if k == 0 else ISTIO_BOUNDS[k - 1]
        assert lower <= estimate <= ISTIO_BOUNDS[k]


def test_negative_bucket_counts_are_treated_as_zero() -> None:
    # increase() on a reset counter can give tiny negatives.
    counts = COUNTS.copy()
    counts[1] = -0.5
    clipped = counts.copy()
    clipped[1] = 0.0
    assert quantile(0.5, BOUNDS, counts) == quantile(0.5, BOUNDS, clipped)


@pytest.mark.parametrize(
    ("bounds", "counts"),
    [
        (np.array([0.1, 0.5, 1.0]), np.array([1.0, 2.0, 3.0])),  # no +Inf bucket
        (np.array([0.5, 0.1, INF]), np.array([1.0, 2.0, 3.0])),  # not increasing
        (np.array([0.1, 0.1, INF]), np.array([1.0, 2.0, 3.0])),  # repeated bound
        (np.array([0.1, 0.5, INF]), np.array([1.0, 2.0])),  # one count short
    ],
)
def test_malformed_buckets_are_rejected(bounds: np.ndarray, counts: np.ndarray) -> None:
    with pytest.raises(ValueError):
        quantile(0.5, bounds, counts)
    with pytest.raises(ValueError):
        exceedance(0.5, bounds, counts)
    with pytest.raises(ValueError):
        quantile_bucket_bound(0.5, bounds, counts)
    with pytest.raises(ValueError):
        comparison_bucket_bound(0.5, bounds, counts)


@pytest.mark.parametrize("q", [-0.1, 1.1])
def test_quantile_outside_unit_interval_is_rejected(q: float) -> None:
    with pytest.raises(ValueError):
        quantile(q, BOUNDS, COUNTS)


# --- exceedance ----------------------------------------------------------------------------------


def test_exceedance_at_a_bucket_bound_is_exact() -> None:
    e = exceedance(0.5, BOUNDS, COUNTS)
    assert e.exact
    assert e.certain == e.possible == 40.0  # the 1.0 and +Inf buckets
    assert e.total == 100.0


def test_exceedance_between_bounds_is_bracketed_by_the_neighbouring_bounds() -> None:
    e = exceedance(0.3, BOUNDS, COUNTS)  # inside (0.25, 0.5]
    assert not e.exact
    assert e.certain == 40.0  # above 0.5: certainly slower than 0.3
    assert e.possible == 70.0  # above 0.25: possibly slower than 0.3
    assert e.certain <= e.possible


@pytest.mark.parametrize(
    ("threshold", "certain", "possible", "exact"),
    [
        (0.05, 90.0, 100.0, False),  # below the first bound
        (0.1, 90.0, 90.0, True),
        (2.0, 0.0, 10.0, False),  # above the highest finite bound: only the +Inf bucket
        (INF, 0.0, 0.0, True),
    ],
)
def test_exceedance_at_the_edges(
    threshold: float, certain: float, possible: float, exact: bool
) -> None:
    e = exceedance(threshold, BOUNDS, COUNTS)
    assert (e.certain, e.possible, e.exact) == (certain, possible, exact)


def test_exceedance_brackets_the_true_count_of_slow_requests() -> None:
    rng = np.random.default_rng(5)
    latencies = rng.lognormal(np.log(0.1), 0.8, size=50_000)
    counts = np.histogram(latencies, bins=np.concatenate([[0.0], ISTIO_BOUNDS]))[0].astype(float)
    for threshold in (0.003, 0.02, 0.1, 0.3, 0.5, 0.7, 1.0, 4.0, 50.0):
        e = exceedance(threshold, ISTIO_BOUNDS, counts)
        slow = float(np.sum(latencies > threshold))
        assert e.certain <= slow <= e.possible
        assert e.exact == (threshold in ISTIO_BOUNDS)
        if e.exact:
            assert e.certain == slow


def test_exceedance_of_an_empty_histogram_is_zero() -> None:
    e = exceedance(0.5, BOUNDS, np.zeros(5))
    assert (e.certain, e.possible, e.total) == (0.0, 0.0, 0.0)


# --- quantile_bucket_bound ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.05, 0.1), (0.1, 0.1), (0.3, 0.25), (0.31, 0.5), (0.5, 0.5), (0.9, 1.0), (0.95, INF)],
)
def test_quantile_bucket_bound_is_the_smallest_bound_holding_a_fraction_q(
    q: float, expected: float
) -> None:
    assert quantile_bucket_bound(q, BOUNDS, COUNTS) == expected


def test_quantile_bucket_bound_is_a_comparable_threshold() -> None:
    rng = np.random.default_rng(6)
    counts = np.histogram(
        rng.lognormal(np.log(0.1), 0.6, size=20_000), bins=np.concatenate([[0.0], ISTIO_BOUNDS])
    )[0].astype(float)
    bound = quantile_bucket_bound(0.99, ISTIO_BOUNDS, counts)
    assert bound == 0.5  # the p99 (about 0.40 s) rounded up to a bucket bound
    assert bound >= quantile(0.99, ISTIO_BOUNDS, counts)
    e = exceedance(bound, ISTIO_BOUNDS, counts)
    assert e.exact
    assert e.certain <= 0.01 * e.total
    # the next lower bound holds less than 99 % of requests
    below = exceedance(0.25, ISTIO_BOUNDS, counts)
    assert below.certain > 0.01 * below.total


def test_quantile_bucket_bound_of_an_empty_histogram_is_nan() -> None:
    assert math.isnan(quantile_bucket_bound(0.99, BOUNDS, np.zeros(5)))


def test_exceedance_above_a_nan_threshold_is_rejected() -> None:
    # e.g. the p99 bucket bound of an empty baseline histogram; "0 requests slower" would be a lie
    threshold = quantile_bucket_bound(0.99, BOUNDS, np.zeros(5))
    with pytest.raises(ValueError):
        exceedance(threshold, BOUNDS, COUNTS)


# --- comparison_bucket_bound (the latency comparison's threshold) --------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    # share above each bound: 0.1 -> 90 %, 0.25 -> 70 %, 0.5 -> 40 %, 1.0 -> 10 %
    [(0.05, 0.1), (0.1, 0.1), (0.3, 0.25), (0.5, 0.25), (0.6, 0.5), (0.9, 1.0), (0.95, 1.0)],
)
def test_comparison_bucket_bound_is_the_largest_bound_with_a_share_1_minus_q_above(
    q: float, expected: float
) -> None:
    assert comparison_bucket_bound(q, BOUNDS, COUNTS) == expected


def test_comparison_bucket_bound_keeps_at_least_the_nominal_share_above_it() -> None:
    rng = np.random.default_rng(6)
    counts = np.histogram(
        rng.lognormal(np.log(0.1), 0.6, size=20_000), bins=np.concatenate([[0.0], ISTIO_BOUNDS])
    )[0].astype(float)
    bound = comparison_bucket_bound(0.99, ISTIO_BOUNDS, counts)
    assert bound == 0.25  # the p99 (about 0.40 s) rounded down to a bucket bound
    assert bound <= quantile(0.99, ISTIO_BOUNDS, counts)
    e = exceedance(bound, ISTIO_BOUNDS, counts)
    assert e.exact and e.certain >= 0.01 * e.total
    # the next bound up has less than 1 % above it
    assert exceedance(0.5, ISTIO_BOUNDS, counts).certain < 0.01 * e.total


def test_comparison_bucket_bound_of_an_empty_histogram_is_nan() -> None:
    assert math.isnan(comparison_bucket_bound(0.99, BOUNDS, np.zeros(5)))


def test_comparison_bound_index_row_by_row_equals_the_scalar_function() -> None:
    rng = np.random.default_rng(12)
    counts = rng.poisson(
        rng.choice([0.5, 5.0, 500.0], size=(300, 1)), size=(300, len(ISTIO_BOUNDS))
    )
    counts = counts[counts.sum(axis=1) > 0].astype(float)
    for q in (0.5, 0.9, 0.99):
        index = comparison_bound_index(np.cumsum(counts, axis=1), q)
        for row, k in zip(counts, index, strict=True):
            assert ISTIO_BOUNDS[k] == comparison_bucket_bound(q, ISTIO_BOUNDS, row)

"""Vectorised metric outcomes at every look of a window (one numpy pass per check).

The same rules as `analyzer.checks` (which builds the readable report for one look), computed for
all looks at once on cumulative counts. Used to find the first look at which a metric failed, and
by the benchmarks to replay thousands of canaries.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from analyzer.spec import MetricSpec
from analyzer.stats import rate_bounds
from analyzer.stats.histogram import comparison_bound_index
from analyzer.verdicts import MetricStatus
from metrics.source import HistogramSeries, RatioSeries, Series

# Status codes per look.
INCONCLUSIVE, PASS, FAIL, NO_DATA = 0, 1, 2, 3
CODES_TO_STATUS = {
    INCONCLUSIVE: MetricStatus.INCONCLUSIVE,
    PASS: MetricStatus.PASS,
    FAIL: MetricStatus.FAIL,
    NO_DATA: MetricStatus.NO_DATA,
}
IntArray = npt.NDArray[np.int8]
FloatArray = npt.NDArray[np.float64]


def _gate(lower: FloatArray, upper: FloatArray, bound: float) -> IntArray:
    return np.where(lower > bound, FAIL, np.where(upper <= bound, PASS, INCONCLUSIVE)).astype(
        np.int8
    )


def _compare(
    c_bad: FloatArray,
    c_total: FloatArray,
    b_bad: FloatArray,
    b_total: FloatArray,
    tolerance: float,
    margin: float,
    alpha: float,
) -> IntArray:
    c = rate_bounds(c_bad, c_total, alpha / 2)
    b = rate_bounds(b_bad, b_total, alpha / 2)
    factor = 1.0 + tolerance
    fail = c.lower > b.upper * factor + margin
    ok = c.upper <= b.lower * factor + margin
    out = np.where(fail, FAIL, np.where(ok, PASS, INCONCLUSIVE)).astype(np.int8)
    return np.where(b_total > 0, out, INCONCLUSIVE).astype(np.int8)


def _combine(outcomes: list[IntArray], canary_total: FloatArray) -> IntArray:
    stacked = np.vstack(outcomes)
    status = np.where(
        (stacked == FAIL).any(axis=0),
        FAIL,
        np.where((stacked == PASS).all(axis=0), PASS, INCONCLUSIVE),
    )
    return np.where(canary_total > 0, status, NO_DATA).astype(np.int8)


def alpha_per_check(spec: MetricSpec, alpha: float) -> float:
    """A metric's budget split equally between its checks (SLO gate, comparison)."""
    return alpha / max((spec.slo is not None) + (spec.compare is not None), 1)


def look_statuses(
    spec: MetricSpec, canary: Series, baseline: Series | None, alpha: float
) -> IntArray | None:
    """Status code of the metric at every look (cumulative counts after interval 1, 2, ...).

    Returns None for the fixed-horizon Mann-Whitney mode, which is not vectorised.
    """
    if spec.test == "mann-whitney" and spec.compare is not None:
        return None
    check_alpha = alpha_per_check(spec, alpha)
    if isinstance(canary, RatioSeries):
        assert baseline is None or isinstance(baseline, RatioSeries)
        return _ratio(spec, canary, baseline, check_alpha)
    assert isinstance(canary, HistogramSeries)
    assert baseline is None or isinstance(baseline, HistogramSeries)
    return _latency(spec, canary, baseline, check_alpha)


def _ratio(
    spec: MetricSpec, canary: RatioSeries, baseline: RatioSeries | None, alpha: float
) -> IntArray:
    c_bad, c_total = np.cumsum(canary.bad), np.cumsum(canary.total)
    outcomes: list[IntArray] = []
    max_bad = spec.max_bad_rate()
    if max_bad is not None:
        b = rate_bounds(c_bad, c_total, alpha)
        outcomes.append(_gate(b.lower, b.upper, max_bad))
    if spec.compare is not None:
        if baseline is None:
            outcomes.append(np.full(c_total.shape, INCONCLUSIVE, dtype=np.int8))
        else:
            outcomes.append(
                _compare(
                    c_bad,
                    c_total,
                    np.cumsum(baseline.bad),
                    np.cumsum(baseline.total),
                    spec.compare.tolerance,
                    spec.compare.margin,
                    alpha,
                )
            )
    return _combine(outcomes, c_total)


def _latency(
    spec: MetricSpec, canary: HistogramSeries, baseline: HistogramSeries | None, alpha: float
) -> IntArray:
    q = spec.effective_quantile
    c_cum = np.cumsum(
        np.cumsum(canary.counts, axis=0), axis=1
    )  # (looks, buckets), cumulative both ways
    c_total = c_cum[:, -1]
    bounds = canary.bounds
    outcomes: list[IntArray] = []
    threshold = spec.latency_threshold()
    if threshold is not None:
        k_hi = int(np.searchsorted(bounds, threshold, side="left"))
        exact = k_hi < len(bounds) and bounds[k_hi] == threshold
        certain = c_total - c_cum[:, k_hi] if k_hi < len(bounds) else np.zeros_like(c_total)
        if exact:
            possible = certain
        else:
            possible = c_total - (c_cum[:, k_hi - 1] if k_hi >= 1 else 0.0)
        lower = rate_bounds(np.maximum(certain, 0), c_total, alpha).lower
        upper = rate_bounds(np.maximum(possible, 0), c_total, alpha).upper
        outcomes.append(_gate(lower, upper, 1.0 - q))
    if spec.compare is not None:
        if baseline is None:
            outcomes.append(np.full(c_total.shape, INCONCLUSIVE, dtype=np.int8))
        else:
            b_cum = np.cumsum(np.cumsum(baseline.counts, axis=0), axis=1)
            b_total = b_cum[:, -1]
            k = comparison_bound_index(b_cum, q)
            finite = np.isfinite(bounds[k]) & (b_total > 0)
            c_slow = c_total - np.take_along_axis(c_cum, k[:, None], axis=1)[:, 0]
            b_slow = b_total - np.take_along_axis(b_cum, k[:, None], axis=1)[:, 0]
            out = _compare(
                np.maximum(c_slow, 0),
                c_total,
                np.maximum(b_slow, 0),
                b_total,
                spec.compare.tolerance,
                spec.compare.margin,
                alpha,
            )
            outcomes.append(np.where(finite, out, INCONCLUSIVE).astype(np.int8))
    return _combine(outcomes, c_total)

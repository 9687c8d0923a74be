"""Latency from Prometheus histogram buckets: quantile estimates and exceedance counts.

Buckets are cumulative `le` counters in Prometheus; here they arrive already differenced into
per-bucket counts (`counts[k]` requests in (bounds[k-1], bounds[k]], bounds[-1] = +Inf).

* `quantile` reproduces Prometheus' `histogram_quantile` (prometheus/promql/quantile.go, documented at
  prometheus.io "Histograms and summaries"): linear interpolation inside the bucket that holds the
  rank q * total, lower edge 0 for the first bucket, and the highest finite bound when the rank
  falls in the +Inf bucket. It is an estimate for display: accurate only to the bucket width.

* An SLO such as `p99 < 500ms` is the statement "at most 1 % of requests are slower than 500 ms",
  which is a rate and is tested with the same confidence sequences as error rates
  (reference/statistics.md §5, "exceedance count"). When the threshold T lies strictly between two
  bucket bounds b_{k-1} < T < b_k, the count above T is only known to lie between the count above
  b_k (certainly slower than T) and the count above b_{k-1} (possibly slower). To stay conservative
  both ways, a failure is judged on the certain count and a pass on the possible count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Exceedance:
    """Requests above a latency threshold, bounded from both sides by bucket edges."""

    certain: float  # requests above the first bucket bound >= threshold
    possible: float  # requests above the last bucket bound < threshold
    total: float
    exact: bool  # the threshold is a bucket bound: certain == possible


def _check(bounds: FloatArray, counts: FloatArray) -> None:
    if bounds.ndim != 1 or counts.shape[-1] != bounds.shape[0]:
        raise ValueError("counts must have one entry per bucket bound")
    if np.any(np.diff(bounds) <= 0):
        raise ValueError("bucket bounds must be strictly increasing")
    if not np.isposinf(bounds[-1]):
        raise ValueError("the last bucket bound must be +Inf")


def _buckets(bounds: FloatArray, counts: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Checked float bounds, counts clipped at 0 (extrapolation noise), and cumulative counts."""
    bounds = np.asarray(bounds, dtype=np.float64)
    counts = np.clip(np.asarray(counts, dtype=np.float64), 0.0, None)
    _check(bounds, counts)
    return bounds, counts, np.cumsum(counts)


def quantile(q: float, bounds: FloatArray, counts: FloatArray) -> float:
    """Prometheus-style quantile estimate from per-bucket counts; NaN when there are no requests."""
    if not 0.0 <= q <= 1.0:
        raise ValueError("quantile must lie in [0, 1]")
    bounds, counts, cumulative = _buckets(bounds, counts)
    total = float(cumulative[-1])
    if total <= 0:
        return float("nan")
    rank = q * total
    k = int(np.searchsorted(cumulative, rank, side="left"))
    k = min(k, len(bounds) - 1)
    if k == len(bounds) - 1:
        return float(bounds[-2]) if len(bounds) > 1 else float("nan")
    upper = float(bounds[k])
    lower = 0.0 if k == 0 else float(bounds[k - 1])
    if k == 0 and upper <= 0:
        return upper
    below = 0.0 if k == 0 else float(cumulative[k - 1])
    in_bucket = float(counts[k])
    if in_bucket <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / in_bucket


def exceedance(threshold: float, bounds: FloatArray, counts: FloatArray) -> Exceedance:
    """Requests slower than `threshold` (seconds), conservatively bracketed by bucket bounds."""
    if np.isnan(threshold):
        # searchsorted puts NaN past +Inf, which would report "no request is slower".
        raise ValueError("threshold must be a number (NaN: e.g. a quantile of an empty histogram)")
    bounds, counts, cumulative = _buckets(bounds, counts)
    total = float(cumulative[-1])
    # index of the first bound >= threshold: requests above it are certainly slower
    k_hi = int(np.searchsorted(bounds, threshold, side="left"))
    exact = bool(k_hi < len(bounds) and bounds[k_hi] == threshold)
    certain = total - float(cumulative[k_hi]) if k_hi < len(bounds) else 0.0
    possible = certain if exact else total - (float(cumulative[k_hi - 1]) if k_hi >= 1 else 0.0)
    return Exceedance(
        certain=max(certain, 0.0), possible=max(possible, 0.0), total=total, exact=exact
    )


def quantile_bucket_bound(q: float, bounds: FloatArray, counts: FloatArray) -> float:
    """The smallest bucket bound with at least a fraction q of requests at or below it.

    The q-quantile rounded up to a bucket bound (exceedance counts above it are exact); +Inf when
    the quantile lies in the last bucket. The latency comparison rounds down instead
    (`comparison_bucket_bound`), where more requests lie above the threshold.
    """
    bounds, counts, cumulative = _buckets(bounds, counts)
    total = float(cumulative[-1])
    if total <= 0:
        return float("nan")
    k = int(np.searchsorted(cumulative, q * total - 1e-9 * total, side="left"))
    return float(bounds[min(k, len(bounds) - 1)])


def comparison_bucket_bound(q: float, bounds: FloatArray, counts: FloatArray) -> float:
    """The latency threshold of a comparison: the baseline's q-quantile rounded *down* to a bound.

    The largest finite bucket bound with at least a fraction 1 - q of the requests above it (the
    first bound when even it has less). Rounding down rather than up keeps at least the nominal
    share of slow requests above the threshold: with Prometheus' coarse buckets the bound above a
    p99 often has a hundred times fewer requests above it, too few for any test to see a shift.
    Exceedance counts above a bucket bound are exact for both versions. NaN without requests.
    """
    bounds, counts, cumulative = _buckets(bounds, counts)
    total = float(cumulative[-1])
    if total <= 0:
        return float("nan")
    return float(bounds[comparison_bound_index(cumulative[None, :], q)[0]])


def comparison_bound_index(cumulative: FloatArray, q: float) -> npt.NDArray[np.intp]:
    """Row-wise index of `comparison_bucket_bound` for cumulative bucket counts (rows, buckets)."""
    total = cumulative[:, -1:]
    finite = cumulative[:, :-1]  # the +Inf bound never qualifies: nothing is above it
    qualifies = total - finite >= (1.0 - q) * total * (1.0 - 1e-12)
    last = qualifies.shape[1] - 1 - np.argmax(qualifies[:, ::-1], axis=1)
    return np.asarray(np.where(qualifies.any(axis=1), last, 0), dtype=np.intp)

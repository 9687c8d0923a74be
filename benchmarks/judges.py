"""The judges compared by the accuracy benchmark, each replaying one canary's looks.

Every judge answers, per run, a decision (promoted, aborted, paused) and the 1-based look it was
taken at. Looks are 30 s intervals on the timeline of `benchmarks.simulate`.

* `verdict_decisions`: Verdict's engine. Per-look metric statuses come from
  `analyzer.looks` (the engine's one implementation of the rules, run on every run of a batch at
  once, failures sticky); `replay_steps` then applies the step rules of
  `analyzer.canary.run_canary` (any failure aborts at once, promotion from the end of the last
  analysed step on only on a pass, else paused at the horizon).
  `tests/test_benchmark_replay.py` checks it against `run_canary` itself.
* `threshold_decisions`: fixed thresholds as Argo Rollouts and Flagger users write them, judged on
  each interval's own data: error rate < 1 %, p99 < 500 ms; an empty interval fails the check.
* `kayenta_decisions`: Kayenta's Mann-Whitney classifier on one-minute points, re-judged every
  look on all minutes so far.
* `naive_z_decisions`: a one-sided two-proportion z-test on cumulative counts at every look.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from analyzer.budget import metric_alphas
from analyzer.looks import FAIL, PASS, latency_looks, metric_looks, ratio_looks
from analyzer.spec import AnalysisSpec
from benchmarks.simulate import (
    ANALYSED_LOOKS,
    BOUNDS,
    Batch,
)
from metrics.source import MetricKind, Series

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Decision(enum.IntEnum):
    PROMOTED = 0
    ABORTED = 1
    PAUSED = 2


@dataclass(frozen=True)
class Decisions:
    """One decision and its 1-based look per run."""

    decision: IntArray
    look: IntArray




# --- Verdict -------------------------------------------------------------------------------


def metric_codes(
    spec: AnalysisSpec,
    series: dict[str, tuple[Series | None, Series | None]],
    prerun: dict[str, Series | None] | None = None,
) -> npt.NDArray[np.int8]:
    """Status code of every metric at every look, shape (metrics, looks), as the engine sees it
    (the analysis' alpha split by `analyzer.budget.metric_alphas`, as `judge_observations` does)."""
    prerun = prerun or {}
    rows = []
    for metric, alpha in zip(spec.metrics, metric_alphas(spec.metrics, spec.alpha), strict=True):
        canary, baseline = series[metric.name]
        if canary is None:
            raise ValueError(f"{metric.name}: the benchmark always has canary data")
        if metric.test != "sequential":
            raise ValueError(f"{metric.name}: the Mann-Whitney mode is not replayed here")
        looks = metric_looks(
            metric, canary, baseline, prerun.get(metric.name), alpha=alpha, beta=spec.beta
        )
        rows.append(looks.codes)
    return np.vstack(rows)


def batch_codes(spec: AnalysisSpec, batch: Batch) -> npt.NDArray[np.int8]:
    """`metric_codes` for every run of a batch at once: shape (metrics, runs, looks).

    The pre-run window is the batch's own (`baseline_pre_*`) when it carries one, else none."""
    pre_total = getattr(batch, "baseline_pre_total", None)
    pre_bad = getattr(batch, "baseline_pre_bad", None)
    pre_buckets = getattr(batch, "baseline_pre_buckets", None)
    rows = []
    for metric, alpha in zip(spec.metrics, metric_alphas(spec.metrics, spec.alpha), strict=True):
        if metric.kind is MetricKind.RATIO:
            looks = ratio_looks(
                metric,
                batch.canary_bad,
                batch.canary_total,
                batch.baseline_bad,
                batch.baseline_total,
                pre_bad,
                pre_total,
                alpha=alpha,
                beta=spec.beta,
            )
        else:
            looks = latency_looks(
                metric,
                BOUNDS,
                batch.canary_buckets,
                batch.baseline_buckets,
                pre_buckets,
                alpha=alpha,
                beta=spec.beta,
            )
        rows.append(looks.codes)
    return np.stack(rows)


def replay_steps(
    codes: npt.NDArray[np.int8],
    spec: AnalysisSpec,
    *,
    analysed_looks: int = ANALYSED_LOOKS,
) -> Decisions:
    """The step rules of `analyzer.canary.run_canary` on per-look metric codes (metrics, runs,
    looks) in the `all` scoring mode: any failure aborts at once; from the end of the last
    analysed step on, the first look at which every metric passes promotes; otherwise paused at
    the horizon (the last look given)."""
    if spec.scoring.mode != "all":
        raise ValueError("the replay covers the default `all` scoring mode")
    failed = (codes == FAIL).any(axis=0)  # (runs, looks); metric failures are already sticky
    passed = (codes == PASS).all(axis=0)
    passed[:, : analysed_looks - 1] = False
    any_fail, first_fail = _first_true(failed)
    any_pass, first_pass = _first_true(passed)
    horizon = codes.shape[-1]
    aborted = any_fail & (~any_pass | (first_fail <= first_pass))
    promoted = any_pass & ~aborted
    decision = np.where(
        aborted, int(Decision.ABORTED), np.where(promoted, int(Decision.PROMOTED), int(Decision.PAUSED))
    ).astype(np.int64)
    look = np.where(aborted, first_fail, np.where(promoted, first_pass, horizon)).astype(np.int64)
    return Decisions(decision, look)


def verdict_decisions(spec: AnalysisSpec, batch: Batch) -> Decisions:
    """Verdict's decision for every run of the batch (the engine's vectorised path, all runs at once)."""
    return replay_steps(batch_codes(spec, batch), spec)


# --- shared helpers --------------------------------------------------------------------------


def _first_true(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.bool_], IntArray]:
    """Per row: whether any entry is true, and the 1-based index of the first one."""
    any_true = np.asarray(mask.any(axis=1), dtype=np.bool_)
    return any_true, np.where(any_true, mask.argmax(axis=1) + 1, 0).astype(np.int64)


def _abort_or_promote(mask: npt.NDArray[np.bool_]) -> Decisions:
    """Abort at the first true look, else promote at the end of the last analysed step."""
    aborted, first = _first_true(mask[:, :ANALYSED_LOOKS])
    decision = np.where(aborted, int(Decision.ABORTED), int(Decision.PROMOTED)).astype(np.int64)
    return Decisions(decision, np.where(aborted, first, ANALYSED_LOOKS).astype(np.int64))


def histogram_quantiles(q: float, counts: FloatArray) -> FloatArray:
    """Prometheus' histogram_quantile over the last axis (as `analyzer.stats.quantile`);
    NaN where there are no requests."""
    counts = np.clip(counts, 0.0, None)
    cumulative = np.cumsum(counts, axis=-1)
    total = cumulative[..., -1]
    rank = q * total
    k = np.minimum((cumulative < rank[..., None]).sum(axis=-1), len(BOUNDS) - 1)
    upper = BOUNDS[k]
    lower = np.where(k == 0, 0.0, BOUNDS[np.maximum(k - 1, 0)])
    below = np.where(
        k == 0, 0.0, np.take_along_axis(cumulative, np.maximum(k - 1, 0)[..., None], axis=-1)[..., 0]
    )
    in_bucket = np.take_along_axis(counts, k[..., None], axis=-1)[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = lower + (upper - lower) * (rank - below) / in_bucket
    value = np.where(in_bucket > 0, inside, upper)
    value = np.where(k == len(BOUNDS) - 1, BOUNDS[-2], value)
    return np.asarray(np.where(total > 0, value, np.nan), dtype=np.float64)


# --- fixed thresholds (Argo Rollouts / Flagger) ----------------------------------------------

ERROR_THRESHOLD = 0.01
P99_THRESHOLD = 0.5
FLAGGER_THRESHOLD = 5


def threshold_failures(batch: Batch, *, flagger: bool) -> npt.NDArray[np.bool_]:
    """Failed checks per look, on that interval's canary data only.

    Argo Rollouts' `successCondition: result[0] < 0.01` (and `< 0.5` s for p99) fails at or above
    the threshold; Flagger's `thresholdRange` fails strictly outside it (success rate < 99 %,
    p99 > 500 ms). An interval without canary requests fails (NaN result / no values found).
    """
    total = batch.canary_total
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(total > 0, batch.canary_bad / np.where(total > 0, total, 1.0), np.nan)
    p99 = histogram_quantiles(0.99, batch.canary_buckets)
    empty = total <= 0
    if flagger:
        bad = (rate > ERROR_THRESHOLD) | (p99 > P99_THRESHOLD)
    else:
        bad = (rate >= ERROR_THRESHOLD) | (p99 >= P99_THRESHOLD)
    return np.asarray(empty | bad, dtype=np.bool_)


def threshold_decisions(batch: Batch, *, flagger: bool = False) -> Decisions:
    """Argo Rollouts (failureLimit 0: abort on the first failed measurement) or Flagger
    (abort when `FLAGGER_THRESHOLD` failed checks have accumulated)."""
    failed = threshold_failures(batch, flagger=flagger)
    if flagger:
        return _abort_or_promote(np.cumsum(failed, axis=1) >= FLAGGER_THRESHOLD)
    return _abort_or_promote(failed)


# --- Kayenta-style Mann-Whitney --------------------------------------------------------------

KAYENTA_CONFIDENCE = 0.98
KAYENTA_TOLERANCE = 0.25
KAYENTA_MIN_VALUES = 3
KAYENTA_FAIL, KAYENTA_PASS, KAYENTA_INCONCLUSIVE = 2, 1, 0


def _tie_sum(values: FloatArray) -> FloatArray:
    """Σ (t³ − t) over groups of equal non-NaN values, per row: Σ_i (t_i² − 1) over elements."""
    equal = values[:, :, None] == values[:, None, :]
    t = equal.sum(axis=2).astype(np.float64)
    return np.asarray(np.where(np.isnan(values), 0.0, t**2 - 1.0).sum(axis=1), dtype=np.float64)


def kayenta_outcomes(canary: FloatArray, baseline: FloatArray) -> npt.NDArray[np.int8]:
    """`analyzer.stats.mann_whitney_compare(direction="increase")` for every row at once.

    `canary` (runs, n) and `baseline` (runs, m) hold per-interval values, NaN where missing.
    Returns KAYENTA_FAIL ("High"), KAYENTA_PASS or KAYENTA_INCONCLUSIVE per row.
    """
    x, y = canary, baseline
    n = (~np.isnan(x)).sum(axis=1)
    m = (~np.isnan(y)).sum(axis=1)
    nm = n * m
    both = np.concatenate([x, y], axis=1)
    with np.errstate(invalid="ignore"):
        single = np.nanmax(both, axis=1, initial=-np.inf) == np.nanmin(both, axis=1, initial=np.inf)
    diffs = np.sort((x[:, :, None] - y[:, None, :]).reshape(x.shape[0], -1), axis=1)
    big_n = (n + m).astype(np.float64)
    ties = _tie_sum(x) + _tie_sum(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = nm / 12.0 * ((big_n + 1) - ties / (big_n * (big_n - 1)))
    z = float(norm.ppf(0.5 + KAYENTA_CONFIDENCE / 2.0))
    c = np.floor(nm / 2.0 - z * np.sqrt(np.maximum(np.nan_to_num(variance), 0.0)) + 0.5)
    c = np.minimum(np.maximum(c, 1), (nm + 1) // 2).astype(np.int64)
    safe = np.maximum(nm, 1)
    lo = np.take_along_axis(diffs, np.clip(c - 1, 0, None)[:, None], axis=1)[:, 0]
    mid_hi = np.take_along_axis(diffs, (safe // 2)[:, None], axis=1)[:, 0]
    mid_lo = np.take_along_axis(diffs, np.clip((safe - 1) // 2, 0, None)[:, None], axis=1)[:, 0]
    hl = np.where(safe % 2 == 1, mid_hi, (mid_lo + mid_hi) / 2.0)
    xs, ys = np.sort(x, axis=1), np.sort(y, axis=1)
    if x.shape[1] == y.shape[1]:  # NaNs sort last, so equal counts put them in the same places
        same = (xs == ys) | (np.isnan(xs) & np.isnan(ys))
        identical = (n == m) & same.all(axis=1)
    else:
        identical = np.zeros(x.shape[0], dtype=np.bool_)
    high = lo > KAYENTA_TOLERANCE * np.abs(hl)
    out = np.where(high, KAYENTA_FAIL, KAYENTA_PASS)
    out = np.where(single | identical, KAYENTA_PASS, out)
    out = np.where((n < KAYENTA_MIN_VALUES) | (m < KAYENTA_MIN_VALUES), KAYENTA_INCONCLUSIVE, out)
    return np.asarray(out, dtype=np.int8)


def minute_points(batch: Batch) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """One-minute points over the analysed looks: error rate and p99 per minute, both versions
    (NaN for a minute without requests, removed as Kayenta's default NaN strategy does)."""

    def per_minute(a: FloatArray) -> FloatArray:
        a = a[:, :ANALYSED_LOOKS]
        return np.asarray(a.reshape(a.shape[0], -1, 2, *a.shape[2:]).sum(axis=2), dtype=np.float64)

    def rate(bad: FloatArray, total: FloatArray) -> FloatArray:
        b, t = per_minute(bad), per_minute(total)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.where(t > 0, b / np.where(t > 0, t, 1.0), np.nan), dtype=np.float64)

    return (
        rate(batch.canary_bad, batch.canary_total),
        rate(batch.baseline_bad, batch.baseline_total),
        histogram_quantiles(0.99, per_minute(batch.canary_buckets)),
        histogram_quantiles(0.99, per_minute(batch.baseline_buckets)),
    )


def kayenta_decisions(batch: Batch) -> Decisions:
    """Judge error rate and p99 at every minute on all minutes so far; abort as soon as one
    metric is High (one of two equal-weight metrics failing scores 50, under Spinnaker's default
    marginal threshold 75), else promote at the end of the last analysed step."""
    c_rate, b_rate, c_p99, b_p99 = minute_points(batch)
    minutes = c_rate.shape[1]
    high = np.zeros((batch.runs, ANALYSED_LOOKS), dtype=np.bool_)
    for j in range(KAYENTA_MIN_VALUES, minutes + 1):
        error = kayenta_outcomes(c_rate[:, :j], b_rate[:, :j]) == KAYENTA_FAIL
        latency = kayenta_outcomes(c_p99[:, :j], b_p99[:, :j]) == KAYENTA_FAIL
        high[:, 2 * j - 1] = error | latency  # the look that completes minute j
    return _abort_or_promote(high)


# --- naive per-look z-test -------------------------------------------------------------------

Z_CRITICAL = float(norm.ppf(0.95))


def _z(c_bad: FloatArray, c_total: FloatArray, b_bad: FloatArray, b_total: FloatArray) -> FloatArray:
    """Pooled one-sided two-proportion z (canary worse > 0); 0 where undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (c_bad + b_bad) / (c_total + b_total)
        se = np.sqrt(pooled * (1 - pooled) * (1 / c_total + 1 / b_total))
        z = (c_bad / c_total - b_bad / b_total) / se
    return np.asarray(np.where(np.isfinite(z), z, 0.0), dtype=np.float64)


def naive_z_decisions(batch: Batch, q: float = 0.99) -> Decisions:
    """z > 1.645 on cumulative errors, or on cumulative requests slower than the baseline's p99
    rounded up to a bucket bound, at any look."""
    cum = {
        name: np.cumsum(getattr(batch, name), axis=1)
        for name in ("canary_bad", "canary_total", "baseline_bad", "baseline_total")
    }
    z_err = _z(cum["canary_bad"], cum["canary_total"], cum["baseline_bad"], cum["baseline_total"])
    c_cum = np.cumsum(np.cumsum(batch.canary_buckets, axis=1), axis=2)
    b_cum = np.cumsum(np.cumsum(batch.baseline_buckets, axis=1), axis=2)
    c_total, b_total = c_cum[..., -1], b_cum[..., -1]
    k = np.minimum((b_cum < (q * b_total - 1e-9 * b_total)[..., None]).sum(axis=2), len(BOUNDS) - 1)
    c_slow = c_total - np.take_along_axis(c_cum, k[..., None], axis=2)[..., 0]
    b_slow = b_total - np.take_along_axis(b_cum, k[..., None], axis=2)[..., 0]
    z_lat = np.where(np.isfinite(BOUNDS[k]), _z(c_slow, c_total, b_slow, b_total), 0.0)
    return _abort_or_promote((z_err > Z_CRITICAL) | (z_lat > Z_CRITICAL))


JUDGES: tuple[str, ...] = ("verdict", "argo-threshold", "flagger-threshold", "kayenta", "naive-z")


def all_decisions(spec: AnalysisSpec, batch: Batch) -> dict[str, Decisions]:
    return {
        "verdict": verdict_decisions(spec, batch),
        "argo-threshold": threshold_decisions(batch, flagger=False),
        "flagger-threshold": threshold_decisions(batch, flagger=True),
        "kayenta": kayenta_decisions(batch),
        "naive-z": naive_z_decisions(batch),
    }

"""The judges compared by the accuracy benchmark, each replaying one canary's looks.

Every judge answers, per run, a decision (promoted, aborted, paused) and the 1-based look it was
taken at. Looks are 30 s intervals on the timeline of `benchmarks.simulate`.

* `verdict_decisions`: Verdict's engine. Per-look metric statuses come from
  `analyzer.looks` (the engine's one implementation of the rules, run on every run of a batch at
  once, failures sticky); `replay_steps` then applies the step rules of
  the canary loop, `strategies.canary.CanaryRollout` (any failure aborts at once, promotion from the end of the last
  analysed step on only on a pass, else paused at the horizon).
  `tests/test_benchmark_replay.py` checks it against that loop itself.
* `threshold_decisions`: fixed thresholds as Argo Rollouts and Flagger users write them (error
  rate < 1 %, p99 < 500 ms on the canary's data over the query's window; an empty window fails),
  measured on the schedule of a `ThresholdRule`: `ARGO` / `FLAGGER` as their documentation
  configures them (the page is cited beside each), `ARGO_TIGHT` / `FLAGGER_TIGHT` the previous
  benchmark's 30 s settings.
* `kayenta_decisions`: Kayenta's Mann-Whitney classifier on a growing window of points, judged on
  the schedule of a `KayentaSchedule`: `KAYENTA` a few times on ≥ 50 points, `KAYENTA_TIGHT`
  every minute on one-minute points (the previous setting).
* `naive_z_decisions`: a one-sided two-proportion z-test on cumulative counts at every look.

Every judge sees the same timeline up to `HORIZON`; a peer that never fails promotes when its
analysis completes, at the end of the horizon.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from analyzer.looks import FAIL, PASS, latency_looks, metric_looks, ratio_looks
from analyzer.spec import AnalysisSpec, plan_analysis
from benchmarks.simulate import (
    ANALYSED_LOOKS,
    BOUNDS,
    HORIZON,
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
    for metric in plan_analysis(spec).metrics:
        canary, baseline = series[metric.name]
        if canary is None:
            raise ValueError(f"{metric.name}: the benchmark always has canary data")
        if metric.test != "sequential":
            raise ValueError(f"{metric.name}: the Mann-Whitney mode is not replayed here")
        looks = metric_looks(
            metric, canary, baseline, prerun.get(metric.name), alpha=metric.alpha, beta=metric.beta
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
    for metric in plan_analysis(spec).metrics:
        if metric.kind is MetricKind.RATIO:
            looks = ratio_looks(
                metric,
                batch.canary_bad,
                batch.canary_total,
                batch.baseline_bad,
                batch.baseline_total,
                pre_bad,
                pre_total,
                alpha=metric.alpha,
                beta=metric.beta,
            )
        else:
            looks = latency_looks(
                metric,
                BOUNDS,
                batch.canary_buckets,
                batch.baseline_buckets,
                pre_buckets,
                alpha=metric.alpha,
                beta=metric.beta,
            )
        rows.append(looks.codes)
    return np.stack(rows)


def replay_steps(
    codes: npt.NDArray[np.int8],
    spec: AnalysisSpec,
    *,
    analysed_looks: int = ANALYSED_LOOKS,
) -> Decisions:
    """The step rules of the canary loop (`strategies.canary.CanaryRollout` with `extra_looks`) on per-look metric codes (metrics, runs,
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
    look = np.where(aborted, first_fail + 1, np.where(promoted, first_pass + 1, horizon)).astype(np.int64)
    return Decisions(decision, look)


def comparisons_only(spec: AnalysisSpec) -> AnalysisSpec:
    """The analysis with its SLO gates removed: only the canary-vs-baseline comparisons."""
    metrics = [m.model_copy(update={"slo": None}) for m in spec.metrics if m.compare is not None]
    return spec.model_copy(update={"metrics": metrics})


def verdict_decisions(spec: AnalysisSpec, batch: Batch) -> Decisions:
    """Verdict's decision for every run of the batch (the engine's vectorised path, all runs at once)."""
    return replay_steps(batch_codes(spec, batch), spec)


# --- shared helpers --------------------------------------------------------------------------


def _first_true(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.bool_], IntArray]:
    """Per row: whether any entry is true, and the 0-based index of the first one (0 if none)."""
    any_true = np.asarray(mask.any(axis=1), dtype=np.bool_)
    return any_true, np.where(any_true, mask.argmax(axis=1), 0).astype(np.int64)


def _abort_or_promote(mask: npt.NDArray[np.bool_], looks: IntArray | None = None) -> Decisions:
    """Abort at the first true column, else promote when the analysis completes, at the end of
    the horizon. Column j is taken at 1-based look `looks[j]` (default j + 1: every look)."""
    at = np.arange(1, mask.shape[1] + 1, dtype=np.int64) if looks is None else looks
    aborted, first = _first_true(mask)
    decision = np.where(aborted, int(Decision.ABORTED), int(Decision.PROMOTED)).astype(np.int64)
    return Decisions(decision, np.where(aborted, at[first], HORIZON).astype(np.int64))


def window_sums(a: FloatArray, looks: IntArray, window: int) -> FloatArray:
    """Sums of `a` (runs, intervals[, …]) over the `window` intervals ending at each 1-based look
    (fewer at the start): what a query over `[window × 30s]` at that look sees."""
    cumulative = np.concatenate([np.zeros_like(a[:, :1]), np.cumsum(a, axis=1)], axis=1)
    return np.asarray(
        cumulative[:, looks] - cumulative[:, np.maximum(looks - window, 0)], dtype=np.float64
    )


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


@dataclass(frozen=True)
class ThresholdRule:
    """How a fixed-threshold judge measures: every `every` looks, on the `window` intervals
    before (its query's range), aborting when `failures_to_abort` measurements have failed.
    `strict`: fail only strictly outside the threshold (Flagger's thresholdRange); otherwise at or
    above it (Argo's `successCondition: result[0] < x`)."""

    every: int
    window: int
    failures_to_abort: int
    strict: bool

    def looks(self) -> IntArray:
        """1-based looks of the measurements, within the horizon."""
        return np.arange(self.every, HORIZON + 1, self.every, dtype=np.int64)


# Argo Rollouts docs (docs/analysis/prometheus.md, docs/features/analysis.md): `interval: 5m`, the
# query over `[5m]`, `failureLimit: 3` (the metric fails when failed > failureLimit: the 4th).
ARGO = ThresholdRule(every=10, window=10, failures_to_abort=4, strict=False)
# the previous benchmark's setting: one measurement per 30 s interval, `failureLimit: 0` (default)
ARGO_TIGHT = ThresholdRule(every=1, window=1, failures_to_abort=1, strict=False)
# Flagger docs (usage/metrics.md, tutorials/istio-progressive-delivery.md): `interval: 1m`, the
# built-in metrics over `interval: 1m`, `threshold: 5` failed checks roll back
FLAGGER = ThresholdRule(every=2, window=2, failures_to_abort=5, strict=True)
# the previous benchmark's setting: 30 s checks on 30 s windows, threshold 5
FLAGGER_TIGHT = ThresholdRule(every=1, window=1, failures_to_abort=5, strict=True)


def threshold_failures(batch: Batch, rule: ThresholdRule) -> npt.NDArray[np.bool_]:
    """Failed measurements, shape (runs, measurements), on the canary's data in each window.

    Error rate (5xx ÷ requests) at or above 1 % fails, p99 (`histogram_quantile` of the window's
    buckets) at or above 500 ms fails (strict: above 1 % / 500 ms). A window without canary
    requests fails (0/0 = NaN fails Argo's condition; Flagger's "no values found" is a failed
    check).
    """
    looks = rule.looks()
    total = window_sums(batch.canary_total, looks, rule.window)
    bad = window_sums(batch.canary_bad, looks, rule.window)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(total > 0, bad / np.where(total > 0, total, 1.0), np.nan)
    p99 = histogram_quantiles(0.99, window_sums(batch.canary_buckets, looks, rule.window))
    if rule.strict:
        failed = (rate > ERROR_THRESHOLD) | (p99 > P99_THRESHOLD)
    else:
        failed = (rate >= ERROR_THRESHOLD) | (p99 >= P99_THRESHOLD)
    return np.asarray((total <= 0) | failed, dtype=np.bool_)


def threshold_decisions(batch: Batch, rule: ThresholdRule) -> Decisions:
    """Abort at the measurement that brings the failed count to `failures_to_abort` (failures
    accumulate: neither tool resets them within an analysis), else promote at the horizon."""
    failed = threshold_failures(batch, rule)
    return _abort_or_promote(np.cumsum(failed, axis=1) >= rule.failures_to_abort, rule.looks())


# --- Kayenta-style Mann-Whitney --------------------------------------------------------------

KAYENTA_CONFIDENCE = 0.98
KAYENTA_TOLERANCE = 0.25
KAYENTA_FAIL, KAYENTA_PASS, KAYENTA_INCONCLUSIVE = 2, 1, 0


@dataclass(frozen=True)
class KayentaSchedule:
    """Points of `point_intervals` intervals each (the range query's `step`), judged at the given
    1-based looks on every point since the start (a growing window, `lookbackMins: 0`); a side
    with fewer than `min_values` points is Nodata."""

    point_intervals: int
    judge_looks: tuple[int, ...]
    min_values: int


# Kayenta: no minimum in the classifier; "at least 50" points advised (standalone API `step`
# doc, spinnaker/kayenta#633). Points every 30 s (`step: 30s`, the data's resolution), judged every
# 5 minutes (`analysisIntervalMins: 5`) once the window holds 50 points: minutes 25, 30 and 35.
KAYENTA = KayentaSchedule(point_intervals=1, judge_looks=(50, 60, 70), min_values=1)
# the previous benchmark's setting: one-minute points, re-judged every minute from minute 3, with
# a minimum of 3 values per side (the engine's Mann-Whitney minimum, not Kayenta's)
KAYENTA_TIGHT = KayentaSchedule(point_intervals=2, judge_looks=tuple(range(6, HORIZON + 1, 2)), min_values=3)


def _tie_sum(values: FloatArray) -> FloatArray:
    """Σ (t³ − t) over groups of equal non-NaN values, per row: Σ_i (t_i² − 1) over elements."""
    equal = values[:, :, None] == values[:, None, :]
    t = equal.sum(axis=2).astype(np.float64)
    return np.asarray(np.where(np.isnan(values), 0.0, t**2 - 1.0).sum(axis=1), dtype=np.float64)


def kayenta_outcomes(
    canary: FloatArray, baseline: FloatArray, *, min_values: int
) -> npt.NDArray[np.int8]:
    """`analyzer.stats.mann_whitney_compare(direction="increase")` for every row at once, with
    `min_values` values per side (the engine's `MIN_VALUES`; Kayenta itself needs only one).

    `canary` (runs, n) and `baseline` (runs, m) hold per-interval values, NaN where missing.
    Returns KAYENTA_FAIL ("High"), KAYENTA_PASS or KAYENTA_INCONCLUSIVE (Nodata) per row.
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
    few = (n < max(min_values, 1)) | (m < max(min_values, 1))
    out = np.where(few, KAYENTA_INCONCLUSIVE, out)
    return np.asarray(out, dtype=np.int8)


def points(batch: Batch, per_point: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Points of `per_point` intervals over the horizon: error rate and p99 per point, both
    versions (NaN for a point without requests, removed as Kayenta's default NaN strategy does)."""

    def grouped(a: FloatArray) -> FloatArray:
        a = a[:, : HORIZON - HORIZON % per_point]
        return np.asarray(a.reshape(a.shape[0], -1, per_point, *a.shape[2:]).sum(axis=2), dtype=np.float64)

    def rate(bad: FloatArray, total: FloatArray) -> FloatArray:
        b, t = grouped(bad), grouped(total)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(np.where(t > 0, b / np.where(t > 0, t, 1.0), np.nan), dtype=np.float64)

    return (
        rate(batch.canary_bad, batch.canary_total),
        rate(batch.baseline_bad, batch.baseline_total),
        histogram_quantiles(0.99, grouped(batch.canary_buckets)),
        histogram_quantiles(0.99, grouped(batch.baseline_buckets)),
    )


def kayenta_decisions(batch: Batch, schedule: KayentaSchedule) -> Decisions:
    """Judge error rate and p99 at each of the schedule's looks on all points so far. Two equal
    metrics score 100, 50 (one High) or 0; one High is under Spinnaker's default marginal
    threshold (75), so it aborts, and so does Nodata on ≥ 50 % of the metrics (score 0).
    Otherwise promote at the horizon."""
    c_rate, b_rate, c_p99, b_p99 = points(batch, schedule.point_intervals)
    looks = np.asarray(schedule.judge_looks, dtype=np.int64)
    fail = np.zeros((batch.runs, len(looks)), dtype=np.bool_)
    for j, look in enumerate(looks):
        k = int(look) // schedule.point_intervals  # points complete at this look
        error = kayenta_outcomes(c_rate[:, :k], b_rate[:, :k], min_values=schedule.min_values)
        latency = kayenta_outcomes(c_p99[:, :k], b_p99[:, :k], min_values=schedule.min_values)
        high = (error == KAYENTA_FAIL) | (latency == KAYENTA_FAIL)
        if schedule.min_values <= 1:  # Kayenta's Nodata rule; the old setting had none
            high |= (error == KAYENTA_INCONCLUSIVE) | (latency == KAYENTA_INCONCLUSIVE)
        fail[:, j] = high
    return _abort_or_promote(fail, looks)


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


JUDGES: tuple[str, ...] = (
    "verdict",
    "verdict-compare",
    "argo-threshold",
    "argo-threshold-tight",
    "flagger-threshold",
    "flagger-threshold-tight",
    "kayenta",
    "kayenta-tight",
    "naive-z",
)


def peer_decisions(batch: Batch) -> dict[str, Decisions]:
    """Every judge but Verdict."""
    return {
        "argo-threshold": threshold_decisions(batch, ARGO),
        "argo-threshold-tight": threshold_decisions(batch, ARGO_TIGHT),
        "flagger-threshold": threshold_decisions(batch, FLAGGER),
        "flagger-threshold-tight": threshold_decisions(batch, FLAGGER_TIGHT),
        "kayenta": kayenta_decisions(batch, KAYENTA),
        "kayenta-tight": kayenta_decisions(batch, KAYENTA_TIGHT),
        "naive-z": naive_z_decisions(batch),
    }


def all_decisions(spec: AnalysisSpec, batch: Batch) -> dict[str, Decisions]:
    return {
        "verdict": verdict_decisions(spec, batch),
        "verdict-compare": verdict_decisions(comparisons_only(spec), batch),
        **peer_decisions(batch),
    }

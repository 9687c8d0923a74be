"""Every look of one metric at once: per-check e-processes → a status after each interval.

This is the one implementation of the decision rules; `analyzer.checks` reads a look out of it
and writes the report a person reads, and the benchmarks run it on thousands of canaries at once
(any leading axes of the count arrays are carried through).

Rules (DESIGN.md, "Statistics in one paragraph"):

* FAIL: the weighted mean of the metric's FAIL e-values (rollback trigger 0.1, comparison 0.9; one
  check: 1) reaches 1/alpha at some look. A mean of e-processes is an e-process, so the metric's
  false fail rate over all looks is at most its alpha (Ville). A failure is sticky.
* PASS: the SLO's and the comparison's PASS e-values each reach 1/beta at this look (an
  intersection-union test: each check at the full beta, no split); a metric with only a rollback
  trigger passes when shown below it.
* HOLD: the canary is shown beyond its SLO (the SLO gate's FAIL e-value reaches 1/alpha) and the
  metric has not failed: the SLO is a promotion criterion, not a rollback trigger, so a breach
  alone holds the rollout (INCONCLUSIVE, `held`), and `shared` says whether the baseline is shown
  beyond it too (an incident on both versions, not the new version). The hold lifts when the
  evidence does.
* Otherwise INCONCLUSIVE; NO_DATA while the canary has no requests (never a pass).

Latency comparison: requests slower than a threshold are counted like bad requests. The threshold
is the baseline's quantile rounded down to a bucket bound, chosen from the pre-run window and
frozen for the run; without enough pre-run requests it is chosen from the run's own baseline once
it has enough, and only the intervals after that choice are tested.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from analyzer.plan import CHECK_WEIGHTS as CHECK_WEIGHTS
from analyzer.plan import MetricPlan
from analyzer.stats.eprocess import EProcess
from analyzer.stats.histogram import comparison_bound_index
from analyzer.stats.ratio import (
    MIN_PRERUN_BAD,
    AllowedRatios,
    allowed_ratios,
    breach_evidence,
    comparison_evidence,
    rate_ratio,
    slo_evidences,
)
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
FALLBACK_SHARE = 0.1  # of the comparison's share of alpha (and of beta) when p̄ is estimated

IntArray = npt.NDArray[np.int8]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CheckLooks:
    """One check's evidence after every look, and what a report shows of it."""

    check: str  # "slo" | "compare"
    weight: float  # its share of the metric's FAIL e-value
    fail: EProcess
    passes: EProcess
    detail: dict[str, FloatArray] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricLooks:
    codes: IntArray  # (..., looks): the metric's status after each look, failures sticky
    held: npt.NDArray[np.bool_]  # (..., looks): inconclusive because the canary breaches its SLO
    shared: npt.NDArray[np.bool_]  # (..., looks): held, and the baseline breaches the SLO too
    log_e_fail: FloatArray  # (..., looks): log of the weighted mean FAIL e-value
    fail_level: FloatArray  # (...): log(1/alpha) the mean must reach (alpha less any fallback)
    pass_level: FloatArray  # (...): log(1/beta) each PASS e-value must reach
    checks: list[CheckLooks]
    canary_requests: FloatArray  # (..., looks), cumulative


def check_weights(plan: MetricPlan) -> dict[str, float]:
    """The weights of the metric's checks in its FAIL e-value (they sum to 1)."""
    return plan.check_weights


def metric_looks(
    plan: MetricPlan,
    canary: Series,
    baseline: Series | None,
    prerun: Series | None,
    *,
    alpha: float,
    beta: float,
) -> MetricLooks:
    """Status and evidence of one metric after every interval of the series."""
    if isinstance(canary, RatioSeries):
        assert baseline is None or isinstance(baseline, RatioSeries)
        assert prerun is None or isinstance(prerun, RatioSeries)
        return ratio_looks(
            plan,
            canary.bad,
            canary.total,
            None if baseline is None else baseline.bad,
            None if baseline is None else baseline.total,
            None if prerun is None else np.asarray(prerun.bad.sum()),
            None if prerun is None else np.asarray(prerun.total.sum()),
            alpha=alpha,
            beta=beta,
        )
    assert baseline is None or isinstance(baseline, HistogramSeries)
    assert prerun is None or isinstance(prerun, HistogramSeries)
    return latency_looks(
        plan,
        canary.bounds,
        canary.counts,
        None if baseline is None else baseline.counts,
        None if prerun is None else prerun.counts.sum(axis=0),
        alpha=alpha,
        beta=beta,
    )


def ratio_looks(
    plan: MetricPlan,
    c_bad: FloatArray,
    c_total: FloatArray,
    b_bad: FloatArray | None,
    b_total: FloatArray | None,
    pre_bad: FloatArray | None,
    pre_total: FloatArray | None,
    *,
    alpha: float,
    beta: float,
) -> MetricLooks:
    """Ratio metric: per-interval counts (..., intervals); pre-run counts (...)."""
    c_bad = np.clip(np.asarray(c_bad, dtype=np.float64), 0, None)
    c_total = np.asarray(c_total, dtype=np.float64)
    c_bad = np.minimum(c_bad, c_total)
    weights = check_weights(plan)
    checks: list[CheckLooks] = []
    lead = c_total.shape[:-1]
    fallback_alpha = np.zeros(lead)
    fallback_beta = np.zeros(lead)
    cum_bad, cum_total = np.cumsum(c_bad, axis=-1), np.cumsum(c_total, axis=-1)
    gates = [
        (gate, bound)
        for gate, bound in (("slo", plan.max_bad_rate), ("trigger", plan.abort_bad_rate))
        if bound is not None
    ]
    evidence = slo_evidences([c_bad] * len(gates), c_total, [bound for _, bound in gates])
    for (gate, bound), ev in zip(gates, evidence, strict=True):
        detail = {"max": np.asarray(bound), "canaryBad": cum_bad, "canaryRequests": cum_total}
        if gate == "slo" and b_bad is not None and b_total is not None:
            bb = np.minimum(np.clip(np.asarray(b_bad, dtype=np.float64), 0, None), b_total)
            detail["baselineBreach"] = _baseline_breach(bb, np.asarray(b_total, float), c_total, bound)
        checks.append(CheckLooks(gate, weights.get(gate, 1.0), ev.fail, ev.passes, detail))
    if plan.compare is not None:
        if b_bad is None or b_total is None:
            checks.append(_undecidable("compare", weights["compare"], c_total.shape))
        else:
            b_bad = np.clip(np.asarray(b_bad, dtype=np.float64), 0, None)
            b_total = np.asarray(b_total, dtype=np.float64)
            b_bad = np.minimum(b_bad, b_total)
            check, fa, fb = _comparison(
                plan, weights["compare"], c_bad, c_total, b_bad, b_total,
                np.zeros(lead) if pre_bad is None else pre_bad,
                np.zeros(lead) if pre_total is None else pre_total,
                alpha, beta,
            )
            checks.append(check)
            fallback_alpha, fallback_beta = fa, fb
    return _combine(checks, np.cumsum(c_total, axis=-1), alpha, beta, fallback_alpha, fallback_beta)


def _comparison(
    plan: MetricPlan,
    weight: float,
    c_bad: FloatArray,
    c_total: FloatArray,
    b_bad: FloatArray,
    b_total: FloatArray,
    pre_bad: FloatArray,
    pre_total: FloatArray,
    alpha: float,
    beta: float,
) -> tuple[CheckLooks, FloatArray, FloatArray]:
    assert plan.compare is not None
    alpha_fb = FALLBACK_SHARE * weight * alpha
    beta_fb = FALLBACK_SHARE * beta
    ratios: AllowedRatios = allowed_ratios(
        b_bad,
        b_total,
        pre_bad,
        pre_total,
        tolerance=plan.compare.tolerance,
        promote_tolerance=plan.compare.promote_tolerance,
        margin=plan.compare.margin,
        fallback_alpha=alpha_fb,
        fallback_beta=beta_fb,
    )
    ev = comparison_evidence(c_bad, c_total, b_bad, b_total, ratios)
    cum_c_bad, cum_c_total = np.cumsum(c_bad, axis=-1), np.cumsum(c_total, axis=-1)
    cum_b_bad, cum_b_total = np.cumsum(b_bad, axis=-1), np.cumsum(b_total, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        detail = {
            "canaryRate": cum_c_bad / cum_c_total,
            "baselineRate": cum_b_bad / cum_b_total,
            "ratio": rate_ratio(c_bad, c_total, b_bad, b_total),
            "failAboveRatio": ratios.fail,
            "passBelowRatio": ratios.passes,
            "prerunBaselineRate": np.broadcast_to(ratios.baseline_rate[..., -1], c_total.shape[:-1]),
            "canaryBad": cum_c_bad,
            "canaryRequests": cum_c_total,
            "baselineBad": cum_b_bad,
            "baselineRequests": cum_b_total,
            "lastCanaryShare": c_total / (c_total + b_total),
        }
    used = ~ratios.from_prerun[..., -1]
    fallback_alpha = np.where(used, alpha_fb, 0.0)
    fallback_beta = np.where(used, beta_fb, 0.0)
    return CheckLooks("compare", weight, ev.fail, ev.passes, detail), fallback_alpha, fallback_beta


def latency_looks(
    plan: MetricPlan,
    bounds: FloatArray,
    c_counts: FloatArray,
    b_counts: FloatArray | None,
    pre_counts: FloatArray | None,
    *,
    alpha: float,
    beta: float,
) -> MetricLooks:
    """Latency metric: per-interval bucket counts (..., intervals, buckets); pre-run (..., buckets)."""
    bounds = np.asarray(bounds, dtype=np.float64)
    c_counts = np.clip(np.asarray(c_counts, dtype=np.float64), 0, None)
    c_cum = np.cumsum(c_counts, axis=-1)  # per interval, cumulative over buckets
    c_total = c_cum[..., -1]
    lead = c_total.shape[:-1]
    q = plan.quantile
    weights = check_weights(plan)
    checks: list[CheckLooks] = []
    fallback_alpha = np.zeros(lead)
    fallback_beta = np.zeros(lead)
    gates = [
        (gate, threshold, *_slower(bounds, c_cum, threshold))
        for gate, threshold in (("slo", plan.latency_threshold), ("trigger", plan.abort_seconds))
        if threshold is not None
    ]
    evidence = slo_evidences(
        [np.clip(certain, 0, None) for _, _, certain, _ in gates],
        c_total,
        [1.0 - q] * len(gates),
        bad_at_most=[np.clip(possible, 0, None) for _, _, _, possible in gates],
    )
    for (gate, threshold, certain, possible), ev in zip(gates, evidence, strict=True):
        detail = {
            "threshold": np.asarray(threshold),
            "maxSlowerShare": np.asarray(1.0 - q),
            "slowerCertain": np.cumsum(certain, axis=-1),
            "slowerPossible": np.cumsum(possible, axis=-1),
            "canaryRequests": np.cumsum(c_total, axis=-1),
        }
        if gate == "slo" and b_counts is not None:
            b_cum = np.cumsum(np.clip(np.asarray(b_counts, dtype=np.float64), 0, None), axis=-1)
            b_certain, _ = _slower(bounds, b_cum, threshold)
            detail["baselineBreach"] = _baseline_breach(
                np.clip(b_certain, 0, None), b_cum[..., -1], c_total, 1.0 - q
            )
        checks.append(CheckLooks(gate, weights.get(gate, 1.0), ev.fail, ev.passes, detail))
    if plan.compare is not None:
        if b_counts is None:
            checks.append(_undecidable("compare", weights["compare"], c_total.shape))
        else:
            check, fallback_alpha, fallback_beta = _latency_comparison(
                plan, weights["compare"], bounds, c_cum, b_counts, pre_counts, q, alpha, beta
            )
            checks.append(check)
    return _combine(checks, np.cumsum(c_total, axis=-1), alpha, beta, fallback_alpha, fallback_beta)


def _baseline_breach(
    b_bad: FloatArray, b_total: FloatArray, c_total: FloatArray, bound: float
) -> FloatArray:
    """The evidence (log e-value per look) that the baseline is beyond the SLO too, which only
    labels a hold (`shared`), never decides: the larger of the baseline's own evidence and the
    evidence of its per-interval rates weighed by the canary's requests (the canary's run-long
    rate weighs the later, bigger steps most, so an incident at the 50 % step shows in the
    canary's rate long before it shows in the baseline's run-long rate)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(b_total > 0, b_bad / np.where(b_total > 0, b_total, 1.0), 0.0)
    return breach_evidence([b_bad, rate * c_total], [b_total, c_total], bound)


def _slower(bounds: FloatArray, cum: FloatArray, threshold: float) -> tuple[FloatArray, FloatArray]:
    """Requests certainly and possibly slower than `threshold` per interval, from bucket counts
    cumulative over the buckets (..., intervals, buckets): a threshold between two bucket bounds
    knows the slow count only within a range."""
    total = cum[..., -1]
    k_hi = int(np.searchsorted(bounds, threshold, side="left"))
    exact = k_hi < len(bounds) and bounds[k_hi] == threshold
    certain = total - cum[..., k_hi] if k_hi < len(bounds) else np.zeros_like(total)
    possible = certain if exact else total - (cum[..., k_hi - 1] if k_hi >= 1 else 0.0)
    return certain, possible


def _latency_comparison(
    plan: MetricPlan,
    weight: float,
    bounds: FloatArray,
    c_cum: FloatArray,
    b_counts: FloatArray,
    pre_counts: FloatArray | None,
    q: float,
    alpha: float,
    beta: float,
) -> tuple[CheckLooks, FloatArray, FloatArray]:
    b_cum = np.cumsum(np.clip(np.asarray(b_counts, dtype=np.float64), 0, None), axis=-1)
    c_total, b_total = c_cum[..., -1], b_cum[..., -1]
    lead = c_total.shape[:-1]
    looks = c_total.shape[-1]
    enough_requests = MIN_PRERUN_BAD / (1.0 - q)
    if pre_counts is None:
        pre_cum = np.zeros((*lead, len(bounds)))
    else:
        pre_cum = np.broadcast_to(
            np.cumsum(np.clip(np.asarray(pre_counts, dtype=np.float64), 0, None), axis=-1),
            (*lead, len(bounds)),
        )
    from_prerun = pre_cum[..., -1] >= enough_requests
    # the run's own fallback: the first look at which the baseline has enough requests
    run_cum = np.cumsum(b_cum, axis=-2)  # (..., looks, buckets), cumulative over intervals
    reached = run_cum[..., -1] >= enough_requests
    freeze = np.where(reached.any(axis=-1), np.argmax(reached, axis=-1), looks)  # 0-based look
    frozen_cum = np.take_along_axis(
        run_cum, np.minimum(freeze, looks - 1)[..., None, None], axis=-2
    )[..., 0, :]
    basis = np.where(from_prerun[..., None], pre_cum, frozen_cum)
    flat = basis.reshape(-1, len(bounds))
    safe = np.where(flat[:, -1:] > 0, flat, 1.0)
    k = comparison_bound_index(safe, q).reshape(lead)
    # intervals tested: all of them with a pre-run threshold, else only those after the freeze
    tested = np.where(
        from_prerun[..., None], True, np.arange(looks) > np.asarray(freeze)[..., None]
    )
    kk = np.broadcast_to(np.asarray(k)[..., None, None], (*lead, looks, 1))
    c_slow = np.where(tested, c_total - np.take_along_axis(c_cum, kk, axis=-1)[..., 0], 0.0)
    b_slow = np.where(tested, b_total - np.take_along_axis(b_cum, kk, axis=-1)[..., 0], 0.0)
    c_n = np.where(tested, c_total, 0.0)
    b_n = np.where(tested, b_total, 0.0)
    k_pre = np.asarray(k)[..., None]
    pre_slow = np.where(from_prerun, pre_cum[..., -1] - np.take_along_axis(pre_cum, k_pre, axis=-1)[..., 0], 0.0)
    pre_total = np.where(from_prerun, pre_cum[..., -1], 0.0)
    check, fa, fb = _comparison(
        plan, weight, np.clip(c_slow, 0, None), c_n, np.clip(b_slow, 0, None), b_n,
        pre_slow, pre_total, alpha, beta,
    )
    threshold = np.asarray(bounds[np.asarray(k)], dtype=np.float64)
    chosen = np.where(from_prerun, 0, np.asarray(freeze) + 1)  # 1-based look; 0: pre-run
    detail = dict(check.detail)
    detail["threshold"] = np.broadcast_to(threshold, lead)
    detail["thresholdChosenAtLook"] = np.broadcast_to(chosen.astype(np.float64), lead)
    return (
        CheckLooks(check.check, check.weight, check.fail, check.passes, detail),
        fa,
        fb,
    )


def _undecidable(check: str, weight: float, shape: tuple[int, ...]) -> CheckLooks:
    """A check without the data it needs (no baseline series): no evidence either way."""
    zero = np.zeros(shape)
    none = EProcess(log_e=zero, last_log_lr=np.zeros((*shape[:-1], 1)))
    never = EProcess(log_e=np.full(shape, -np.inf), last_log_lr=np.full((*shape[:-1], 1), -np.inf))
    return CheckLooks(check, weight, none, never, {"missing": np.asarray(1.0)})


def _combine(
    checks: list[CheckLooks],
    canary_requests: FloatArray,
    alpha: float,
    beta: float,
    fallback_alpha: FloatArray,
    fallback_beta: FloatArray,
) -> MetricLooks:
    fail_level = np.log(1.0 / (alpha - fallback_alpha))
    pass_level = np.log(1.0 / (beta - fallback_beta))
    failing = [c for c in checks if c.check != "slo"]
    passing = [c for c in checks if c.check != "trigger"] or checks
    if failing:
        stacked = np.stack([np.log(c.weight) + c.fail.log_e for c in failing])
        top = stacked.max(axis=0)
        log_e_fail = top + np.log(np.exp(stacked - top).sum(axis=0))
    else:  # an SLO alone, its trigger turned off: it holds, it never fails
        log_e_fail = np.full(canary_requests.shape, -np.inf)
    failed = np.maximum.accumulate(log_e_fail >= fail_level[..., None], axis=-1)
    passed = np.all(
        np.stack([c.passes.log_e >= pass_level[..., None] for c in passing]), axis=0
    )
    held = np.zeros(canary_requests.shape, dtype=bool)
    shared = np.zeros(canary_requests.shape, dtype=bool)
    for c in checks:
        if c.check == "slo":
            breach = c.fail.log_e >= fail_level[..., None]
            held = breach & ~failed
            if "baselineBreach" in c.detail:
                shared = held & (c.detail["baselineBreach"] >= fail_level[..., None])
    codes = np.where(failed, FAIL, np.where(passed & ~held, PASS, INCONCLUSIVE))
    no_data = (canary_requests <= 0) & ~failed
    codes = np.where(no_data, NO_DATA, codes).astype(np.int8)
    return MetricLooks(
        codes=codes,
        held=np.asarray(held & ~no_data),
        shared=np.asarray(shared & ~no_data),
        log_e_fail=np.asarray(log_e_fail, dtype=np.float64),
        fail_level=np.asarray(fail_level, dtype=np.float64),
        pass_level=np.asarray(pass_level, dtype=np.float64),
        checks=checks,
        canary_requests=canary_requests,
    )

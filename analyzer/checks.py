"""Evaluate one metric at one or more looks: cumulative counts in, a `MetricReport` out.

Pure: series in, report out. The false-abort budget given to a metric (`alpha`) is split equally
between its checks (SLO gate, comparison); each check's confidence sequences keep both its false
fail and its false pass at or below its share (see analyzer.stats.ratio).

A metric's failure is sticky: once any look shows the canary worse than allowed, the metric has
failed, even if later data dilute the evidence. This is what makes a look at every interval safe
and useful: the bounds are valid at all looks at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from analyzer.looks import FAIL as FAIL_CODE
from analyzer.looks import alpha_per_check, look_statuses
from analyzer.spec import MetricSpec
from analyzer.stats import (
    Outcome,
    compare_rates,
    comparison_bucket_bound,
    exceedance,
    quantile,
    slo_gate,
)
from analyzer.stats.mann_whitney import mann_whitney_compare
from analyzer.verdicts import CheckReport, MetricReport, MetricStatus
from metrics.source import HistogramSeries, RatioSeries, Series

_NO_BASELINE = CheckReport(
    "compare", str(Outcome.INCONCLUSIVE), "the baseline has no series to compare with"
)


def _pct(rate: float) -> str:
    return f"{rate * 100:.3g}%"


def _ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.0f}ms"


def evaluate_metric(
    spec: MetricSpec,
    canary: Series | None,
    baseline: Series | None,
    *,
    alpha: float,
    looks: Sequence[int] | None = None,
    canary_selector: str = "",
) -> MetricReport:
    """Judge one metric. `looks` are 1-based interval counts to look at (default: every interval)."""
    if canary is None or _total(canary) <= 0:
        what = "no series" if canary is None else "no requests"
        return _no_data(
            spec,
            alpha,
            f"{spec.name}: the canary has {what}{canary_selector}; no data is never a pass",
        )
    n = _length(canary)
    if baseline is not None and _length(baseline) != n:
        raise ValueError("canary and baseline series must cover the same intervals")
    look_list = list(looks) if looks is not None else list(range(1, n + 1))
    if not look_list or any(not 1 <= k <= n for k in look_list):
        raise ValueError("looks must lie between 1 and the number of intervals")
    check_alpha = alpha_per_check(spec, alpha)
    last = look_list[-1]
    report = _checks_at(spec, canary, baseline, last, check_alpha)
    if len(look_list) == 1:  # one look (the web provider's case): no replay needed
        failed_at = last if any(c.outcome == Outcome.FAIL for c in report) else None
    else:
        failed_at = _first_failure(spec, canary, baseline, alpha, look_list, check_alpha)
    failed_checks: list[CheckReport] = []
    if failed_at is not None:
        at_failure = (
            report
            if failed_at == last
            else _checks_at(spec, canary, baseline, failed_at, check_alpha)
        )
        failed_checks = [c for c in at_failure if c.outcome == Outcome.FAIL]
    canary_fig = _figures(spec, canary, last)
    baseline_fig = _figures(spec, baseline, last) if baseline is not None else {}
    if failed_at is not None:
        reasons = "; ".join(c.reason for c in failed_checks)
        when = "" if failed_at == last else f" (first shown at look {failed_at})"
        return MetricReport(
            name=spec.name,
            kind=str(spec.kind),
            status=MetricStatus.FAIL,
            reason=reasons + when,
            critical=spec.critical,
            weight=spec.weight,
            canary=canary_fig,
            baseline=baseline_fig,
            checks=report if failed_at == last else failed_checks,
            alpha=alpha,
            failed_at_look=failed_at,
        )
    outcomes = [c.outcome for c in report]
    if outcomes and all(o == Outcome.PASS for o in outcomes):
        status, reason = MetricStatus.PASS, "; ".join(c.reason for c in report)
    else:
        status = MetricStatus.INCONCLUSIVE
        reason = "; ".join(c.reason for c in report if c.outcome != Outcome.PASS)
    needed = [c.more_requests_needed for c in report if c.outcome == Outcome.INCONCLUSIVE]
    more = (
        None
        if not needed or any(x is None for x in needed)
        else max(x for x in needed if x is not None)
    )
    return MetricReport(
        name=spec.name,
        kind=str(spec.kind),
        status=status,
        reason=reason,
        critical=spec.critical,
        weight=spec.weight,
        canary=canary_fig,
        baseline=baseline_fig,
        checks=report,
        alpha=alpha,
        more_requests_needed=more,
    )


def _first_failure(
    spec: MetricSpec,
    canary: Series,
    baseline: Series | None,
    alpha: float,
    look_list: list[int],
    check_alpha: float,
) -> int | None:
    """The first look (1-based) in `look_list` at which any check of the metric failed."""
    statuses = look_statuses(spec, canary, baseline, alpha)
    if statuses is not None:
        for look in look_list:
            if statuses[look - 1] == FAIL_CODE:
                return look
        return None
    for look in look_list:
        if any(
            c.outcome == Outcome.FAIL for c in _checks_at(spec, canary, baseline, look, check_alpha)
        ):
            return look
    return None


def _no_data(spec: MetricSpec, alpha: float, reason: str) -> MetricReport:
    return MetricReport(
        name=spec.name,
        kind=str(spec.kind),
        status=MetricStatus.NO_DATA,
        reason=reason,
        critical=spec.critical,
        weight=spec.weight,
        canary={},
        baseline={},
        checks=[],
        alpha=alpha,
    )


def _length(series: Series) -> int:
    return (
        int(series.total.shape[0])
        if isinstance(series, RatioSeries)
        else int(series.counts.shape[0])
    )


def _total(series: Series) -> float:
    if isinstance(series, RatioSeries):
        return float(series.total.sum())
    return float(series.counts.sum())


def _cum_ratio(series: RatioSeries, look: int) -> tuple[float, float]:
    return float(series.bad[:look].sum()), float(series.total[:look].sum())


def _cum_buckets(series: HistogramSeries, look: int) -> np.ndarray:
    return np.asarray(series.counts[:look].sum(axis=0), dtype=np.float64)


def _figures(spec: MetricSpec, series: Series, look: int) -> dict[str, Any]:
    if isinstance(series, RatioSeries):
        bad, total = _cum_ratio(series, look)
        rate = bad / total if total > 0 else float("nan")
        shown = 1.0 - rate if spec.higher_is_better else rate
        return {"requests": round(total, 1), "bad": round(bad, 1), "rate": _round(shown)}
    counts = _cum_buckets(series, look)
    q = spec.effective_quantile
    return {
        "requests": round(float(counts.sum()), 1),
        "quantile": q,
        "seconds": _round(quantile(q, series.bounds, counts)),
    }


def _round(x: float) -> float | None:
    return None if x != x else float(f"{x:.6g}")


def _checks_at(
    spec: MetricSpec, canary: Series, baseline: Series | None, look: int, alpha: float
) -> list[CheckReport]:
    if isinstance(canary, RatioSeries):
        assert baseline is None or isinstance(baseline, RatioSeries)
        return _ratio_checks(spec, canary, baseline, look, alpha)
    assert baseline is None or isinstance(baseline, HistogramSeries)
    return _latency_checks(spec, canary, baseline, look, alpha)


def _ratio_checks(
    spec: MetricSpec, canary: RatioSeries, baseline: RatioSeries | None, look: int, alpha: float
) -> list[CheckReport]:
    out: list[CheckReport] = []
    c_bad, c_total = _cum_ratio(canary, look)
    noun = "failure rate" if spec.higher_is_better else "rate"
    max_bad = spec.max_bad_rate()
    if max_bad is not None:
        g = slo_gate(c_bad, c_total, max_bad, alpha)
        stat = {"rate": g.rate, "lower": g.lower, "upper": g.upper, "max": max_bad, "alpha": alpha}
        if g.outcome == Outcome.FAIL:
            why = f"canary {noun} is at least {_pct(g.lower)}, above the SLO's {_pct(max_bad)}"
        elif g.outcome == Outcome.PASS:
            why = f"canary {noun} is at most {_pct(g.upper)}, within the SLO's {_pct(max_bad)}"
        else:
            why = _undecided(f"canary {noun}", g.lower, g.upper, max_bad, g.more_requests_needed)
        out.append(CheckReport("slo", str(g.outcome), why, _rounded(stat), g.more_requests_needed))
    if spec.compare is not None:
        if baseline is None:
            out.append(_NO_BASELINE)
        elif spec.test == "mann-whitney":
            out.append(_mann_whitney_ratio(spec, canary, baseline, look))
        else:
            b_bad, b_total = _cum_ratio(baseline, look)
            out.append(_comparison(spec, c_bad, c_total, b_bad, b_total, alpha, noun))
    return out


def _comparison(
    spec: MetricSpec,
    c_bad: float,
    c_total: float,
    b_bad: float,
    b_total: float,
    alpha: float,
    noun: str,
) -> CheckReport:
    assert spec.compare is not None
    r = compare_rates(
        c_bad,
        c_total,
        b_bad,
        b_total,
        tolerance=spec.compare.tolerance,
        margin=spec.compare.margin,
        alpha=alpha,
    )
    stat = {
        "canaryLower": r.canary_lower,
        "canaryUpper": r.canary_upper,
        "baselineLower": r.baseline_lower,
        "baselineUpper": r.baseline_upper,
        "failAbove": r.fail_threshold,
        "passAtOrBelow": r.pass_threshold,
        "tolerance": r.tolerance,
        "margin": r.margin,
        "alpha": alpha,
    }
    allowance = f"baseline {_pct(r.baseline_rate)} × {1 + r.tolerance:g} + {_pct(r.margin)}"
    if b_total <= 0:
        why = "the baseline has no requests to compare with"
    elif r.outcome == Outcome.FAIL:
        why = (
            f"canary {noun} is at least {_pct(r.canary_lower)}, above the allowed "
            f"{_pct(r.fail_threshold)} ({allowance})"
        )
    elif r.outcome == Outcome.PASS:
        why = (
            f"canary {noun} is at most {_pct(r.canary_upper)}, within the allowed "
            f"{_pct(r.pass_threshold)} ({allowance})"
        )
    else:
        why = _undecided(
            f"canary {noun} vs {allowance}",
            r.canary_lower,
            r.canary_upper,
            r.allowed_rate,
            r.more_requests_needed,
        )
    return CheckReport("compare", str(r.outcome), why, _rounded(stat), r.more_requests_needed)


def _undecided(what: str, lower: float, upper: float, bound: float, needed: int | None) -> str:
    text = f"{what}: between {_pct(lower)} and {_pct(upper)}, not yet shown on either side of {_pct(bound)}"
    if needed is not None and needed > 0:
        text += f"; about {needed:,} more canary requests needed at the current rate"
    elif needed is None:
        text += "; at the current rate more requests alone will not show it within"
    return text


def _rounded(stat: dict[str, Any]) -> dict[str, Any]:
    return {k: (_round(v) if isinstance(v, float) else v) for k, v in stat.items()}


def _mann_whitney_ratio(
    spec: MetricSpec, canary: RatioSeries, baseline: RatioSeries, look: int
) -> CheckReport:
    def per_interval(s: RatioSeries) -> np.ndarray:
        total = s.total[:look]
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = np.where(total > 0, s.bad[:look] / np.where(total > 0, total, 1.0), np.nan)
        return np.asarray(rates, dtype=np.float64)

    return _mann_whitney(per_interval(canary), per_interval(baseline))


def _mann_whitney(canary_values: np.ndarray, baseline_values: np.ndarray) -> CheckReport:
    m = mann_whitney_compare(canary_values, baseline_values, direction="increase")
    stat = {
        "hodgesLehmann": m.hodges_lehmann,
        "ciLower": m.ci_lower,
        "ciUpper": m.ci_upper,
        "pValue": m.p_value,
        "canaryN": m.canary_n,
        "baselineN": m.baseline_n,
    }
    return CheckReport("mann-whitney", str(m.outcome), m.reason, _rounded(stat))


def _latency_checks(
    spec: MetricSpec,
    canary: HistogramSeries,
    baseline: HistogramSeries | None,
    look: int,
    alpha: float,
) -> list[CheckReport]:
    out: list[CheckReport] = []
    q = spec.effective_quantile
    share = 1.0 - q
    c_counts = _cum_buckets(canary, look)
    threshold = spec.latency_threshold()
    if threshold is not None:
        ex = exceedance(threshold, canary.bounds, c_counts)
        g = slo_gate(ex.certain, ex.total, share, alpha, bad_at_most=ex.possible)
        stat = {
            "threshold": threshold,
            "slowerShareLower": g.lower,
            "slowerShareUpper": g.upper,
            "maxSlowerShare": share,
            "thresholdIsBucketBound": ex.exact,
            "alpha": alpha,
        }
        what = f"share of canary requests slower than {_ms(threshold)}"
        if g.outcome == Outcome.FAIL:
            why = f"{what} is at least {_pct(g.lower)}, more than the {_pct(share)} a p{q * 100:g} SLO allows"
        elif g.outcome == Outcome.PASS:
            why = f"{what} is at most {_pct(g.upper)}: p{q * 100:g} is within {_ms(threshold)}"
        else:
            why = _undecided(what, g.lower, g.upper, share, g.more_requests_needed)
        out.append(CheckReport("slo", str(g.outcome), why, _rounded(stat), g.more_requests_needed))
    if spec.compare is not None:
        if baseline is None:
            out.append(_NO_BASELINE)
            return out
        if spec.test == "mann-whitney":
            out.append(
                _mann_whitney(
                    _per_interval_quantiles(canary, q, look),
                    _per_interval_quantiles(baseline, q, look),
                )
            )
            return out
        b_counts = _cum_buckets(baseline, look)
        bound = comparison_bucket_bound(q, baseline.bounds, b_counts)
        if not np.isfinite(bound):
            out.append(
                CheckReport(
                    "compare",
                    str(Outcome.INCONCLUSIVE),
                    "the baseline has no requests yet: no latency threshold to compare at",
                )
            )
            return out
        ex_c = exceedance(bound, canary.bounds, c_counts)
        ex_b = exceedance(bound, baseline.bounds, b_counts)
        check = _comparison(
            spec,
            ex_c.certain,
            ex_c.total,
            ex_b.certain,
            ex_b.total,
            alpha,
            f"share slower than {_ms(bound)}",
        )
        statistic = dict(check.statistic, threshold=bound)
        out.append(
            CheckReport(
                check.check, check.outcome, check.reason, statistic, check.more_requests_needed
            )
        )
    return out


def _per_interval_quantiles(series: HistogramSeries, q: float, look: int) -> np.ndarray:
    return np.array(
        [quantile(q, series.bounds, row) for row in series.counts[:look]], dtype=np.float64
    )

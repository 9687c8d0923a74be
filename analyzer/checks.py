"""One metric at one look, as a person reads it: per-interval counts in, a `MetricReport` out.

Pure. The decision is `analyzer.looks` (every look at once, the one implementation of the rules);
this module reads the requested look out of it, finds the first look at which the metric failed
(failures are sticky), and writes the reasons and figures: each check's e-values against the
levels they must reach, the alpha and beta it used, and, when undecided, how many more canary
requests (and minutes at the current rate) a pass would need if the rates stayed as they are.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from analyzer.looks import CODES_TO_STATUS, CheckLooks, MetricLooks, metric_looks
from analyzer.looks import FAIL as FAIL_CODE
from analyzer.plan import MetricPlan
from analyzer.stats import Outcome, quantile
from analyzer.stats.eprocess import extra_requests_for, logit
from analyzer.stats.mann_whitney import mann_whitney_compare
from analyzer.verdicts import CheckReport, MetricReport, MetricStatus
from metrics.source import HistogramSeries, RatioSeries, Series


def _pct(rate: float) -> str:
    return "n/a" if rate != rate else f"{rate * 100:.3g}%"


def _ms(seconds: float) -> str:
    return "n/a" if seconds != seconds else f"{seconds * 1000:.0f}ms"


def evaluate_metric(
    plan: MetricPlan,
    canary: Series | None,
    baseline: Series | None,
    *,
    alpha: float,
    beta: float = 0.10,
    prerun: Series | None = None,
    looks: Sequence[int] | None = None,
    interval_seconds: float | None = None,
    canary_selector: str = "",
) -> MetricReport:
    """Judge one metric. `looks` are 1-based interval counts to look at (default: every interval);
    the report is the last of them, with the first failure among them if any."""
    if canary is None or _total(canary) <= 0:
        what = "no series" if canary is None else "no requests"
        return _no_data(
            plan,
            alpha,
            f"{plan.name}: the canary has {what}{canary_selector}; no data is never a pass",
        )
    n = _length(canary)
    if baseline is not None and _length(baseline) != n:
        raise ValueError("canary and baseline series must cover the same intervals")
    look_list = list(looks) if looks is not None else list(range(1, n + 1))
    if not look_list or any(not 1 <= k <= n for k in look_list):
        raise ValueError("looks must lie between 1 and the number of intervals")
    last = look_list[-1]
    canary_t = _head(canary, last)
    baseline_t = None if baseline is None else _head(baseline, last)
    if _total(canary_t) <= 0:
        return _no_data(
            plan, alpha, f"{plan.name}: the canary has no requests yet{canary_selector}; no data is never a pass"
        )
    sequential_plan: MetricPlan | None = plan
    if plan.test == "mann-whitney" and plan.compare is not None:
        sequential_plan = (
            replace(plan, compare=None) if plan.has_slo or plan.has_trigger else None
        )
    checks: list[CheckReport] = []
    status = MetricStatus.INCONCLUSIVE
    failed_at: int | None = None
    more: int | None = None
    minutes: float | None = None
    held = shared = False
    if sequential_plan is not None:
        ml = metric_looks(sequential_plan, canary_t, baseline_t, prerun, alpha=alpha, beta=beta)
        codes = ml.codes
        fails = [k for k in look_list if codes[k - 1] == FAIL_CODE]
        failed_at = fails[0] if fails else None
        status = CODES_TO_STATUS[int(codes[last - 1])]
        held, shared = bool(ml.held[last - 1]), bool(ml.shared[last - 1])
        rate_per_minute = _rate_per_minute(canary_t, interval_seconds)
        checks = [
            _check_report(plan, ml, c, last, alpha, beta, rate_per_minute) for c in ml.checks
        ]
        if status is MetricStatus.INCONCLUSIVE:
            needed = [
                c.more_requests_needed
                for c in checks
                if c.outcome != Outcome.PASS and c.check != "trigger"
            ]
            if needed and all(x is not None for x in needed):
                more = max(x for x in needed if x is not None)
                if rate_per_minute:
                    minutes = more / rate_per_minute
    if plan.test == "mann-whitney" and plan.compare is not None:
        mw = _mann_whitney_check(plan, canary_t, baseline_t, last)
        checks.append(mw)
        if status is not MetricStatus.FAIL:
            if mw.outcome == Outcome.FAIL:
                status, failed_at = MetricStatus.FAIL, last
            elif mw.outcome == Outcome.PASS and (sequential_plan is None or status is MetricStatus.PASS):
                status = MetricStatus.PASS
            else:
                status = MetricStatus.INCONCLUSIVE
    canary_fig = _figures(plan, canary_t)
    baseline_fig = _figures(plan, baseline_t) if baseline_t is not None else {}
    if status is MetricStatus.FAIL:
        failing = [c for c in checks if c.outcome == Outcome.FAIL] or [
            max(checks, key=lambda c: float(c.statistic.get("eFail") or 0.0))
        ]
        reason = "; ".join(c.reason for c in failing)
        if failed_at is not None and failed_at != last:
            reason += f" (first shown at look {failed_at})"
    elif status is MetricStatus.PASS:
        reason = "; ".join(c.reason for c in checks)
    elif held:
        status = MetricStatus.INCONCLUSIVE
        breach = next(c.reason for c in checks if c.outcome == Outcome.HOLD)
        who = (
            "incident on both versions: the baseline is shown beyond the SLO too"
            if shared
            else "the canary alone: the baseline is within the SLO"
        )
        reason = f"hold: {breach} ({who}); the SLO is a promotion criterion, not a rollback trigger"
    else:
        reason = "; ".join(c.reason for c in checks if c.outcome != Outcome.PASS)
        if more is not None and minutes is not None:
            reason += f" (a pass needs about {more:,} more canary requests, ~{_minutes(minutes)} at the current rate)"
    return MetricReport(
        name=plan.name,
        kind=str(plan.kind),
        status=status,
        reason=reason,
        critical=plan.critical,
        weight=plan.weight,
        canary=canary_fig,
        baseline=baseline_fig,
        checks=checks,
        alpha=alpha,
        failed_at_look=failed_at if status is MetricStatus.FAIL else None,
        more_requests_needed=more,
        more_minutes_needed=None if minutes is None else round(minutes, 1),
        held=held and status is MetricStatus.INCONCLUSIVE,
        shared_incident=shared and held and status is MetricStatus.INCONCLUSIVE,
    )


def _minutes(m: float) -> str:
    return f"{m:.0f} min" if m >= 10 else f"{m:.1f} min"


def _check_report(
    plan: MetricPlan,
    ml: MetricLooks,
    c: CheckLooks,
    look: int,
    alpha: float,
    beta: float,
    rate_per_minute: float | None,
) -> CheckReport:
    i = look - 1
    e_fail = float(c.fail.log_e[i])
    e_pass = float(c.passes.log_e[i])
    fail_level = float(ml.fail_level) - math.log(c.weight)  # this check alone
    pass_level = float(ml.pass_level)
    if c.check == "slo":
        outcome = (
            Outcome.HOLD
            if e_fail >= float(ml.fail_level)
            else Outcome.PASS
            if e_pass >= pass_level
            else Outcome.INCONCLUSIVE
        )
    elif e_fail >= fail_level or (
        float(ml.log_e_fail[i]) >= float(ml.fail_level) and e_fail > 0
    ):
        outcome = Outcome.FAIL
    elif e_pass >= pass_level:
        outcome = Outcome.PASS
    else:
        outcome = Outcome.INCONCLUSIVE
    d = {k: (float(v[..., i]) if np.ndim(v) >= 1 else float(v)) for k, v in c.detail.items()}
    stat: dict[str, Any] = {
        "eFail": _e(e_fail),
        "failAt": _e(fail_level),
        "ePass": _e(e_pass),
        "passAt": _e(pass_level),
        "alpha": alpha * c.weight,
        "weight": c.weight,
        "beta": beta,
    }
    more: int | None = None
    if "missing" in d:
        return CheckReport(
            c.check, str(Outcome.INCONCLUSIVE), "the baseline has no series to compare with", _rounded(stat)
        )
    if c.check in ("slo", "trigger"):
        reason, more = _slo_reason(plan, c, d, outcome, pass_level, stat)
    else:
        reason, more = _compare_reason(plan, c, d, outcome, pass_level, stat)
    return CheckReport(c.check, str(outcome), reason, _rounded(stat), more)


def _slo_reason(
    plan: MetricPlan,
    c: CheckLooks,
    d: dict[str, float],
    outcome: Outcome,
    pass_level: float,
    stat: dict[str, Any],
) -> tuple[str, int | None]:
    if plan.kind.value == "ratio":
        max_rate = d["max"]
        noun = "failure rate" if plan.higher_is_better else "rate"
        what = f"canary {noun}"
        bound = max_rate
        total = d["canaryRequests"]
        rate = d["canaryBad"] / total if total > 0 else float("nan")
        stat.update({"max": max_rate, "rate": rate})
        limit = (
            f"the rollback trigger's {_pct(max_rate)}"
            if c.check == "trigger"
            else f"the SLO's {_pct(max_rate)}"
        )
    else:
        threshold, share = d["threshold"], d["maxSlowerShare"]
        what = f"share of canary requests slower than {_ms(threshold)}"
        bound = share
        total = d["canaryRequests"]
        rate = d["slowerPossible"] / total if total > 0 else float("nan")
        stat.update({"threshold": threshold, "maxSlowerShare": share, "slowerShare": rate})
        limit = f"the {_pct(share)} a p{plan.quantile * 100:g} {'rollback trigger' if c.check == 'trigger' else 'SLO'} allows"
    if outcome == Outcome.FAIL:
        return (
            f"{what} is shown above {limit} ({_evidence(stat['eFail'], stat['failAt'])}): roll back first",
            None,
        )
    if outcome == Outcome.HOLD:
        return f"{what} is shown above {limit} ({_evidence(stat['eFail'], stat['failAt'])})", None
    if outcome == Outcome.PASS:
        return f"{what} is shown within {limit} ({_evidence(stat['ePass'], stat['passAt'])})", None
    more = None
    if c.check == "slo" and rate == rate and rate < bound:  # a trigger's pass is not needed
        o = float(logit(bound))
        more = extra_requests_for(
            c.passes.last_log_lr, pass_level, lambda x: (x * rate, x, o), upward=False
        )
    text = f"{what} is {_pct(rate)} over {total:,.0f} requests, not yet shown on either side of {_pct(bound)}"
    if more is None and c.check == "slo":
        text += "; at the current rate more requests alone will not show it within"
    return text, more


def _compare_reason(
    plan: MetricPlan,
    c: CheckLooks,
    d: dict[str, float],
    outcome: Outcome,
    pass_level: float,
    stat: dict[str, Any],
) -> tuple[str, int | None]:
    assert plan.compare is not None
    kind = plan.kind.value
    if kind == "ratio":
        noun = "failure rate" if plan.higher_is_better else "rate"
    else:
        noun = f"share slower than {_ms(d['threshold'])}"
    ratio, r_fail, r_pass = d["ratio"], d["failAboveRatio"], d["passBelowRatio"]
    p_bar = d["prerunBaselineRate"]
    stat.update(
        {
            "canaryRate": d["canaryRate"],
            "baselineRate": d["baselineRate"],
            "ratio": ratio,
            "failAboveRatio": r_fail,
            "passBelowRatio": r_pass,
            "prerunBaselineRate": p_bar,
            "tolerance": plan.compare.tolerance,
            "promoteTolerance": plan.compare.promote_tolerance,
            "margin": plan.compare.margin,
        }
    )
    if kind != "ratio":
        stat["threshold"] = d["threshold"]
        stat["thresholdChosenAtLook"] = int(d["thresholdChosenAtLook"])
    basis = (
        f"baseline {_pct(p_bar)} before the run"
        if p_bar == p_bar
        else "the baseline's bound so far (little pre-run data)"
    )
    allowance = f"× {r_fail:.3g} of the baseline ({1 + plan.compare.tolerance:g} + margin {_pct(plan.compare.margin)} ÷ {basis})"
    figures = f"canary {noun} {_pct(d['canaryRate'])} vs baseline {_pct(d['baselineRate'])}, ratio {ratio:.3g}"
    if kind != "ratio" and d["canaryRequests"] <= 0:
        chosen = "no threshold yet: the baseline needs more requests to set one"
        return chosen, None
    if outcome == Outcome.FAIL:
        return f"{figures}: shown above the allowed {allowance} ({_evidence(stat['eFail'], stat['failAt'])})", None
    if outcome == Outcome.PASS:
        return f"{figures}: shown below × {r_pass:.3g} ({_evidence(stat['ePass'], stat['passAt'])})", None
    more = None
    n, m = d["canaryRequests"], d["baselineRequests"]
    p_c, p_b = d["canaryRate"], d["baselineRate"]
    if n > 0 and m > 0 and ratio == ratio and ratio < r_pass and p_b > 0:
        share = n / (n + m)
        o = float(logit(share)) + math.log(r_pass)
        more = extra_requests_for(
            c.passes.last_log_lr,
            pass_level,
            lambda x: (x * p_c, x * p_c + x * (m / n) * p_b, o),
            upward=False,
        )
    text = f"{figures}: not yet shown above × {r_fail:.3g} nor below × {r_pass:.3g}"
    if more is None:
        text += "; at the current rates more requests alone will not show it below"
    return text, more


def _evidence(value: float, level: float) -> str:
    """`e-value 37.2 ≥ 20`, with very large e-values shown as powers of ten."""
    shown = f"{value:.3g}" if value < 1e6 else f"10^{math.floor(math.log10(value))}"
    return f"e-value {shown} ≥ {level:.3g}"


def _e(log_e: float) -> float:
    if log_e == -math.inf:
        return 0.0
    return float(f"{math.exp(min(log_e, 700.0)):.4g}")


def _rate_per_minute(canary: Series, interval_seconds: float | None) -> float | None:
    if not interval_seconds:
        return None
    last = float(canary.total[-1]) if isinstance(canary, RatioSeries) else float(canary.counts[-1].sum())
    return last * 60.0 / interval_seconds if last > 0 else None


def _no_data(plan: MetricPlan, alpha: float, reason: str) -> MetricReport:
    return MetricReport(
        name=plan.name,
        kind=str(plan.kind),
        status=MetricStatus.NO_DATA,
        reason=reason,
        critical=plan.critical,
        weight=plan.weight,
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


def _head(series: Series, look: int) -> Series:
    if isinstance(series, RatioSeries):
        return RatioSeries(bad=series.bad[:look], total=series.total[:look])
    return HistogramSeries(bounds=series.bounds, counts=series.counts[:look])


def _total(series: Series) -> float:
    if isinstance(series, RatioSeries):
        return float(series.total.sum())
    return float(series.counts.sum())


def _figures(plan: MetricPlan, series: Series) -> dict[str, Any]:
    if isinstance(series, RatioSeries):
        bad, total = float(series.bad.sum()), float(series.total.sum())
        rate = bad / total if total > 0 else float("nan")
        shown = 1.0 - rate if plan.higher_is_better else rate
        return {"requests": round(total, 1), "bad": round(bad, 1), "rate": _round(shown)}
    counts = np.asarray(series.counts.sum(axis=0), dtype=np.float64)
    q = plan.quantile
    return {
        "requests": round(float(counts.sum()), 1),
        "quantile": q,
        "seconds": _round(quantile(q, series.bounds, counts)),
    }


def _round(x: float) -> float | None:
    return None if x != x or math.isinf(x) else float(f"{x:.6g}")


def _rounded(stat: dict[str, Any]) -> dict[str, Any]:
    return {k: (_round(v) if isinstance(v, float) else v) for k, v in stat.items()}


def _mann_whitney_check(
    plan: MetricPlan, canary: Series, baseline: Series | None, look: int
) -> CheckReport:
    if baseline is None:
        return CheckReport("compare", str(Outcome.INCONCLUSIVE), "the baseline has no series to compare with")
    if isinstance(canary, RatioSeries):
        assert isinstance(baseline, RatioSeries)
        return _mann_whitney(_per_interval_rates(canary), _per_interval_rates(baseline))
    assert isinstance(baseline, HistogramSeries)
    q = plan.quantile
    return _mann_whitney(_per_interval_quantiles(canary, q), _per_interval_quantiles(baseline, q))


def _per_interval_rates(s: RatioSeries) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(s.total > 0, s.bad / np.where(s.total > 0, s.total, 1.0), np.nan)
    return np.asarray(rates, dtype=np.float64)


def _per_interval_quantiles(series: HistogramSeries, q: float) -> np.ndarray:
    return np.array([quantile(q, series.bounds, row) for row in series.counts], dtype=np.float64)


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

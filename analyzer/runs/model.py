"""The run model: one canary's analysis across many looks, with its evidence kept.

A run is identified by (analysis, namespace, rollout, canary hash). The first look starts it;
each later look (a web-provider call, a controller tick) is judged on the data accumulated since
the run's start: one window from `started_at` to now, judged once (one cumulative query per
series). The checks are valid at every look at once, so looking often costs no extra false
aborts, and a metric that failed at any look stays failed for the run (the judge's
sticky-failure rule, `analyzer.judge.with_sticky_failures`).

This module is pure: a run's stored state and a fresh report in, the new state and the answer
out. The store (`analyzer.runs.store`) keeps the state, the run service
(`analyzer.runs.service`) fetches, locks and records looks.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from analyzer.analysis import Observations, judge_observations
from analyzer.clock import format_time
from analyzer.judge import with_sticky_failures
from analyzer.plan import AnalysisPlan
from analyzer.render import metric_json
from analyzer.verdicts import AnalysisReport, CheckReport, MetricReport, MetricStatus, Verdict
from metrics.source import Window

MIN_WINDOW = timedelta(seconds=1)
"""A look needs at least this much time since the run's start; before that it has no data."""


@dataclass(frozen=True)
class RunKey:
    """What identifies a run: one canary (pod template hash) of one rollout, for one analysis."""

    analysis: str
    namespace: str
    rollout: str
    canary_hash: str


@dataclass(frozen=True)
class Run:
    """A run's stored state.

    `params` are the placeholder values fixed at the first call (the selectors of a run never
    change, so its cumulative data stay comparable). `failed` holds the metrics that failed at
    some look (sticky), as plain dicts (`metric_to_dict`). `answer` is the last answer's
    `result` document.
    """

    id: str
    key: RunKey
    stable_hash: str
    params: dict[str, str]
    started_at: datetime
    created_at: datetime
    updated_at: datetime
    looks: int = 0
    verdict: str | None = None
    score: float | None = None
    reason: str = ""
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)
    answer: dict[str, Any] | None = None


@dataclass(frozen=True)
class Look:
    """The outcome of one look: the run's new state and the report that was answered."""

    run: Run
    report: AnalysisReport


def new_run(
    key: RunKey, *, stable_hash: str, params: dict[str, str], started_at: datetime, now: datetime
) -> Run:
    """A run that has not looked yet."""
    return Run(
        id=uuid.uuid4().hex[:16],
        key=key,
        stable_hash=stable_hash,
        params=dict(params),
        started_at=started_at,
        created_at=now,
        updated_at=now,
    )


def look_window(run: Run, now: datetime, interval: float) -> Window | None:
    """The window of a look at `now`: the run's whole intervals of the analysis' `interval`
    seconds since its start (the interval still running is left to the next look), or None
    before the first interval has ended.

    So a look judges the run interval by interval, exactly as `verdict analyze` judges the same
    window: a latency threshold set from the run's own baseline once it has enough requests
    (only the intervals after it are tested), the comparison conditioned on each interval (a
    change the weight ramp and a shared incident make in both versions' rates cannot bias it),
    and the baseline's rate known before each interval. Looked at all at once or look by look,
    a run gets the same thresholds and verdicts.
    """
    step = timedelta(seconds=interval)
    intervals = int((now - run.started_at) / step) if now > run.started_at else 0
    if intervals < 1:
        return None
    return Window(start=run.started_at, end=run.started_at + step * intervals, step=step)


def advance(plan: AnalysisPlan, run: Run, report: AnalysisReport | None, now: datetime) -> Look:
    """One more look: merge the fresh report with the run's sticky failures and count the look.

    `report` judges the data since the run's start (`analyzer.analysis.judge_observations` over
    `look_window`); None means the window is still too short to hold data.
    """
    look = run.looks + 1
    failed = {name: metric_from_dict(data) for name, data in run.failed.items()}
    fresh = report if report is not None else _no_data_yet(plan, run, now)
    merged = with_sticky_failures(plan.scoring, fresh, failed, look)
    merged = replace(merged, looks=look)
    state = replace(
        run,
        looks=look,
        updated_at=now,
        verdict=str(merged.verdict),
        score=merged.score,
        reason=merged.reason,
        failed={name: metric_to_dict(m) for name, m in failed.items()},
    )
    state = replace(state, answer=answer_json(state, merged))
    return Look(run=state, report=merged)


def answer_json(run: Run, report: AnalysisReport) -> dict[str, Any]:
    """The `result` document of an answer: small, since Argo stores it in every measurement."""
    return {
        "verdict": str(report.verdict),
        "score": report.score,
        "reason": report.reason,
        "metrics": [metric_json(m, compact=True) for m in report.metrics],
        "run": {"id": run.id, "startedAt": format_time(run.started_at), "looks": run.looks},
    }


def run_json(run: Run, *, full: bool) -> dict[str, Any]:
    """A run as the API and `verdict runs` show it."""
    out: dict[str, Any] = {
        "id": run.id,
        "analysis": run.key.analysis,
        "namespace": run.key.namespace,
        "rollout": run.key.rollout,
        "canaryHash": run.key.canary_hash,
        "stableHash": run.stable_hash,
        "startedAt": format_time(run.started_at),
        "updatedAt": format_time(run.updated_at),
        "looks": run.looks,
        "verdict": run.verdict,
        "score": run.score,
    }
    if full:
        out["createdAt"] = format_time(run.created_at)
        out["reason"] = run.reason
        out["params"] = run.params
        out["failedMetrics"] = {
            name: {"failedAtLook": m.get("failed_at_look"), "reason": m.get("reason")}
            for name, m in run.failed.items()
        }
        out["lastAnswer"] = run.answer
    return out


def metric_to_dict(metric: MetricReport) -> dict[str, Any]:
    """A metric report as plain JSON-able data (for the store)."""
    return asdict(metric)


def metric_from_dict(data: dict[str, Any]) -> MetricReport:
    """The inverse of `metric_to_dict`."""
    values = dict(data)
    values["status"] = MetricStatus(values["status"])
    values["checks"] = [CheckReport(**c) for c in values.get("checks", [])]
    return MetricReport(**values)


def _no_data_yet(plan: AnalysisPlan, run: Run, now: datetime) -> AnalysisReport:
    """The answer of a look before the run has any data: every metric without data (judged by
    the analysis itself, so each metric keeps its own share of alpha), inconclusive."""
    reason = "the run has just started: no data yet"
    empty = Observations(
        window=Window(start=run.started_at, end=run.started_at + MIN_WINDOW, step=MIN_WINDOW),
        series={m.name: (None, None) for m in plan.metrics},
    )
    judged = judge_observations(plan, empty, params=run.params)
    metrics = [replace(m, reason=f"{m.name}: {reason}") for m in judged.metrics]
    return replace(
        judged,
        verdict=Verdict.INCONCLUSIVE,
        reason=(
            f"Run started at {format_time(run.started_at)}: no data yet; "
            "the next call looks at the traffic since then."
        ),
        metrics=metrics,
        start=run.started_at,
        end=max(now, run.started_at),
        interval_seconds=plan.interval,
        looks=0,
    )

"""The canary loop: move traffic step by step, look every interval, promote, abort or pause.

Rules:
* At each step the router sets the canary weight; the analysis then looks once per interval on
  all data since the canary started (evidence accumulates across steps).
* Any failing metric aborts at once, mid-step (the false-abort budget covers every metric, so a
  failure is evidence; `critical` only gives a metric a larger share of the budget). A metric
  that failed at any look stays failed (the evidence is valid at every look).
* At the end of a step the canary goes to the next step (a pass is not needed to move on: the
  failure check guards every look).
* At the last analysed step the canary is promoted (weight 100) only on a pass. If it is still
  inconclusive, the loop keeps looking up to `extra_looks` more intervals, then stops **paused**,
  with the canary back at the first step's weight so that little traffic is at risk while a
  person decides: no evidence is never a promotion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import structlog

from analyzer.analysis import AnalysisReport, run_analysis
from analyzer.clock import Clock
from analyzer.judge import with_sticky_failures
from analyzer.spec import AnalysisSpec
from analyzer.verdicts import MetricReport, Verdict
from metrics.source import MetricSource, Window
from strategies.router import TrafficRouter


@dataclass(frozen=True)
class Look:
    step: int
    weight: int
    look: int
    time: datetime
    report: AnalysisReport


@dataclass
class CanaryResult:
    decision: str  # promoted | aborted | paused
    reason: str
    final: AnalysisReport | None
    looks: list[Look] = field(default_factory=list)
    steps: list[dict[str, object]] = field(default_factory=list)


def run_canary(
    spec: AnalysisSpec,
    source: MetricSource,
    router: TrafficRouter,
    clock: Clock,
    *,
    looks_per_step: int = 6,
    extra_looks: int = 40,
    params: dict[str, str] | None = None,
    on_look: Callable[[Look], None] | None = None,
) -> CanaryResult:
    log = structlog.get_logger().bind(analysis=spec.name)
    step_delta = timedelta(seconds=spec.interval)
    start = clock.now()
    failed: dict[str, MetricReport] = {}
    result = CanaryResult(decision="paused", reason="", final=None)
    analysed = [w for w in spec.steps if w < 100]
    look_index = 0

    def look(step_no: int, weight: int) -> AnalysisReport:
        nonlocal look_index
        clock.sleep(spec.interval)
        look_index += 1
        now = clock.now()
        window = Window(start=start, end=start + step_delta * look_index, step=step_delta)
        report = run_analysis(spec, source, window, params=params, looks=[window.intervals])
        report = replace(with_sticky_failures(spec, report, failed, look_index), looks=look_index)
        entry = Look(step=step_no, weight=weight, look=look_index, time=now, report=report)
        result.looks.append(entry)
        if on_look is not None:
            on_look(entry)
        return report

    for step_no, weight in enumerate(analysed, start=1):
        router.set_weight(weight)
        log.info("canary weight set", weight=weight, step=step_no)
        last_step = step_no == len(analysed)
        budget = looks_per_step + (extra_looks if last_step else 0)
        report: AnalysisReport | None = None
        for k in range(budget):
            report = look(step_no, weight)
            if report.verdict is Verdict.FAIL:
                return _abort(router, result, report, step_no, weight, log)
            if k + 1 >= looks_per_step and (
                report.verdict is not Verdict.INCONCLUSIVE or not last_step
            ):
                break
        assert report is not None
        result.steps.append(
            {
                "step": step_no,
                "weight": weight,
                "verdict": str(report.verdict),
                "score": report.score,
                "looks": look_index,
            }
        )
        result.final = report
    final = result.final
    if final is not None and final.verdict is Verdict.PASS:
        router.set_weight(100)
        result.decision = "promoted"
        result.reason = f"Promoted to 100 %: {final.reason}"
        log.info("canary promoted", score=final.score)
    else:
        result.decision = "paused"
        if analysed:
            router.set_weight(analysed[0])
        back = f" (canary back at {analysed[0]} %)" if analysed else ""
        result.reason = (
            (f"Paused for a person to decide{back}: " + final.reason)
            if final
            else "Paused: no steps to analyse."
        )
        log.warning("canary paused", reason=result.reason)
    return result


def _abort(
    router: TrafficRouter,
    result: CanaryResult,
    report: AnalysisReport,
    step: int,
    weight: int,
    log: structlog.typing.FilteringBoundLogger,
) -> CanaryResult:
    router.set_weight(0)
    result.steps.append(
        {
            "step": step,
            "weight": weight,
            "verdict": str(report.verdict),
            "score": report.score,
            "looks": len(result.looks),
        }
    )
    result.decision = "aborted"
    result.final = report
    result.reason = f"Aborted at {weight} % canary weight: {report.reason}"
    log.warning("canary aborted", weight=weight, reason=report.reason)
    return result

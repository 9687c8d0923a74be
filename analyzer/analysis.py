"""One analysis: fetch both versions of every metric, judge every look, return one report.

This is the entry point the CLI, the demo, the web provider and the benchmarks share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog

from analyzer.checks import evaluate_metric
from analyzer.judge import judge
from analyzer.spec import AnalysisSpec
from analyzer.verdicts import MetricReport, Verdict
from metrics.promql import selector
from metrics.source import MetricSource, Series, Version, Window


@dataclass(frozen=True)
class AnalysisReport:
    name: str
    verdict: Verdict
    score: float
    reason: str
    metrics: list[MetricReport]
    start: datetime
    end: datetime
    interval_seconds: float
    looks: int
    alpha: float


@dataclass(frozen=True)
class Observations:
    """Both versions of every metric over one window, as fetched from a source."""

    window: Window
    series: dict[str, tuple[Series | None, Series | None]]


def fetch_observations(
    spec: AnalysisSpec, source: MetricSource, window: Window, params: dict[str, str] | None = None
) -> Observations:
    canary_matchers, baseline_matchers = spec.matchers(params)
    out: dict[str, tuple[Series | None, Series | None]] = {}
    for metric in spec.metrics:
        query = metric.metric_query
        canary = source.fetch(query, Version.CANARY, canary_matchers, window)
        baseline = source.fetch(query, Version.BASELINE, baseline_matchers, window)
        out[metric.name] = (canary, baseline)
    return Observations(window=window, series=out)


def judge_observations(
    spec: AnalysisSpec,
    observations: Observations,
    *,
    looks: Sequence[int] | None = None,
    params: dict[str, str] | None = None,
) -> AnalysisReport:
    """Judge already-fetched observations (pure). `looks`: 1-based interval counts; default all."""
    window = observations.window
    alpha_metric = spec.alpha / len(spec.metrics)
    canary_matchers, _ = spec.matchers(params)
    where = f" matching {{{selector(canary_matchers)}}}"
    reports = []
    for metric in spec.metrics:
        canary, baseline = observations.series[metric.name]
        reports.append(
            evaluate_metric(
                metric, canary, baseline, alpha=alpha_metric, looks=looks, canary_selector=where
            )
        )
    verdict = judge(reports, spec.scoring)
    look_count = len(looks) if looks is not None else window.intervals
    return AnalysisReport(
        name=spec.name,
        verdict=verdict.verdict,
        score=verdict.score,
        reason=verdict.reason,
        metrics=reports,
        start=window.start,
        end=window.end,
        interval_seconds=window.step.total_seconds(),
        looks=look_count,
        alpha=spec.alpha,
    )


def run_analysis(
    spec: AnalysisSpec,
    source: MetricSource,
    window: Window,
    *,
    params: dict[str, str] | None = None,
    looks: Sequence[int] | None = None,
) -> AnalysisReport:
    """Fetch and judge. Raises `metrics.errors.SourceUnavailable` when the source cannot answer."""
    log = structlog.get_logger().bind(analysis=spec.name)
    observations = fetch_observations(spec, source, window, params)
    report = judge_observations(spec, observations, looks=looks, params=params)
    log.info("analysis judged", verdict=str(report.verdict), score=report.score, looks=report.looks)
    return report

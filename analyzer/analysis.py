"""One analysis: fetch both versions of every metric, judge every look, return one report.

This is the entry point the CLI, the demo, the web provider and the benchmarks share.
"""

from __future__ import annotations

import contextvars
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import timedelta

import structlog

from analyzer.checks import evaluate_metric
from analyzer.judge import judge
from analyzer.plan import AnalysisPlan
from analyzer.verdicts import AnalysisReport, MetricReport, MetricStatus
from metrics.errors import PartMissing
from metrics.promql import selector
from metrics.source import (
    Fetch,
    MetricKind,
    MetricSource,
    QuickToAnswer,
    ReadsAhead,
    Series,
    Version,
    Window,
)
from metrics.stall import quiet_canary

# metrics fetched at once (each ratio also reads its two counters side by side, and a read
# asks for its next page while it counts the current one). Three: an analysis' six window
# fetches take two rounds, as with four, while on a fast, near Prometheus the threads' turns at
# the interpreter cost more than the overlap gains (whole `verdict analyze` processes of a small
# service, paired: 3 and 2 take 9-10 ms less than 4; at 1,000 pods a version, 1, 2 and 4 take
# the same time). A distant Prometheus is bound by round trips, which 3 keeps in flight.
_PARALLEL_FETCHES = 3
_PRERUN = "prerun"


@dataclass(frozen=True)
class Observations:
    """Both versions of every metric over one window, as fetched from a source."""

    window: Window
    series: dict[str, tuple[Series | None, Series | None]]
    # the baseline in the window before the run (one interval), for metrics with a comparison
    prerun: dict[str, Series | None] = field(default_factory=dict)
    # (metric, canary / baseline) -> why its series is None although the version has traffic
    # (`metrics.errors.PartMissing`: a ratio's part lost its answer): no data, never zero
    missing: dict[tuple[str, str], str] = field(default_factory=dict)


def prerun_window(plan: AnalysisPlan, window: Window) -> Window | None:
    """The pre-run baseline window (`preRunWindow` before the run's start), or None when off."""
    if plan.pre_run_window <= 0:
        return None
    length = timedelta(seconds=plan.pre_run_window)
    return Window(start=window.start - length, end=window.start, step=length)


def fetch_observations(
    plan: AnalysisPlan,
    source: MetricSource,
    window: Window,
    params: dict[str, str] | None = None,
    *,
    on_metric: Callable[[str, Observations], None] | None = None,
) -> Observations:
    """Every metric of both versions, fetched a few at a time (the source must be thread-safe).

    The first error raised by the source is raised at once; fetches not yet started are dropped,
    except `PartMissing` (a ratio's part lost its answer), which makes that fetch "no data" with
    its reason (`Observations.missing`).
    `on_metric(name, so_far)` is called in this thread as soon as all of a metric's fetches are
    in (`so_far` holds them), while the other metrics are still being fetched.
    """
    tasks = _tasks(plan, window, params)
    pool = ThreadPoolExecutor(max_workers=_PARALLEL_FETCHES)
    # a source that answers quickly is read one fetch after another in this thread (threads
    # would cost more than they overlap); as soon as it is not quick, the rest go to threads
    quick = source.answers_quickly if isinstance(source, QuickToAnswer) else (lambda: False)

    def submit(fetch: Fetch) -> Future[Series | PartMissing | None]:
        # each task runs in a copy of this context: log lines keep their bound run id
        return pool.submit(contextvars.copy_context().run, _fetch, source, fetch)

    waiting = Counter(name for name, _, _ in tasks)  # fetches not in yet, by metric
    fetched: dict[tuple[str, str], Series | None] = {}
    missing: dict[tuple[str, str], str] = {}

    def record(i: int, result: Series | PartMissing | None) -> None:
        name, role, _ = tasks[i]
        if isinstance(result, PartMissing):
            missing[(name, role)] = f"the {role}'s {result}"
            result = None
        fetched[(name, role)] = result
        waiting[name] -= 1
        if on_metric is not None and waiting[name] == 0:
            on_metric(name, _observations(plan, window, fetched, missing, only=name))

    try:
        # The pre-run rates (a look of instant queries each) start first, beside the
        # read-ahead: queued behind the window's reads, they were the last thing waited for.
        prerun = [i for i, (_, role, _) in enumerate(tasks) if role == _PRERUN]
        futures = {} if quick() else {i: submit(tasks[i][2]) for i in prerun}
        if isinstance(source, ReadsAhead):
            source.read_ahead([f for _, role, f in tasks if role != _PRERUN])
        window_fetches = [i for i, (_, role, _) in enumerate(tasks) if role != _PRERUN]
        if not quick():
            # histograms first: a bucket read is the longest (many series, decoded and
            # counted), and one that waits for a free thread is what the whole analysis ends
            # up waiting for. (One after another, the file's order: a ratio's counter read
            # first takes the check of the source's first raw read, a cheaper query than a
            # histogram's.)
            window_fetches.sort(key=lambda i: tasks[i][2].query.kind is not MetricKind.HISTOGRAM)
        for i in [i for i in prerun if i not in futures] + window_fetches:
            if futures or not quick():
                futures[i] = submit(tasks[i][2])
            else:
                record(i, _fetch(source, tasks[i][2]))
        task_of = {future: i for i, future in futures.items()}
        for done in as_completed(task_of):
            # raise the first failure now, not after the slowest fetch
            record(task_of[done], done.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return _observations(plan, window, fetched, missing)


def look_fetches(
    plan: AnalysisPlan, window: Window, params: dict[str, str] | None = None
) -> list[Fetch]:
    """Every fetch `fetch_observations` makes for `window`: both versions of every metric,
    then the pre-run baseline of the metrics that read it."""
    return [fetch for _, _, fetch in _tasks(plan, window, params)]


def _tasks(
    plan: AnalysisPlan, window: Window, params: dict[str, str] | None
) -> list[tuple[str, str, Fetch]]:
    """(metric, canary / baseline / the pre-run baseline, the fetch) of every fetch."""
    canary_matchers, baseline_matchers = plan.matchers(params)
    tasks: list[tuple[str, str, Fetch]] = [
        (metric.name, str(version), Fetch(metric.query, version, matchers, window))
        for metric in plan.metrics
        for version, matchers in (
            (Version.CANARY, canary_matchers),
            (Version.BASELINE, baseline_matchers),
        )
    ]
    before = prerun_window(plan, window)
    if before is not None:
        tasks += [
            (
                metric.name,
                _PRERUN,
                Fetch(metric.query, Version.BASELINE, baseline_matchers, before),
            )
            for metric in plan.metrics
            if metric.reads_prerun
        ]
    return tasks


def _fetch(source: MetricSource, fetch: Fetch) -> Series | PartMissing | None:
    """One fetch; a ratio's part that lost its answer is returned, not raised."""
    try:
        return source.fetch(fetch.query, fetch.version, fetch.matchers, fetch.window)
    except PartMissing as missing:
        structlog.get_logger().warning(
            "a ratio's part answered nothing while its total has requests; no data",
            metric=fetch.query.name,
            version=str(fetch.version),
            error=str(missing),
        )
        return missing


def _observations(
    plan: AnalysisPlan,
    window: Window,
    fetched: dict[tuple[str, str], Series | None],
    missing: dict[tuple[str, str], str],
    only: str | None = None,
) -> Observations:
    """The fetched series as observations (of the metric `only`, when given)."""
    names = [m.name for m in plan.metrics if only is None or m.name == only]
    series = {
        name: (fetched[(name, str(Version.CANARY))], fetched[(name, str(Version.BASELINE))])
        for name in names
    }
    prerun = {
        name: result
        for (name, role), result in fetched.items()
        if role == _PRERUN and name in series
    }
    gaps = {key: why for key, why in missing.items() if key[1] != _PRERUN and key[0] in series}
    return Observations(window=window, series=series, prerun=prerun, missing=gaps)


def judge_observations(
    plan: AnalysisPlan,
    observations: Observations,
    *,
    looks: Sequence[int] | None = None,
    params: dict[str, str] | None = None,
) -> AnalysisReport:
    """Judge already-fetched observations (pure). `looks`: 1-based interval counts; default all."""
    judge_metric = _metric_judge(plan, observations.window, looks, params)
    reports = {m.name: judge_metric(m.name, observations) for m in plan.metrics}
    return _analysis_report(plan, observations.window, reports, looks)


def _metric_judge(
    plan: AnalysisPlan,
    window: Window,
    looks: Sequence[int] | None,
    params: dict[str, str] | None,
) -> Callable[[str, Observations], MetricReport]:
    """The judge of one metric of `plan`, given observations that hold it (each metric is
    judged alone: `run_analysis` judges one while the others are still being fetched)."""
    canary_matchers, _ = plan.matchers(params)
    where = f" matching {{{selector(canary_matchers)}}}"
    metrics = {m.name: m for m in plan.metrics}

    def judge_metric(name: str, observations: Observations) -> MetricReport:
        metric = metrics[name]
        canary, baseline = observations.series[name]
        report = evaluate_metric(
            metric,
            canary,
            baseline,
            alpha=metric.alpha,
            beta=metric.beta,
            prerun=observations.prerun.get(name),
            looks=looks,
            interval_seconds=window.step.total_seconds(),
            canary_selector=where,
        )
        gaps = [
            observations.missing[(name, str(version))]
            for version in Version
            if (name, str(version)) in observations.missing
        ]
        if gaps:
            return _as_no_data(report, f"{name}: {'; '.join(gaps)}")
        quiet = quiet_canary(canary, baseline, max(looks) if looks else window.intervals)
        if quiet is not None:
            return _as_no_data(report, quiet.reason(name))
        return report

    return judge_metric


def _as_no_data(report: MetricReport, reason: str) -> MetricReport:
    """`report` as "no data" for `reason` (missing or frozen data), unless it failed: a failure
    shown by the data there is stands, and no data is never a pass."""
    if report.status is MetricStatus.FAIL:
        return report
    return replace(report, status=MetricStatus.NO_DATA, reason=reason)


def _analysis_report(
    plan: AnalysisPlan,
    window: Window,
    reports: dict[str, MetricReport],
    looks: Sequence[int] | None,
) -> AnalysisReport:
    """The metrics' reports (in the file's order) combined into the analysis' verdict."""
    ordered = [reports[m.name] for m in plan.metrics]
    verdict = judge(ordered, plan.scoring)
    look_count = len(looks) if looks is not None else window.intervals
    return AnalysisReport(
        name=plan.name,
        verdict=verdict.verdict,
        score=verdict.score,
        reason=verdict.reason,
        metrics=ordered,
        start=window.start,
        end=window.end,
        interval_seconds=window.step.total_seconds(),
        looks=look_count,
        alpha=plan.alpha,
        beta=plan.beta,
    )


def run_analysis(
    plan: AnalysisPlan,
    source: MetricSource,
    window: Window,
    *,
    params: dict[str, str] | None = None,
    looks: Sequence[int] | None = None,
) -> AnalysisReport:
    """Fetch and judge. Raises `metrics.errors.SourceUnavailable` when the source cannot answer."""
    log = structlog.get_logger().bind(analysis=plan.name)
    judge_metric = _metric_judge(plan, window, looks, params)
    reports: dict[str, MetricReport] = {}

    def judge_now(name: str, fetched: Observations) -> None:
        # judged while the other metrics are still being fetched (the same judge as
        # `judge_observations`, one metric at a time)
        reports[name] = judge_metric(name, fetched)

    fetch_observations(plan, source, window, params, on_metric=judge_now)
    report = _analysis_report(plan, window, reports, looks)
    log.info("analysis judged", verdict=str(report.verdict), score=report.score, looks=report.looks)
    return report

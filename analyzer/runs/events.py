"""Where a run's events go: its history in the run store (reports are read from it) and the
notifier (Grafana annotations, webhooks, Slack). Every way in records its runs through a
`RunJournal`: the run service for the web provider and the controller, the canary loops through
`strategies.events`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from analyzer.notify import EventKind, Notifier, RunEvent, RunInfo, event_json, figures_of
from analyzer.render import metric_json
from analyzer.runs.store import RunStore, StoreUnavailable
from analyzer.verdicts import AnalysisReport

_log = structlog.get_logger()


class RunJournal:
    """Records events: appended to the run's history in the store, then handed to the notifier.

    Neither ever fails the run: a store that cannot take the event is logged (the run's own
    state is written by its way in), and the notifier only queues.
    """

    def __init__(self, store: RunStore | None, notifier: Notifier) -> None:
        self.store = store
        self.notifier = notifier

    def record(self, event: RunEvent) -> None:
        if self.store is not None:
            try:
                self.store.add_event(event.run.id, str(event.kind), event_json(event))
            except StoreUnavailable as error:
                _log.warning(
                    "run event not stored", run=event.run.id, kind=str(event.kind), error=str(error)
                )
        self.notifier.post(event)


def look_event(
    run: RunInfo,
    report: AnalysisReport,
    *,
    time: datetime,
    look: int,
    step: int | None = None,
    weight: int | None = None,
) -> RunEvent:
    """A look: the analysis verdict and every metric's full document (figures, checks, bounds)."""
    metrics = tuple(metric_json(m) for m in report.metrics)
    return RunEvent(
        EventKind.LOOK,
        run,
        time,
        step=step,
        weight=weight,
        look=look,
        verdict=str(report.verdict),
        reason=report.reason,
        score=report.score,
        figures=figures_of(metrics),
        metrics=metrics,
        extra={"window": {"start": _iso(report.start), "end": _iso(report.end)}},
    )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

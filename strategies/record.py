"""A standalone run in the run store: one look at a time, with the strategy's progress.

Blue/green and rolling keep their run as the canary does: the run core's run (one window from
the run's start, sticky failures) with the strategy's progress in the last answer under
`rollout`, written in the same store update as each look.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from analyzer.analysis import fetch_observations, judge_observations
from analyzer.clock import Clock, format_time
from analyzer.notify import EventKind, NopNotifier, Notifier, RunEvent, RunInfo, figures_of
from analyzer.render import metric_json
from analyzer.runs.events import RunJournal
from analyzer.runs.model import Look as RunLook
from analyzer.runs.model import Run, RunKey, advance, look_window, new_run
from analyzer.runs.requests import with_stored_request
from analyzer.runs.store import RunStore
from analyzer.spec import AnalysisSpec, SpecError, plan_analysis
from analyzer.verdicts import AnalysisReport
from metrics.source import MetricSource

RUNNING, INTERRUPTED = "running", "interrupted"
PROMOTED, ABORTED, PAUSED = "promoted", "aborted", "paused"


@dataclass(frozen=True)
class Look:
    """One look of a canary loop: the step and weight it was taken at, and its report."""

    step: int
    weight: int
    look: int
    time: datetime
    report: AnalysisReport
    health: tuple[dict[str, Any], ...] = ()
    """What the health gate saw at this look (`strategies.health.Finding.as_json`)."""


@dataclass
class CanaryResult:
    """A canary loop's decision as the demo, the events and the notifiers see it."""

    decision: str  # promoted | aborted | paused
    reason: str
    final: AnalysisReport | None
    looks: list[Look] = field(default_factory=list)
    steps: list[dict[str, object]] = field(default_factory=list)
    outcome: str | None = None
    """The decision's outcome when it says more than `decision`: the health gate's kind
    (`image-pull`, `readiness`, ...) for a rollback the gate made."""
    extra: dict[str, Any] = field(default_factory=dict)
    """More of the decision for its event (`health`: the findings that decided it)."""


@dataclass
class Outcome:
    """How a standalone rollout ended (what `verdict canary run` prints)."""

    decision: str  # promoted | aborted | paused | interrupted
    reason: str
    run_id: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    final: AnalysisReport | None = None
    resumed_at_step: int | None = None
    rollback: dict[str, Any] | None = None
    """After a rollback: its check (`strategies.recovery.RollbackCheck.as_json`)."""


class Recorder:
    def __init__(
        self,
        spec: AnalysisSpec,
        store: RunStore,
        source: MetricSource,
        clock: Clock,
        *,
        notifier: Notifier | None = None,
        way: str = "",
    ) -> None:
        self.spec = spec
        self.plan = plan_analysis(spec)
        self.notifier = notifier or NopNotifier()
        """Who hears the run's decision (the analysis file's notifications and Grafana)."""
        self.way = way
        self.store = store
        self.source = source
        self.clock = clock
        self.run: Run | None = None
        self.progress: dict[str, Any] = {}
        self.final: AnalysisReport | None = None

    def start(
        self, key: RunKey, params: dict[str, str], started_at: datetime, progress: dict[str, Any]
    ) -> Run:
        missing = sorted(self.spec.placeholders() - params.keys())
        if missing:
            raise SpecError(
                f"the matchers use {', '.join(missing)}; this strategy fills "
                f"{', '.join(sorted(params))}"
            )
        now = self.clock.now()
        run = self.store.start(
            new_run(
                key,
                stable_hash=params.get("stableHash", ""),
                params=params,
                started_at=started_at,
                now=now,
            )
        )
        self.run = run
        self.progress = progress
        self.save()
        return run

    def save(
        self,
        look: tuple[AnalysisReport | None, datetime] | None = None,
        *,
        started_at: datetime | None = None,
    ) -> RunLook | None:
        """Write the progress (and a look's result) into the stored run; `started_at` moves
        the run's analysis start (blue/green: a run opened before the switch, for what the
        health gate said then, judges green from the switch on)."""
        assert self.run is not None
        outcome: list[RunLook] = []

        def change(current: Run) -> Run:
            if started_at is not None:
                current = replace(current, started_at=started_at)
            stored = current
            if look is not None:
                done = advance(self.plan, current, look[0], look[1])
                outcome.append(done)
                current = done.run
            answer = dict(current.answer or {})
            # a person's request written since the last read is kept (`analyzer.runs.requests`)
            answer["rollout"] = with_stored_request(self.progress, stored)
            return replace(current, answer=answer)

        self.run = self.store.update(self.run.id, change)
        return outcome[-1] if outcome else None

    @property
    def run_id(self) -> str:
        assert self.run is not None, "the run has not started"
        return self.run.id

    @property
    def looks(self) -> int:
        return self.run.looks if self.run is not None else 0

    def look(self) -> AnalysisReport:
        assert self.run is not None
        now = self.clock.now()
        window = look_window(self.run, now, self.plan.interval)
        report = None
        if window is not None:
            params = self.run.params
            observations = fetch_observations(self.plan, self.source, window, params)
            report = judge_observations(
                self.plan, observations, looks=[window.intervals], params=params
            )
        done = self.save((report, now))
        assert done is not None
        self.final = done.report
        return done.report

    @property
    def info(self) -> RunInfo:
        """Which run the events are of (`RunEvent.run`)."""
        assert self.run is not None, "the run has not started"
        key = self.run.key
        return RunInfo(self.run.id, key.analysis, key.namespace, key.rollout, self.way)

    def record(self, event: RunEvent) -> None:
        """Keep `event` in the run's history and tell the notifiers (never raises: the
        decision stands whatever the journal does)."""
        try:
            RunJournal(self.store, self.notifier).record(event)
        except Exception as error:
            structlog.get_logger().error("the decision could not be recorded", error=str(error))

    def note(self, outcome: str, reason: str, *, extra: Mapping[str, Any]) -> RunEvent | None:
        """Record and tell a decision that does not end the run (the health gate holding it):
        as `strategies.events.CanaryRecorder.note` does for the canary. None before the run."""
        if self.run is None:
            return None
        event = RunEvent(EventKind.DECISION, self.info, self.clock.now(), outcome=outcome,
                         reason=reason, extra=dict(extra))  # fmt: skip
        self.record(event)
        return event

    def _notify(
        self,
        decision: str,
        reason: str,
        verdict: str,
        *,
        outcome: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if self.run is None:
            return
        metrics = tuple(metric_json(m) for m in self.final.metrics) if self.final else ()
        event = RunEvent(
            EventKind.DECISION,
            self.info,
            self.clock.now(),
            verdict=verdict,
            outcome=outcome or decision,
            reason=reason,
            score=self.final.score if self.final is not None else None,
            figures=figures_of(metrics),
            extra=dict(extra or {}),
        )
        self.record(event)

    def finish(
        self,
        decision: str,
        reason: str,
        verdict: str,
        *,
        outcome: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Close the open step with `verdict`, record the decision, and return the outcome.
        `outcome`: the decision's outcome when it says more than `decision` (the health gate's
        kind, as the canary's); `extra`: more of it for its event (`health`, `manual`)."""
        p = self.progress
        steps = p.setdefault("steps", [])
        if steps and steps[-1].get("end") is None:
            steps[-1].update(end=format_time(self.clock.now()), verdict=verdict)
        p.update(state=decision, reason=reason)
        try:
            self.save()
        finally:  # told even when the store cannot take it (a side part: never the outcome)
            self._notify(decision, reason, verdict, outcome=outcome, extra=extra)
        return Outcome(
            decision=decision,
            reason=reason,
            run_id=self.run.id if self.run else None,
            steps=list(steps),
            final=self.final,
        )

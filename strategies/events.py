"""The canary loop's run as events (`analyzer.runs.events`): steps, looks, the decision.

`CanaryRecorder` turns the canary loop's moves into events: the loop tells it each weight it
writes (`weight_set`: a weight between 0 and 100 % opens a step, 0 or 100 % closes it) and each
look (`on_look`), and it records the decision when the loop ends (`finish`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog

from analyzer.notify import EventKind, RunEvent, RunInfo, figures_of
from analyzer.render import metric_json
from analyzer.runs.events import RunJournal, look_event
from analyzer.runs.model import Run
from analyzer.runs.requests import ActionRequest
from analyzer.runs.store import RunNotFound, RunStore, StoreUnavailable
from strategies.record import CanaryResult, Look

_log = structlog.get_logger()

DECISION_OUTCOMES = {"promoted": "promoted", "aborted": "aborted", "paused": "paused"}


@dataclass
class _Step:
    number: int
    weight: int
    started: datetime
    verdict: str | None = None
    look: int | None = None


class CanaryRecorder:
    """Records a canary loop's run (see the module docstring)."""

    def __init__(self, journal: RunJournal, run: RunInfo, clock: Callable[[], datetime]) -> None:
        self.journal = journal
        self.run = run
        self._clock = clock
        self._step: _Step | None = None
        self._steps = 0
        self._last: Look | None = None

    def on_look(self, look: Look) -> None:
        self._last = look
        if self._step is not None:
            self._step.verdict = str(look.report.verdict)
            self._step.look = look.look
        event = look_event(
            self.run,
            look.report,
            time=look.time,
            look=look.look,
            step=look.step,
            weight=look.weight,
        )
        if look.health:  # the health gate's findings next to the metric verdicts
            event = replace(event, extra={**event.extra, "health": list(look.health)})
        self.journal.record(event)

    def weight_set(self, weight: int) -> None:
        now = self._clock()
        self._end_step(now)
        if 0 < weight < 100:
            self._steps += 1
            self._step = _Step(self._steps, weight, now)
            self.journal.record(
                RunEvent(EventKind.STARTED, self.run, now, step=self._steps, weight=weight)
            )

    def finish(self, result: CanaryResult, *, manual: ActionRequest | None = None) -> RunEvent:
        """Record the loop's decision (and close a step still open); returns the decision.
        `manual`: the person's request that decided it (kept in the event's `extra.manual`)."""
        now = self._clock()
        last = self._last
        final = result.final
        self._end_step(now)
        metrics = tuple(metric_json(m) for m in final.metrics) if final is not None else ()
        decision = RunEvent(
            EventKind.DECISION,
            self.run,
            now,
            step=last.step if last else None,
            weight=last.weight if last else None,
            look=last.look if last else None,
            verdict=str(final.verdict) if final is not None else None,
            outcome=result.outcome or DECISION_OUTCOMES.get(result.decision, result.decision),
            reason=result.reason,
            score=final.score if final is not None else None,
            figures=figures_of(metrics),
            extra={**result.extra, **({"manual": manual.as_dict()} if manual is not None else {})},
        )
        self.journal.record(decision)
        return decision

    def note(
        self,
        outcome: str,
        reason: str,
        *,
        step: int | None,
        weight: int | None,
        extra: Mapping[str, Any],
    ) -> RunEvent:
        """Record a decision that does not end the loop (the health gate holding it), or that
        follows its end (the rollback's check); returns it."""
        event = RunEvent(EventKind.DECISION, self.run, self._clock(), step=step, weight=weight,
                         outcome=outcome, reason=reason, extra=dict(extra))  # fmt: skip
        self.journal.record(event)
        return event

    def _end_step(self, now: datetime) -> None:
        step, self._step = self._step, None
        if step is None:
            return
        self.journal.record(
            RunEvent(
                EventKind.ENDED,
                self.run,
                now,
                step=step.number,
                weight=step.weight,
                verdict=step.verdict,
                look=step.look,
                started=step.started,
            )
        )


def finish_run(
    store: RunStore, run: Run, decision: RunEvent, *, looks: int, now: datetime | None = None
) -> Run | None:
    """Write a finished run's own state (verdict, reason, looks) into the store; None if the
    store cannot take it (logged)."""
    when = now or datetime.now(UTC)

    def change(current: Run) -> Run:
        return replace(
            current,
            looks=looks,
            updated_at=when,
            verdict=decision.verdict,
            score=decision.score,
            reason=decision.reason,
            answer={"decision": decision.outcome, "reason": decision.reason},
        )

    try:
        return store.update(run.id, change)
    except (StoreUnavailable, RunNotFound) as error:
        _log.warning("run state not stored", run=run.id, error=str(error))
        return None


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

"""Controller mode: watch Argo Rollouts, look at each updating one every interval, act.

* **Which Rollouts.** Those annotated `verdict.dev/analysis: <analysis name>`. The run of a
  Rollout is keyed like the web provider's, (analysis, namespace, rollout, canary hash), in the
  same run store: `verdict runs list/show` shows controller runs too. The matchers' placeholders
  `{{ canaryHash }}`, `{{ stableHash }}`, `{{ rollout }}`, `{{ namespace }}` come from the Rollout.
* **Scheduling.** `observe` (called by the watch) keeps one APScheduler job per Rollout that is
  updating (`status.currentPodHash` ≠ `status.stableRS`), at the analysis' interval, and removes
  it when the update ends.
* **A tick** (`tick`): read the Rollout fresh, look once (the run service), `decide`, act, and
  write the decision on the Rollout (annotation `verdict.dev/status`, and an Event) when it
  changes. Only the leader ticks when leader election is on.
* **Safety.** An action is recorded in the run store before it is sent and marked done after
  (`analyzer.runs.journal`); `recover` finishes or drops the actions a killed process left
  pending. Before sending, the Rollout is read again: an action it already shows is not sent
  again; a 409 conflict is retried on a fresh read.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from analyzer.clock import Clock, format_time
from analyzer.runs import LookRequest, RunError, RunService
from analyzer.runs.journal import DONE, DROPPED, PENDING, ActionRecord, new_action
from analyzer.verdicts import Verdict
from strategies.argo.decide import (
    PAUSED_ANNOTATION,
    STATUS_ANNOTATION,
    Action,
    Decision,
    Policy,
    RolloutView,
    decide,
    rollout_view,
)
from strategies.argo.rollouts import PATCHES, Rollout, RolloutActuator
from strategies.argo.telemetry import ControllerTelemetry

_log = structlog.get_logger()
_CONFLICT_RETRIES = 5


def default_identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class ControllerSettings:
    min_step_looks: int = 1
    """Looks at a step's weight before a pass promotes it."""
    max_inconclusive: timedelta = timedelta(minutes=30)
    """Undecided this long at one step: say so (annotation, log); still no action."""


class Controller:
    def __init__(
        self,
        *,
        service: RunService,
        actuator: RolloutActuator,
        clock: Clock,
        telemetry: ControllerTelemetry,
        settings: ControllerSettings | None = None,
        is_leader: Callable[[], bool] = lambda: True,
    ) -> None:
        self.service = service
        self.actuator = actuator
        self.clock = clock
        self.telemetry = telemetry
        self.settings = settings or ControllerSettings()
        self.is_leader = is_leader
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self._jobs: dict[str, tuple[str, str, float]] = {}  # job id -> analysis, hash, interval
        self._step_looks: dict[tuple[str, str, str, int], int] = {}
        self._said: dict[str, str] = {}  # job id -> the last decision written on the Rollout
        self._lock = threading.Lock()
        self._acting = threading.Lock()  # one action at a time (a tick and `recover` alike)

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def jobs(self) -> dict[str, tuple[str, str, float]]:
        with self._lock:
            return dict(self._jobs)

    # --- scheduling (the watch calls these) ----------------------------------------------

    def observe(self, obj: Rollout) -> None:
        """A Rollout was listed, added or changed: schedule, reschedule or unschedule its job."""
        view = rollout_view(obj)
        job = f"{view.namespace}/{view.name}"
        spec = self.service.analyses.get(view.analysis or "")
        wanted = view.analysis is not None and view.updating and not view.aborted
        if view.analysis is not None and spec is None:
            _log.warning("rollout names an unknown analysis", rollout=job, analysis=view.analysis)
        with self._lock:
            current = self._jobs.get(job)
            if not wanted or spec is None:
                if current is not None:
                    del self._jobs[job]
                    self._said.pop(job, None)
                    self._remove(job)
                    _log.info("rollout no longer updating; job removed", rollout=job)
                return
            plan = (spec.name, view.canary_hash, float(spec.interval))
            if current == plan:
                return
            self._jobs[job] = plan
        self._scheduler.add_job(
            self._job,
            IntervalTrigger(seconds=plan[2], timezone="UTC"),
            args=(view.namespace, view.name),
            id=job,
            replace_existing=True,
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),  # the scheduler runs on the wall clock
            misfire_grace_time=max(1, int(plan[2])),
        )
        self.telemetry.jobs.set(len(self._jobs))
        _log.info("rollout scheduled", rollout=job, analysis=spec.name, interval=plan[2])

    def forget(self, namespace: str, name: str) -> None:
        job = f"{namespace}/{name}"
        with self._lock:
            if self._jobs.pop(job, None) is not None:
                self._remove(job)
            self._said.pop(job, None)

    def _remove(self, job: str) -> None:
        from apscheduler.jobstores.base import JobLookupError

        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(job)
        self.telemetry.jobs.set(len(self._jobs))

    # --- one tick --------------------------------------------------------------------------

    def _job(self, namespace: str, name: str) -> None:
        """The scheduler's job: a tick whose failure is logged, and retried at the next one (an
        action left pending is finished then)."""
        try:
            self.tick(namespace, name)
        except Exception as error:
            _log.error(
                "tick failed",
                rollout=f"{namespace}/{name}",
                error=f"{type(error).__name__}: {str(error)[:300]}",
            )

    def tick(self, namespace: str, name: str) -> Decision | None:
        """Look at one Rollout once and act on it. None when not the leader or it is gone."""
        if not self.is_leader():
            return None
        try:
            obj = self.actuator.get(namespace, name)
        except Exception as error:
            if getattr(error, "status", None) == 404:
                self.forget(namespace, name)
                return None
            _log.warning("rollout not read", rollout=f"{namespace}/{name}", error=str(error)[:300])
            return None
        view = rollout_view(obj)
        with structlog.contextvars.bound_contextvars(
            namespace=namespace, rollout=name, canary=view.canary_hash, step=view.step_index
        ):
            return self._tick(obj, view)

    def _tick(self, obj: Rollout, view: RolloutView) -> Decision | None:
        spec = self.service.analyses.get(view.analysis or "")
        if spec is None or not view.updating:
            self.observe(obj)
            return None
        verdict: Verdict | None = None
        why = ""
        run_id = ""
        if view.trusted and not view.aborted:
            try:
                look = self.service.look(
                    LookRequest(
                        analysis=spec.name,
                        namespace=view.namespace,
                        rollout=view.name,
                        canary_hash=view.canary_hash,
                        stable_hash=view.stable_hash,
                    )
                )
                verdict = Verdict(look.run.verdict or "inconclusive")
                why = look.run.reason
                run_id = look.run.id
            except RunError as error:
                why = f"{error.code}: {error.message}"
                _log.warning("no verdict this look", error=why)
        key = (view.namespace, view.name, view.canary_hash, view.step_index)
        with self._lock:
            if verdict is not None:
                self._step_looks[key] = self._step_looks.get(key, 0) + 1
            step_looks = self._step_looks.get(key, 0)
        decision = decide(
            verdict,
            view,
            now=self.clock.now(),
            step_looks=step_looks,
            policy=Policy(
                interval=timedelta(seconds=spec.interval),
                min_step_looks=self.settings.min_step_looks,
                max_inconclusive=self.settings.max_inconclusive,
            ),
            why=why,
        )
        if not view.trusted:  # Argo has not seen the latest spec: leave the Rollout alone
            _log.info("rollout left alone", reason=decision.reason)
            return decision
        outcome = ""
        if decision.action is not Action.NONE and run_id:
            outcome = self._act(run_id, view, decision)
            if outcome == "sent":  # a decision of the run: stored, and told (Grafana, hooks)
                self.service.decided(
                    run_id,
                    _OUTCOMES[decision.action],
                    decision.reason,
                    step=view.step_index,
                    way="controller",
                )
        self._say(obj, view, verdict, decision, outcome)
        return decision

    # --- acting, exactly once --------------------------------------------------------------

    def _act(self, run_id: str, view: RolloutView, decision: Decision) -> str:
        record, _ = self.service.store.record_action(
            new_action(
                run_id=run_id,
                namespace=view.namespace,
                rollout=view.name,
                canary_hash=view.canary_hash,
                kind=str(decision.action),
                step=view.step_index,
                reason=decision.reason,
                now=self.clock.now(),
            )
        )
        if record.state != PENDING:
            return "already"
        return self.finish(record)  # re-reads the Rollout: a concurrent `recover` may be first

    def recover(self) -> int:
        """Finish or drop every action left pending (by a process killed between recording and
        sending it). Returns how many were pending."""
        pending = self.service.store.pending_actions()
        for record in pending:
            with structlog.contextvars.bound_contextvars(
                namespace=record.namespace, rollout=record.rollout, action=record.kind
            ):
                _log.info("finishing an action left pending", step=record.step)
                try:
                    self.finish(record)
                except Exception as error:
                    _log.error("pending action not finished", error=str(error)[:300])
        return len(pending)

    def finish(self, record: ActionRecord) -> str:
        """Send a recorded action unless the Rollout, read fresh, already shows it (then it is
        done) or no longer wants it (dropped). A 409 conflict is retried on a fresh read.
        Returns the outcome: sent, already or dropped."""
        with self._acting:
            return self._finish(record)

    def _finish(self, record: ActionRecord) -> str:
        from kubernetes.client.exceptions import ApiException

        for _ in range(_CONFLICT_RETRIES):
            try:
                obj = self.actuator.get(record.namespace, record.rollout)
            except ApiException as error:
                if error.status == 404:
                    return self._done(record, DROPPED, "dropped")
                raise
            view = rollout_view(obj)
            if _in_effect(record, view):
                return self._done(record, DONE, "already")
            if not _applicable(record, view):
                return self._done(record, DROPPED, "dropped")
            try:
                self.actuator.send(obj, PATCHES[record.kind](obj))
                if record.kind == Action.PAUSE:
                    self.actuator.annotate(obj, {PAUSED_ANNOTATION: view.paused_marker()})
            except ApiException as error:
                if error.status == 409:
                    self.telemetry.actions.labels(record.kind, "conflict").inc()
                    _log.info("conflict; reading the rollout again", action=record.kind)
                    continue
                self.telemetry.actions.labels(record.kind, "failed").inc()
                raise
            _log.warning("rollout acted on", action=record.kind, step=record.step)
            return self._done(record, DONE, "sent")
        self.telemetry.actions.labels(record.kind, "failed").inc()
        raise RuntimeError(f"{record.kind}: still conflicting after {_CONFLICT_RETRIES} reads")

    def _done(self, record: ActionRecord, state: str, outcome: str) -> str:
        self.service.store.finish_action(record.finished(state, self.clock.now()))
        self.telemetry.actions.labels(record.kind, outcome).inc()
        return outcome

    # --- saying what was decided -------------------------------------------------------------

    def _say(
        self,
        obj: Rollout,
        view: RolloutView,
        verdict: Verdict | None,
        decision: Decision,
        outcome: str,
    ) -> None:
        job = f"{view.namespace}/{view.name}"
        done = {"sent": "done", "already": "already done", "dropped": "dropped"}.get(outcome, "")
        action = f"{decision.action}" + (f" ({done})" if done else "")
        summary = f"{verdict or 'no verdict'}; {action}; {decision.reason}"
        with self._lock:
            if self._said.get(job) == summary:
                return
            self._said[job] = summary
        line = " ".join(f"{summary}; {format_time(self.clock.now())}".split())[:1000]
        log = _log.warning if decision.overdue or decision.action is Action.ABORT else _log.info
        log("decision", verdict=str(verdict), action=str(decision.action), reason=decision.reason)
        try:
            self.actuator.annotate(obj, {STATUS_ANNOTATION: line})
            self.actuator.event(
                obj,
                reason=_event_reason(decision, verdict),
                message=line,
                warning=decision.action is Action.ABORT or decision.overdue,
            )
        except Exception as error:
            _log.warning("decision not written on the rollout", error=str(error)[:300])
            with self._lock:
                self._said.pop(job, None)


_OUTCOMES = {Action.PROMOTE: "promoted", Action.PAUSE: "paused", Action.ABORT: "aborted"}


def _event_reason(decision: Decision, verdict: Verdict | None) -> str:
    if decision.action is not Action.NONE:
        return {"promote": "VerdictPromoted", "pause": "VerdictPaused", "abort": "VerdictAborted"}[
            str(decision.action)
        ]
    if decision.overdue:
        return "VerdictUndecided"
    return "VerdictAnalysis"


def _in_effect(record: ActionRecord, view: RolloutView) -> bool:
    """Whether the Rollout already shows the recorded action."""
    if view.canary_hash != record.canary_hash or not view.updating:
        return record.kind != Action.PAUSE  # promoted/replaced: a promote or abort is moot
    if record.kind == Action.ABORT:
        return view.aborted
    if record.kind == Action.PAUSE:
        return view.paused
    return view.step_index > record.step or not (view.pause_reasons or view.paused)


def _applicable(record: ActionRecord, view: RolloutView) -> bool:
    """Whether the recorded action still fits the Rollout (same update, same step)."""
    if view.canary_hash != record.canary_hash or not view.updating or view.aborted:
        return False
    return record.kind == Action.ABORT or view.step_index == record.step


def summary_of(obj: dict[str, Any]) -> str | None:
    """The decision Verdict last wrote on a Rollout (its `verdict.dev/status` annotation)."""
    return (obj.get("metadata", {}).get("annotations") or {}).get(STATUS_ANNOTATION)

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
  changes. Only the leader ticks when leader election is on; with shards, only the holder of the
  Rollout's shard (`owns`), and only once it has finished what the shard's previous holder left
  pending (`ready`, `recover`). A tick that loses the Lease during its look does not act.
* **Safety.** An action is recorded in the run store before it is sent and marked done after
  (`analyzer.runs.journal`); `recover` finishes or drops the actions a killed process left
  pending. Before each try the Rollout is read again: an action it already shows is not sent
  again, one it no longer fits is dropped. A try that fails (an error answer, a 409 conflict, no
  answer within the client's deadline) is tried again with a doubling wait until the action lands
  or `ControllerSettings.action_deadline` passes; then the action stays pending (the next tick
  tries again) and the annotation and, for an abort, the notifications say it did not land.
  Stopping (or losing the Lease) ends the tries at once and leaves the action pending for the
  next leader (or holder of the shard). Each Rollout has its own lock: one whose reads stall or
  whose writes keep failing holds one scheduler worker, never the others.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from analyzer.clock import Clock, format_time
from analyzer.runs import LookRequest, RunError, RunService
from analyzer.runs.journal import DONE, DROPPED, PENDING, ActionRecord, new_action
from analyzer.runs.model import RunKey
from analyzer.spec import AnalysisSpec
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
from strategies.argo.gate import RolloutHealth
from strategies.argo.rollouts import PATCHES, Rollout, RolloutActuator
from strategies.argo.telemetry import ControllerTelemetry
from strategies.health import Act, Health, Memory
from strategies.recovery import Part, RollbackCheck, check_of, rates_since

_log = structlog.get_logger()
_WRITE_ALLOWANCE = 2.0
"""Seconds allowed for a pause's writes to land after the look that decides it."""


def default_identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class ControllerSettings:
    min_step_looks: int = 1
    """Looks at a step's weight before a pass promotes it."""
    max_inconclusive: timedelta = timedelta(minutes=30)
    """Undecided this long at one step: say so (annotation, log); still no action."""
    action_deadline: timedelta = timedelta(minutes=5)
    """A promote, pause or abort is tried again until it lands or this passes (fail-safe rule
    I2); then it is reported as not landed and left pending for the next tick."""
    action_first_wait: float = 0.5
    """Seconds before an action's second try; doubled before each next one."""
    action_max_wait: float = 15.0
    """The longest wait between two tries of an action."""
    workers: int = 20
    """Rollouts looked at and acted on at once (each stalled read or failing write holds one)."""


class ActionNotLanded(Exception):
    """An action was tried until its deadline and did not land; the message says how often, for
    how long, and the last error."""

    def __init__(self, kind: str, tries: int, seconds: float, last: str) -> None:
        super().__init__(f"{tries} tries in {seconds:.0f} s; last: {last}")
        self.kind = kind
        self.tries = tries


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
        health: RolloutHealth | None = None,
        owns: Callable[[str, str], bool] | None = None,
        ready: Callable[[str, str], bool] | None = None,
    ) -> None:
        """`health`: the health gate's reader (the Rollout's pods, their Events, its Argo CD
        Application); None: the metrics alone decide. `owns(namespace, name)`: whether this
        replica holds the Rollout's shard (`strategies.argo.shards`); None: every Rollout.
        `ready(namespace, name)`: whether ticks may act on it (with shards: once the journal
        was read after the shard was taken, `take_over`); None: always."""
        self.health = health
        self.service = service
        self.actuator = actuator
        self.clock = clock
        self.telemetry = telemetry
        self.settings = settings or ControllerSettings()
        self.is_leader = is_leader
        self.owns = owns or (lambda namespace, name: True)
        self.ready = ready or (lambda namespace, name: True)
        self._scheduler = BackgroundScheduler(
            timezone="UTC", executors={"default": ThreadPoolExecutor(self.settings.workers)}
        )
        self._jobs: dict[str, tuple[str, str, float]] = {}  # job id -> analysis, hash, interval
        self._step_looks: dict[tuple[str, str, str, int], int] = {}
        # job id -> the last decision written on the Rollout: its state, text and when
        self._said: dict[str, _Said] = {}
        self._lock = threading.Lock()
        # one action at a time per Rollout (a tick and `recover` alike); Rollouts do not wait
        # for each other
        self._acting: dict[tuple[str, str], threading.Lock] = {}
        self._stopping = threading.Event()
        self._memory: dict[tuple[str, str, str], Memory] = {}  # the gate's, per canary
        self._held: dict[str, tuple[tuple[str, str, str], ...]] = {}  # job id -> hold told
        self._rollbacks: dict[str, _Rollback] = {}  # job id -> the abort to check

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._scheduler.add_job(
            self._check_due,
            IntervalTrigger(seconds=1, timezone="UTC"),
            id="#rollback-checks",
            replace_existing=True,
            max_instances=1,
            coalesce=True,
        )
        self._scheduler.start()

    def stop(self) -> None:
        self._stopping.set()  # actions being tried again stop now (left pending)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)

    def jobs(self) -> dict[str, tuple[str, str, float]]:
        with self._lock:
            return dict(self._jobs)

    def steers(self, namespace: str, name: str) -> bool:
        """Whether this replica may act on the Rollout now: the leader (or no election), and
        the holder of its shard."""
        return self.is_leader() and self.owns(namespace, name)

    def look_now(self, which: Callable[[str, str], bool]) -> int:
        """Run the jobs of the Rollouts `which(namespace, name)` now instead of at their next
        interval; returns how many."""
        from apscheduler.jobstores.base import JobLookupError

        with self._lock:
            jobs = [job for job in self._jobs if which(*job.split("/", 1))]
        for job in jobs:
            with contextlib.suppress(JobLookupError):
                self._scheduler.modify_job(job, next_run_time=datetime.now(UTC))
        return len(jobs)

    def acting(self, which: Callable[[str, str], bool]) -> bool:
        """Whether an action on one of the Rollouts `which(namespace, name)` is being sent."""
        with self._lock:
            held = [key for key, lock in self._acting.items() if lock.locked()]
        return any(which(namespace, name) for namespace, name in held)

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
            self._held.pop(job, None)
            for key in [k for k in self._memory if k[:2] == (namespace, name)]:
                del self._memory[key]

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
        """Look at one Rollout once and act on it. None when not the leader (or the holder of
        its shard), or it is gone."""
        if not (self.steers(namespace, name) and self.ready(namespace, name)):
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
        metric_hold = ""
        health: Health | None = None
        if view.trusted and not view.aborted:
            # the pods first: the Rollouts of a namespace tick together, and their reads of
            # the namespace's pod Events are shared while they overlap (`strategies.argo.gate`)
            health = self._health(obj, view, spec)
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
                held = [m for m in look.report.metrics if m.held]
                if held:
                    metric_hold = "shared" if any(m.shared_incident for m in held) else "canary"
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
                margin=timedelta(seconds=self.service.settings.look_budget + _WRITE_ALLOWANCE),
            ),
            why=why,
            health=health,
            metric_hold=metric_hold,
        )
        if not self.steers(view.namespace, view.name):  # the Lease was lost during the look
            _log.info("no longer steering the rollout; left to the new holder of its lease")
            return None
        if not view.trusted:  # Argo has not seen the latest spec: leave the Rollout alone
            _log.info("rollout left alone", reason=decision.reason)
            return decision
        outcome = ""
        if decision.action is not Action.NONE:
            if not run_id:  # the look failed (a pause): its run, if started, keeps the journal
                run_id = self._run_of(spec.name, view)
            try:
                outcome = self._act(run_id, view, decision)
            except ActionNotLanded as error:
                outcome = f"did not land: {error}"
                if decision.action is Action.ABORT:
                    self.service.decided(
                        run_id,
                        "abort-failed",
                        f"the abort did not land ({error}); the canary still takes traffic: "
                        f"abort it by hand. {decision.reason}",
                        step=view.step_index,
                        way="controller",
                    )
            if outcome == "sent":  # a decision of the run: stored, and told (Grafana, hooks)
                self.service.decided(
                    run_id,
                    decision.outcome or _OUTCOMES[decision.action],
                    decision.reason,
                    step=view.step_index,
                    way="controller",
                    extra=_health_extra(health),
                )
                if decision.action is Action.ABORT:
                    self._rollback_due(view, run_id, spec.name, spec.interval)
        self._tell_hold(run_id, view, decision, health, outcome)
        self._say(obj, view, verdict, decision, outcome)
        return decision

    # --- the health gate and the rollback's check -------------------------------------------

    def _health(self, obj: Rollout, view: RolloutView, spec: AnalysisSpec) -> Health | None:
        """The health gate over the new version's pods and the Argo CD Application (None: no
        reader, or the pods could not be read: the metrics alone decide this tick)."""
        if self.health is None:
            return None
        key = (view.namespace, view.name, view.canary_hash)
        with self._lock:
            memory = self._memory.get(key, Memory())
        try:
            found = self.health.gate(
                obj,
                view.canary_hash,
                health=spec.health,
                argocd=spec.argocd,
                memory=memory,
                now=self.clock.now(),
            )
        except Exception as error:
            _log.warning("the health gate could not read the pods", error=str(error)[:300])
            return None
        with self._lock:
            self._memory[key] = found.memory
        return found

    def _tell_hold(
        self,
        run_id: str,
        view: RolloutView,
        decision: Decision,
        health: Health | None,
        outcome: str,
    ) -> None:
        """A hold is told once when it starts (with the pause that made it, or alone when the
        Rollout was paused already), and forgotten when it clears."""
        job = f"{view.namespace}/{view.name}"
        held = health.held if health is not None and health.act is Act.HOLD else ()
        keys = tuple(sorted(f.key for f in held))
        with self._lock:
            told = self._held.get(job)
            if not keys:
                self._held.pop(job, None)
                return
            self._held[job] = keys
        if told == keys or outcome == "sent" or decision.outcome is None:
            return
        self.service.decided(
            run_id or self._run_of(str(view.analysis), view),
            decision.outcome,
            decision.reason,
            step=view.step_index,
            way="controller",
            extra=_health_extra(health),
        )

    def _rollback_due(self, view: RolloutView, run_id: str, analysis: str, interval: float) -> None:
        """After an abort landed: its check one interval later (`check_rollback`, run by the
        scheduler's `_check_due`)."""
        with self._lock:
            self._rollbacks[f"{view.namespace}/{view.name}"] = _Rollback(
                analysis, run_id, view.canary_hash, view.stable_hash, self.clock.now(),
                time.monotonic() + interval,
            )  # fmt: skip

    def _check_due(self) -> None:
        """The scheduler's job (every second): the rollback checks whose interval has passed."""
        with self._lock:
            due = [job for job, r in self._rollbacks.items() if r.due <= time.monotonic()]
        for job in due:
            namespace, _, name = job.partition("/")
            try:
                self.check_rollback(namespace, name)
            except Exception as error:
                _log.error("rollback check failed", rollout=job, error=str(error)[:300])

    def check_rollback(self, namespace: str, name: str) -> RollbackCheck | None:
        """The check of an abort this controller sent (None: none is due): the Rollout aborted
        with its canary weight back at 0, the stable pods Ready, the stable version's error
        rates back at their pre-run level (`strategies.recovery`). Told (`rollback-verified` /
        `rollback-not-recovered`), annotated (`verdict.dev/rollback`) and left as an Event."""
        job = f"{namespace}/{name}"
        with self._lock:
            due = self._rollbacks.pop(job, None)
        if due is None:
            return None
        spec = self.service.analyses.get(due.analysis)
        if spec is None:
            return None
        now = self.clock.now()
        parts: list[Part] = []
        obj: Rollout | None = None
        try:
            obj = self.actuator.get(namespace, name)
        except Exception as error:
            parts.append(Part("rollout", False, f"not read: {_error_text(error)}"))
        if obj is not None:
            parts += self._rollout_back(obj, due, spec, now)
        try:
            run = self.service.store.get(due.run_id) if due.run_id else None
            if run is not None:
                parts += rates_since(
                    self.service.plans[spec.name],
                    self.service.sources(spec),
                    dict(run.params),
                    started=run.started_at,
                    restored=due.aborted_at,
                    now=now,
                )
        except Exception as error:  # the store or Prometheus down: not shown recovered
            parts.append(Part("metrics", False, f"the look after the rollback failed: {error}"))
        check = check_of(parts, now)
        (_log.info if check.verified else _log.error)(check.text(), rollout=job)
        self.service.decided(
            due.run_id, check.outcome, check.text(), way="controller",
            extra={"rollback": check.as_json()},
        )  # fmt: skip
        if obj is not None:
            line = f"{check.text()}; {format_time(now)}"[:1000]
            try:
                self.actuator.annotate(obj, {ROLLBACK_ANNOTATION: line})
                reason = (
                    "VerdictRollbackVerified" if check.verified else "VerdictRollbackNotRecovered"
                )
                self.actuator.event(obj, reason=reason, message=line, warning=not check.verified)
            except Exception as error:
                _log.warning("rollback check not written on the rollout", error=str(error)[:300])
        return check

    def _rollout_back(
        self, obj: Rollout, due: _Rollback, spec: AnalysisSpec, now: datetime
    ) -> list[Part]:
        status = obj.get("status") or {}
        weight = (((status.get("canary") or {}).get("weights") or {}).get("canary") or {}).get(
            "weight"
        )
        aborted = bool(status.get("abort"))
        detail = f"abort {'set' if aborted else 'not set'}, phase {status.get('phase') or '-'}"
        if weight is not None:
            detail += f", canary weight {weight}"
        parts = [Part("rollout", aborted and weight in (None, 0), detail)]
        if self.health is not None:
            stable = str(status.get("stableRS") or due.stable_hash)
            try:
                pods = self.health.pods(obj, stable, health=spec.health, memory=Memory(), now=now)
                parts.append(Part("stable pods", pods.ready, pods.summary))
            except Exception as error:
                parts.append(Part("stable pods", False, f"not read: {_error_text(error)}"))
        return parts

    def _run_of(self, analysis: str, view: RolloutView) -> str:
        """The id of the Rollout's run for this canary ("" when there is none or the store
        cannot say)."""
        key = RunKey(analysis, view.namespace, view.name, view.canary_hash)
        try:
            run = self.service.store.find(key)
        except Exception as error:
            _log.warning("run not found for the action's record", error=str(error)[:300])
            return ""
        return run.id if run is not None else ""

    # --- acting, exactly once --------------------------------------------------------------

    def _act(self, run_id: str, view: RolloutView, decision: Decision) -> str:
        action = new_action(
            run_id=run_id,
            namespace=view.namespace,
            rollout=view.name,
            canary_hash=view.canary_hash,
            kind=str(decision.action),
            step=view.step_index,
            reason=decision.reason,
            now=self.clock.now(),
        )
        if not run_id:
            # only a pause is decided without a run (the look failed before the run could be
            # started or found): it is sent unrecorded rather than not at all; sending it twice
            # changes nothing
            _log.warning("action sent without a record: no run to record it in", action=action.kind)
            return self.finish(action, recorded=False)
        record, _ = self.service.store.record_action(action)
        if record.state != PENDING:
            return "already"
        return self.finish(record)  # re-reads the Rollout: a concurrent `recover` may be first

    def recover(self, only: Callable[[ActionRecord], bool] | None = None) -> int:
        """Finish or drop every action left pending (by a process killed between recording and
        sending it), or those `only` selects. Returns how many were pending."""
        pending = [r for r in self.service.store.pending_actions() if only is None or only(r)]
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

    def finish(self, record: ActionRecord, *, recorded: bool = True) -> str:
        """Send a recorded action unless the Rollout, read fresh, already shows it (then it is
        done) or no longer wants it (dropped); a failed try is tried again (module docstring).
        Returns the outcome: sent, already, dropped, or `left pending` (stopping, or no longer
        the leader). Raises `ActionNotLanded` past the deadline."""
        with self._lock:
            lock = self._acting.setdefault((record.namespace, record.rollout), threading.Lock())
        with lock:
            return self._finish(record, recorded)

    def _finish(self, record: ActionRecord, recorded: bool) -> str:
        settings = self.settings
        began = time.monotonic()
        deadline = began + settings.action_deadline.total_seconds()
        wait = settings.action_first_wait
        tries = 0
        last = ""
        while True:
            if not self.steers(record.namespace, record.rollout):
                break  # the Lease is lost: the next holder finishes it
            tries += 1
            try:
                state, outcome = self._try(record)
            except Exception as error:  # an error answer, a conflict, no answer in time
                last = _error_text(error)
                conflict = getattr(error, "status", None) == 409
                failure = "conflict" if conflict else "error"
                self.telemetry.actions.labels(record.kind, failure).inc()
                left = deadline - time.monotonic()
                again = (
                    left > wait
                    and not self._stopping.is_set()
                    and self.steers(record.namespace, record.rollout)
                )
                _log.warning(
                    "action did not land" + ("; trying again" if again else ""),
                    action=record.kind,
                    step=record.step,
                    attempt=tries,
                    error=last,
                    retry_in=round(wait, 2) if again else None,
                    seconds_left=round(max(left, 0.0), 1),
                )
                if not again or self._stopping.wait(wait):
                    break
                wait = min(wait * 2, settings.action_max_wait)
                continue
            if recorded:
                self.service.store.finish_action(record.finished(state, self.clock.now()))
            self.telemetry.actions.labels(record.kind, outcome).inc()
            if tries > 1:
                _log.info("action landed", action=record.kind, outcome=outcome, attempt=tries)
            return outcome
        if self._stopping.is_set() or not self.steers(record.namespace, record.rollout):
            _log.info("action left pending for the next leader", action=record.kind, attempt=tries)
            return "left pending"
        self.telemetry.actions.labels(record.kind, "failed").inc()
        _log.error("action did not land before its deadline", action=record.kind, attempt=tries)
        raise ActionNotLanded(record.kind, tries, time.monotonic() - began, last)

    def _try(self, record: ActionRecord) -> tuple[str, str]:
        """One try on a fresh read: (journal state, outcome)."""
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.actuator.get(record.namespace, record.rollout)
        except ApiException as error:
            if error.status == 404:
                return DROPPED, "dropped"
            raise
        view = rollout_view(obj)
        if _in_effect(record, view):
            if _unmarked_pause(record, view):  # sent by a process killed before it marked it
                self.actuator.annotate(obj, {PAUSED_ANNOTATION: view.paused_marker()})
            return DONE, "already"
        if not _applicable(record, view):
            return DROPPED, "dropped"
        self.actuator.send(obj, PATCHES[record.kind](obj))
        if record.kind == Action.PAUSE:
            self.actuator.annotate(obj, {PAUSED_ANNOTATION: view.paused_marker()})
        _log.warning("rollout acted on", action=record.kind, step=record.step)
        return DONE, "sent"

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
        done = {"sent": "done", "already": "already done"}.get(outcome, outcome)
        action = f"{decision.action}" + (f" ({done})" if done else "")
        failed = outcome.startswith("did not land")
        summary = f"{verdict or 'no verdict'}; {action}; {decision.reason}"
        state = (view.step_index, str(verdict), action, failed, decision.overdue, decision.outcome)
        now = self.clock.now()
        with self._lock:
            said = self._said.get(job)
            new_state = said is None or said.state != state
            if said is not None and (
                said.summary == summary
                or (not new_state and now - said.at < STATUS_REFRESH)
            ):
                return  # said already, or only the figures moved since a moment ago
            self._said[job] = _Said(state, summary, now)
        line = " ".join(f"{summary}; {format_time(now)}".split())[:1000]
        warning = decision.overdue or decision.action is Action.ABORT or failed
        log = _log.warning if warning else _log.info
        if new_state:
            log("decision", verdict=str(verdict), action=str(decision.action), reason=decision.reason)
        try:
            self.actuator.annotate(obj, {STATUS_ANNOTATION: line})
            if new_state:  # an Event when the decision changes, not for every figure
                self.actuator.event(
                    obj,
                    reason="VerdictActionFailed" if failed else _event_reason(decision, verdict),
                    message=line,
                    warning=warning,
                )
        except Exception as error:
            _log.warning("decision not written on the rollout", error=str(error)[:300])
            with self._lock:
                self._said.pop(job, None)


STATUS_REFRESH = timedelta(minutes=1)
"""While the decision stays the same (step, verdict, action, outcome), the status annotation is
written again with the newest figures at most this often, and no Event is sent for it: a
thousand Rollouts looked at every 30 s would otherwise cost the API two writes a look."""


@dataclass(frozen=True)
class _Said:
    state: tuple[object, ...]
    summary: str
    at: datetime


_OUTCOMES = {Action.PROMOTE: "promoted", Action.PAUSE: "paused", Action.ABORT: "aborted"}
ROLLBACK_ANNOTATION = "verdict.dev/rollback"
"""The check of Verdict's last abort of the Rollout: verified, or did not recover (why)."""


@dataclass(frozen=True)
class _Rollback:
    analysis: str
    run_id: str
    canary_hash: str
    stable_hash: str
    aborted_at: datetime
    due: float
    """When to check (`time.monotonic()`)."""


def _health_extra(health: Health | None) -> dict[str, object]:
    """The health gate's findings for a decision's event (none when it found nothing)."""
    if health is None or not health.findings:
        return {}
    return {"health": [f.as_json() for f in health.findings]}


def _event_reason(decision: Decision, verdict: Verdict | None) -> str:
    if decision.action is not Action.NONE:
        return {"promote": "VerdictPromoted", "pause": "VerdictPaused", "abort": "VerdictAborted"}[
            str(decision.action)
        ]
    if decision.overdue:
        return "VerdictUndecided"
    return "VerdictAnalysis"


def _error_text(error: Exception) -> str:
    status = getattr(error, "status", None)
    if status is not None:
        return f"HTTP {status} {getattr(error, 'reason', '') or ''}".strip()
    return f"{type(error).__name__}: {str(error)[:200]}"


def _in_effect(record: ActionRecord, view: RolloutView) -> bool:
    """Whether the Rollout already shows the recorded action."""
    if view.canary_hash != record.canary_hash or not view.updating:
        return record.kind != Action.PAUSE  # promoted/replaced: a promote or abort is moot
    if record.kind == Action.ABORT:
        return view.aborted
    if record.kind == Action.PAUSE:
        return view.paused
    return view.step_index > record.step or not (view.pause_reasons or view.paused)


def _unmarked_pause(record: ActionRecord, view: RolloutView) -> bool:
    """A recorded pause the Rollout shows, at its step, without Verdict's marker and not a
    person's: the pause was sent (by a process killed before it wrote the marker). Without the
    marker it would pass for nobody's pause, and the analysis could never end it."""
    return (
        record.kind == Action.PAUSE
        and view.paused
        and not view.paused_by_verdict
        and view.paused_by is None
        and view.canary_hash == record.canary_hash
        and view.step_index == record.step
    )


def _applicable(record: ActionRecord, view: RolloutView) -> bool:
    """Whether the recorded action still fits the Rollout (same update, same step)."""
    if view.canary_hash != record.canary_hash or not view.updating or view.aborted:
        return False
    if record.kind == Action.PROMOTE and view.paused_by is not None:
        return False  # a person paused it since the decision: their hold wins
    return record.kind == Action.ABORT or view.step_index == record.step


def summary_of(obj: dict[str, Any]) -> str | None:
    """The decision Verdict last wrote on a Rollout (its `verdict.dev/status` annotation)."""
    return (obj.get("metadata", {}).get("annotations") or {}).get(STATUS_ANNOTATION)

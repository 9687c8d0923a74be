"""The standalone canary: move the route's weights step by step, look every interval, decide.

Rules (those of `analyzer.canary`, with a real router, pods and the run store):
* The analysis is one run of the run core over the whole rollout: every look judges all traffic
  since the run started, interval by interval (`analyzer.runs.model.look_window`), failures
  are sticky.
* Before the first weight and before every increase the canary's pods must be Ready
  (`strategies.kube.pods.PodGate`); during a step each look checks them and their Events again
  (`strategies.health`). A failing gate (a fatal pod reason, readiness past its grace, too many
  restarts, the Argo CD sync failed) aborts the run: traffic back on stable, the decision told as
  the gate's kind. A hold (pods Pending for resources, the Application out of sync) keeps the
  canary at its weight: no step ends and no weight is written until it clears. Every finding is
  kept in the progress (`health`), told once.
* After every rollback, one interval later, the rollback is checked (`strategies.recovery`): the
  route on stable, `stablePods` Ready, the stable version's error rates back at their pre-run
  level; recorded (`rollback`) and told (`rollback-verified` / `rollback-not-recovered`).
* Any failing look aborts at once, mid-step: 100 % on stable in one write.
* A step lasts `stepDuration`; then the next weight is written (a pass is not needed to move on:
  every look guards against failure). After the last analysed step the canary gets 100 % only on
  a pass; undecided: `onTimeout` (`pause` puts the canary back at the first step's weight).
* A route changed by someone else is reported (paused) and never overwritten.
* Ctrl-C / SIGTERM (KeyboardInterrupt): traffic back on stable unless `keep_weights`, the run
  recorded as interrupted.
* The run's progress (state, step, weights, steps) is kept in the run store with every look, in
  the run's last answer under `rollout`, so `verdict runs show` reads it and a restarted command
  resumes from the recorded step when the route still shows that step's weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from analyzer.clock import Clock, format_time, parse_time
from analyzer.notify import NopNotifier, Notifier, RunInfo
from analyzer.runs.events import RunJournal
from analyzer.runs.model import Run, RunKey, new_run
from analyzer.runs.requests import ActionRequest
from analyzer.runs.store import RunStore, StoreUnavailable
from analyzer.spec import SpecError
from analyzer.verdicts import AnalysisReport, Verdict
from metrics.source import MetricSource
from strategies.events import CanaryRecorder
from strategies.health import Act, Finding
from strategies.kube.istio import TrafficChanged, Weights
from strategies.kube.pods import PodState, PodsUnhealthy
from strategies.manual import (
    ManualAbort,
    ManualPromote,
    held,
    held_seconds,
    hold,
    manual_event,
    manual_reason,
    release,
    take_request,
)
from strategies.record import (
    ABORTED,
    INTERRUPTED,
    PAUSED,
    PROMOTED,
    RUNNING,
    CanaryResult,
    Outcome,
    Recorder,
)
from strategies.record import Look as LoopLook
from strategies.recovery import Part, check_of, rates_since
from strategies.restore import RestoreFailed, RestorePolicy, until_restored
from strategies.rollout_file import RolloutFile

MAX_ATTEMPTS = 1000


class _AlreadyEnded(Exception):
    def __init__(self, run: Run, progress: dict[str, Any]) -> None:
        super().__init__(run.id)
        self.run, self.progress = run, progress


class Router(Protocol):
    expected: Weights | None

    def current(self) -> Weights: ...
    def adopt(self) -> Weights: ...
    def verify(self) -> Weights: ...
    def set_weight(self, canary_percent: int) -> None: ...


class Gate(Protocol):
    def check(self) -> PodState: ...
    def wait_ready(self, on_health: Callable[[PodState], None] | None = None) -> PodState: ...
    def template_hash(self) -> str | None: ...


@dataclass(frozen=True)
class Deps:
    """What a canary rollout acts on and reads (all handed in)."""

    router: Router
    gate: Gate
    source: MetricSource
    store: RunStore
    clock: Clock
    notifier: Notifier = field(default_factory=NopNotifier)
    """Who hears the run's events (the analysis file's notifications and Grafana)."""
    stable_pods: Gate | None = None
    """The stable version's pods (`stablePods`), checked Ready after a rollback."""


@dataclass(frozen=True)
class LookEvent:
    """One look, for live progress."""

    step: int
    steps: int
    weights: Weights
    look: int
    report: AnalysisReport
    seconds_left: float


class CannotResume(Exception):
    """A recorded run cannot be resumed (the route shows other weights); nothing was written."""


ENDED = (PROMOTED, ABORTED)
"""A run that ended so is not started again by the same command (fail-safe rule I5)."""
ABORTING = "aborting"
"""Recorded before the write back to stable after a fail: a command stopped during that write
finishes it when started again, instead of moving on to the next step."""


class _FinishAbort(Exception):
    def __init__(self, run: Run, progress: dict[str, Any]) -> None:
        super().__init__(run.id)
        self.run, self.progress = run, progress


def _progress_of(run: Run) -> dict[str, Any] | None:
    answer = run.answer or {}
    found = answer.get("rollout")
    return dict(found) if isinstance(found, dict) else None


class CanaryRollout:
    """One `verdict canary run` (see the module docstring); `run()` returns the `Outcome`."""

    def __init__(
        self,
        file: RolloutFile,
        deps: Deps,
        *,
        keep_weights: bool = False,
        on_look: Callable[[LookEvent], None] | None = None,
        on_message: Callable[[str], None] | None = None,
        record_events: bool = True,
        extra_looks: int = 0,
        restart: bool = False,
    ) -> None:
        """`extra_looks`: the last analysed step goes on looking up to this many intervals past
        its end while undecided."""
        self.extra_looks = extra_looks
        self.restart = restart
        """Start a new run even when the last one of this canary ended (promoted, aborted)."""
        self.ended: Outcome | None = None
        self.file = file
        self.record_events = record_events
        self.recorder: CanaryRecorder | None = None
        self.spec = file.analysis
        self.rollout = file.rollout
        self.deps = deps
        self.keep_weights = keep_weights
        self.on_look = on_look
        self.on_message = on_message or (lambda _m: None)
        self.log = structlog.get_logger().bind(
            analysis=self.spec.name,
            namespace=self.rollout.namespace,
            virtual_service=self.rollout.virtual_service,
        )
        self.state: Recorder | None = None
        self.final: AnalysisReport | None = None
        self._holding = False
        """The health gate holds the canary where it is (Pending pods, Argo CD OutOfSync)."""
        self._metric_hold = ""
        """The metrics hold it: the reason of the breach being held on ("" when none)."""
        self._health_now: tuple[dict[str, Any], ...] = ()
        self.ended_by: ActionRequest | None = None
        """The person's request that ended the run (a manual abort or promotion), if any."""

    # --- identity and resume --------------------------------------------------------------

    def _base_hash(self) -> str:
        found = self.deps.gate.template_hash()
        return found or hashlib.sha256(self.file.text.encode()).hexdigest()[:10]

    def _key(self, base: str, attempt: int) -> RunKey:
        canary = base if attempt == 1 else f"{base}-{attempt}"
        return RunKey(
            self.spec.name, self.rollout.namespace, str(self.rollout.virtual_service), canary
        )

    def _params(self, key: RunKey) -> dict[str, str]:
        stable = self.rollout.stable
        assert stable is not None
        params = {
            "namespace": key.namespace,
            "rollout": key.rollout,
            "canaryHash": key.canary_hash,
            "stableHash": stable.subset or stable.host,
        }
        missing = sorted(self.spec.placeholders() - params.keys())
        if missing:
            raise SpecError(
                f"{self.file.path}: the matchers use {', '.join(missing)}, which "
                "`verdict canary run` does not know (it fills namespace, rollout, canaryHash, "
                "stableHash)"
            )
        return params

    def _open(self) -> tuple[Recorder, int]:
        """The run to drive and the 0-based index of the step to start at (resumed or new)."""
        base = self._base_hash()
        previous: Run | None = None
        attempt = 1
        while attempt < MAX_ATTEMPTS:
            found = self.deps.store.find(self._key(base, attempt))
            if found is None:
                break
            previous, attempt = found, attempt + 1
        if previous is not None:
            progress = _progress_of(previous)
            if progress is not None and progress.get("state") in ENDED and not self.restart:
                raise _AlreadyEnded(previous, progress)
            if progress is not None and progress.get("state") == ABORTING:
                raise _FinishAbort(previous, progress)
            if progress is not None and progress.get("state") in (RUNNING, INTERRUPTED):
                resumed = self._resume(previous, progress)
                if resumed is not None:
                    return resumed
        now = self.deps.clock.now()
        found_weights = self.deps.router.adopt()
        key = self._key(base, attempt)
        run = self.deps.store.start(
            new_run(
                key,
                stable_hash=self._params(key)["stableHash"],
                params=self._params(key),
                started_at=now,
                now=now,
            )
        )
        progress = {
            "strategy": "canary",
            "virtualService": f"{self.rollout.namespace}/{self.rollout.virtual_service}",
            "route": self.rollout.route,
            "state": RUNNING,
            "step": 0,
            "weights": found_weights.as_dict(),
            "steps": [],
            "trafficRestored": False,
            "reason": "",
        }
        state = self._recorder(run, progress)
        state.save()
        self.on_message(f"run {run.id} started; {self._where()} at {self._show(found_weights)}")
        return state, 0

    def _resume(self, run: Run, progress: dict[str, Any]) -> tuple[Recorder, int] | None:
        weights = self.deps.router.current()
        step = int(progress.get("step", 0))
        recorded = Weights(**progress["weights"])
        pending = progress.get("pending")
        if isinstance(pending, dict) and weights == Weights(**pending) and weights != recorded:
            # recorded, then sent, then stopped before the answer was recorded: it landed
            self.on_message(f"run {run.id}: the write of {self._show(weights)} it recorded landed")
            recorded = weights
            progress = {**progress, "weights": pending}
        progress.pop("pending", None)
        if progress.get("trafficRestored") and weights == Weights(stable=100, canary=0):
            self.on_message(
                f"run {run.id} was interrupted and its traffic put back on stable: starting anew"
            )
            return None
        if step == 0 and weights == recorded:
            # stopped around the first weight write (recorded, and sent or not): from the start
            self.deps.router.expected = weights
            progress = {**progress, "state": RUNNING, "trafficRestored": False}
            self.on_message(f"resuming run {run.id} from its first step ({self._show(weights)})")
            self.log.info("run resumed", run=run.id, step=0)
            return self._recorder(run, progress), 0
        if step >= 1 and weights == recorded:
            self.deps.router.expected = weights
            progress = {**progress, "state": RUNNING, "trafficRestored": False}
            self.on_message(
                f"resuming run {run.id} at step {step} ({self._show(weights)}), as recorded"
            )
            self.log.info("run resumed", run=run.id, step=step)
            steps = progress.get("steps") or []
            ended = bool(steps) and steps[-1].get("end") is not None
            return self._recorder(run, progress), step if ended else step - 1
        raise CannotResume(
            f"run {run.id} was {progress.get('state')} at step {step} with "
            f"{self._show(recorded)}, but {self._where()} now shows {self._show(weights)}: not "
            "resuming and nothing written; put the route back at the recorded weights to resume, "
            "or all on stable to start anew"
        )

    def _where(self) -> str:
        route = f" route {self.rollout.route}" if self.rollout.route else ""
        return f"VirtualService {self.rollout.namespace}/{self.rollout.virtual_service}{route}"

    @staticmethod
    def _show(w: Weights) -> str:
        return f"{w.stable}/{w.canary} (stable/canary)"

    # --- the store ------------------------------------------------------------------------

    def _recorder(self, run: Run, progress: dict[str, Any]) -> Recorder:
        recorder = Recorder(
            self.spec,
            self.deps.store,
            self.deps.source,
            self.deps.clock,
        )
        recorder.run, recorder.progress = run, progress
        return recorder

    # --- actions --------------------------------------------------------------------------

    def _write(self, state: Recorder, canary: int) -> Weights:
        # I3: recorded before it is sent, so a store that cannot record stops the run before
        # traffic moves; a write back to stable goes out even when the store is down
        state.progress["pending"] = {"stable": 100 - canary, "canary": canary}
        try:
            state.save()
        except StoreUnavailable:
            if canary > 0:
                raise
            self.log.error("the run store is unavailable; putting traffic back on stable anyway")
        self.deps.router.set_weight(canary)
        state.progress.pop("pending", None)
        if self.recorder is not None:
            self.recorder.weight_set(canary)
        weights = Weights(stable=100 - canary, canary=canary)
        state.progress["weights"] = weights.as_dict()
        self.log.info("weights set", stable=weights.stable, canary=weights.canary)
        return weights

    def _look(self, state: Recorder) -> AnalysisReport:
        report = state.look()
        self.final = report
        return report

    def _finish(
        self,
        state: Recorder,
        decision: str,
        reason: str,
        *,
        outcome: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome:
        state.progress["state"] = decision
        state.progress["reason"] = reason
        state.save()
        if self.recorder is not None:
            self.recorder.finish(
                CanaryResult(
                    decision=decision,
                    reason=reason,
                    final=self.final,
                    outcome=outcome,
                    extra=extra or {},
                ),
                manual=self.ended_by,
            )
        self.log.info("rollout finished", decision=decision, reason=reason)
        return Outcome(
            decision=decision,
            reason=reason,
            run_id=state.run_id,
            steps=list(state.progress["steps"]),
            final=self.final,
        )

    def _back_to_stable(self, state: Recorder) -> None:
        """All traffic on stable, tried until it lands and reads back (I2), else `RestoreFailed`."""
        until_restored(
            lambda: self._write(state, 0),
            lambda: self.deps.router.current() == Weights(stable=100, canary=0),
            what=self._where(),
            clock=self.deps.clock,
            policy=RestorePolicy(deadline=self.rollout.rollback_deadline),
        )
        state.progress["trafficRestored"] = True

    # --- the rollout ----------------------------------------------------------------------

    def run(self) -> Outcome:
        try:
            state, first = self._open()
        except _AlreadyEnded as ended:
            return self._already_ended(ended.run, ended.progress)
        except _FinishAbort as pending:
            # stopped while putting traffic back on stable after a fail: finish that first
            state = self._recorder(pending.run, dict(pending.progress))
            self.state = state
            reason = str(pending.progress.get("reason") or "aborted")
            self.on_message(f"run {pending.run.id} was aborting: putting traffic back on stable")
            self.deps.router.expected = self.deps.router.current()
            self._back_to_stable(state)
            return self._finish(state, ABORTED, reason)
        self.state = state
        if self.record_events:
            info = RunInfo(
                id=state.run_id,
                analysis=self.spec.name,
                namespace=self.rollout.namespace,
                rollout=str(self.rollout.virtual_service),
                way="canary",
            )
            journal = RunJournal(self.deps.store, self.deps.notifier)
            self.recorder = CanaryRecorder(journal, info, self.deps.clock.now)
        resumed = first if state.progress["steps"] else None
        try:
            outcome = self._steps_or_manual(state, first)
        except RestoreFailed as error:
            self._end_step(state, "aborted")
            self._finish_anyway(state, ABORTED, str(error))
            raise
        except KeyboardInterrupt:
            reason = "interrupted"
            if not self.keep_weights:
                try:
                    self._back_to_stable(state)
                    reason = "interrupted: all traffic back on stable"
                except (RestoreFailed, KeyboardInterrupt) as error:
                    reason = f"interrupted; putting traffic back on stable failed: {error}"
            else:
                reason = f"interrupted: weights kept at {self._show(Weights(**state.progress['weights']))}"
            self._end_step(state, "interrupted")
            return self._finish(state, INTERRUPTED, reason)
        except PodsUnhealthy as error:
            self._end_step(state, "aborted")
            findings = tuple(f for f in error.findings if isinstance(f, Finding))
            self._note_findings(state, findings)
            return self._abort(
                state,
                f"the health gate failed: {error}",
                outcome=findings[0].kind if findings else None,
                findings=findings,
            )
        except TrafficChanged as error:
            self._end_step(state, "paused")
            return self._finish(state, PAUSED, str(error))
        except Exception as error:
            # Prometheus or the API down, a query refused: safe by default, back on stable
            self.log.error("rollout stopped by an error", error=str(error))
            restore_failed: RestoreFailed | None = None
            try:
                if state.progress["weights"]["canary"] > 0 or state.progress.get("pending"):
                    self._back_to_stable(state)
            except RestoreFailed as failed:
                self.log.error("could not put traffic back on stable", error=str(failed))
                restore_failed = failed
            except Exception as other:  # the route changed by someone else: reported
                self.log.error("could not put traffic back on stable", error=str(other))
            self._end_step(state, "error")
            reason = f"stopped by an error: {error}"
            if restore_failed is not None:
                reason += f"; {restore_failed}"
            self._finish_anyway(state, ABORTED, reason)
            if restore_failed is not None:
                raise restore_failed from error
            raise
        if resumed is not None:
            outcome.resumed_at_step = resumed + 1
        return outcome

    def _finish_anyway(self, state: Recorder, decision: str, reason: str) -> None:
        """Record the decision as far as the store and the notifiers can take it (the run is
        ending on an error; the error is what the command reports)."""
        try:
            self._finish(state, decision, reason)
        except Exception as error:
            self.log.error("the run's end could not be recorded", error=str(error))

    def _already_ended(self, run: Run, progress: dict[str, Any]) -> Outcome:
        """I5: the last run of this canary ended: say so, write nothing."""
        weights = self.deps.router.current()
        decision = str(progress.get("state"))
        reason = (
            f"run {run.id} already {decision} this canary ({progress.get('reason') or 'no reason recorded'}); "
            f"{self._where()} shows {self._show(weights)}; nothing written (--restart starts a new run)"
        )
        self.on_message(reason)
        return Outcome(
            decision=decision, reason=reason, run_id=run.id, steps=list(progress.get("steps") or [])
        )

    def _abort(
        self,
        state: Recorder,
        reason: str,
        *,
        outcome: str | None = None,
        findings: tuple[Finding, ...] = (),
    ) -> Outcome:
        """Traffic back on stable (I2), the decision recorded (its outcome the health gate's
        kind when the gate failed it), then the rollback checked (`strategies.recovery`)."""
        moved = False
        if state.progress["weights"]["canary"] > 0 or state.progress.get("pending"):
            state.progress.update(state=ABORTING, reason=reason)
            try:  # best effort: the write back to stable goes out even when the store is down
                state.save()
            except StoreUnavailable:
                self.log.error("the run store is unavailable; putting traffic back on stable")
            self._back_to_stable(state)
            moved = True
        extra = {"health": [f.as_json() for f in findings]} if findings else {}
        done = self._finish(state, ABORTED, reason, outcome=outcome, extra=extra)
        if moved:
            done.rollback = self._verify_rollback(state)
        return done

    # --- the health gate and the rollback's check -----------------------------------------

    def _note_findings(self, state: Recorder, findings: tuple[Finding, ...]) -> list[Finding]:
        """Add the findings not yet in the run's progress (`health`, with the step and weight
        they were seen at); returns those."""
        seen = state.progress.setdefault("health", [])
        known = {(e.get("kind"), e.get("subject"), e.get("reason")) for e in seen}
        added = [f for f in findings if f.key not in known]
        for f in added:
            seen.append({**f.as_json(), "step": state.progress.get("step"),
                         "weight": state.progress["weights"]["canary"]})  # fmt: skip
        return added

    def _metrics_hold(self, report: AnalysisReport, step: int, weight: int) -> bool:
        """Whether a metric beyond its SLO (a promotion criterion, no rollback trigger crossed)
        holds the canary at its weight; a hold is told once when it starts (`shared-incident`
        when the baseline breaches it too) and noted when it clears."""
        held_metrics = [m for m in report.metrics if m.held]
        if not held_metrics:
            if self._metric_hold:
                self.on_message(f"metric hold cleared at {weight} % canary weight")
                self.log.info("metric hold cleared")
            self._metric_hold = ""
            return False
        if not self._metric_hold:
            shared = any(m.shared_incident for m in held_metrics)
            reason = f"held at {weight} % canary weight (no next step until it clears): {report.reason}"
            self.on_message(reason)
            self.log.warning("rollout held by the metrics", shared=shared, reason=report.reason)
            if self.recorder is not None:
                self.recorder.note(
                    "shared-incident" if shared else "paused", reason, step=step, weight=weight,
                    extra={"held": [m.name for m in held_metrics]},
                )
        self._metric_hold = report.reason
        return True

    def _health_seen(self, health: PodState) -> None:
        """One look of the gate: new findings recorded, a hold told once when it starts, a hold
        that cleared noted; `_holding` says whether the canary is held where it is."""
        self._holding = health.act is Act.HOLD
        self._health_now = tuple(f.as_json() for f in health.findings)
        state = self.state
        if state is None:
            return
        added = self._note_findings(state, health.findings)
        current = {f.key for f in health.findings}
        now = format_time(self.deps.clock.now())
        cleared = False
        for entry in state.progress["health"]:
            key = (entry.get("kind"), entry.get("subject"), entry.get("reason"))
            if entry.get("act") == "hold" and not entry.get("cleared") and key not in current:
                entry["cleared"] = now
                cleared = True
                self.on_message(f"hold cleared: {entry.get('subject')}: {entry.get('reason')}")
                self.log.info("hold cleared", subject=entry.get("subject"), kind=entry.get("kind"))
        weight = state.progress["weights"]["canary"]
        for f in added:
            if f.act is not Act.HOLD:
                continue
            reason = f"held at {weight} % canary weight (no next step until it clears): {f.text()}"
            self.on_message(reason)
            self.log.warning("rollout held", kind=f.kind, subject=f.subject, reason=f.reason)
            if self.recorder is not None:
                self.recorder.note(f.kind, reason, step=state.progress.get("step") or None,
                                   weight=weight, extra={"health": [f.as_json()]})  # fmt: skip
        if added or cleared:
            state.save()

    def _verify_rollback(self, state: Recorder) -> dict[str, Any] | None:
        """One interval after the rollback: the route on stable, the stable pods Ready (with
        `stablePods`), the stable version's error rates back at their pre-run level. Recorded
        (`rollback` in the progress) and told (`rollback-verified` / `rollback-not-recovered`);
        never changes the decision (I6)."""
        clock = self.deps.clock
        restored = clock.now()
        try:
            clock.sleep(self.spec.interval)
            parts = []
            weights = self.deps.router.current()
            parts.append(Part("route", weights == Weights(stable=100, canary=0),
                              f"{self._where()} at {self._show(weights)}"))  # fmt: skip
            if self.deps.stable_pods is not None:
                try:
                    pods = self.deps.stable_pods.check()
                    parts.append(Part("stable pods", pods.ready, pods.summary))
                except PodsUnhealthy as error:
                    parts.append(Part("stable pods", False, str(error)))
            assert state.run is not None
            parts += rates_since(state.plan, self.deps.source, dict(state.run.params),
                                 started=state.run.started_at, restored=restored,
                                 now=clock.now())  # fmt: skip
            check = check_of(parts, clock.now())
        except KeyboardInterrupt:
            check = check_of([Part("check", False, "interrupted before it was done")], clock.now())
        except Exception as error:
            check = check_of([Part("check", False, f"could not be made: {error}")], clock.now())
        found = check.as_json()
        state.progress["rollback"] = found
        try:
            state.save()
        except Exception as error:
            self.log.error("the rollback's check could not be recorded", error=str(error))
        (self.log.info if check.verified else self.log.error)(check.text())
        self.on_message(check.text())
        if self.recorder is not None:
            self.recorder.note(check.outcome, check.text(), step=None, weight=0,
                               extra={"rollback": found})  # fmt: skip
        return found

    def _start_step(self, state: Recorder, number: int, weights: Weights) -> None:
        now = format_time(self.deps.clock.now())
        state.progress["step"] = number
        state.progress["steps"].append(
            {
                "step": number,
                "weights": weights.as_dict(),
                "start": now,
                "end": None,
                "verdict": None,
            }
        )
        state.save()

    def _end_step(self, state: Recorder, verdict: str) -> None:
        steps = state.progress["steps"]
        if steps and steps[-1]["end"] is None:
            steps[-1]["end"] = format_time(self.deps.clock.now())
            steps[-1]["verdict"] = verdict

    def _steps(self, state: Recorder, first: int) -> Outcome:
        analysed = self.rollout.analysed_steps
        report: AnalysisReport | None = None
        if first >= len(analysed):
            report = self._look(state)
        for index in range(first, len(analysed)):
            number, weight = index + 1, analysed[index]
            steps = state.progress["steps"]
            resuming = bool(steps) and steps[-1]["step"] == number and steps[-1]["end"] is None
            if resuming:
                started = parse_time(steps[-1]["start"])
                weights = Weights(**state.progress["weights"])
            else:
                self.deps.gate.wait_ready(self._health_seen)
                if index == first:
                    self.deps.source.check()  # Prometheus answers before traffic moves
                weights = self._write(state, weight)
                self._start_step(state, number, weights)
                started = self.deps.clock.now()
            report = self._watch_step(state, number, weights, started)
            if report.verdict is Verdict.FAIL:
                self._end_step(state, "fail")
                return self._abort(
                    state, f"aborted at {weight} % canary weight (step {number}): {report.reason}"
                )
            if self._metric_hold and report.verdict is not Verdict.PASS:
                self._end_step(state, str(report.verdict))
                self._write(state, analysed[0])
                return self._finish(
                    state,
                    PAUSED,
                    f"paused for a person to decide, held by the metrics at {weight} % canary "
                    f"weight (canary back at {analysed[0]} %): {report.reason}",
                )
            self._end_step(state, str(report.verdict))
            state.save()
        if report is not None and report.verdict is Verdict.PASS:
            return self._promote(state, f"promoted to 100 %: {report.reason}")
        undecided = report.reason if report is not None else "no look"
        if self.rollout.on_timeout == "promote":
            return self._promote(state, f"promoted undecided (onTimeout: promote): {undecided}")
        if self.rollout.on_timeout == "abort":
            return self._abort(state, f"aborted undecided (onTimeout: abort): {undecided}")
        self._write(state, analysed[0])
        return self._finish(
            state,
            PAUSED,
            f"paused for a person to decide (canary back at {analysed[0]} %): {undecided}",
        )

    def _promote(self, state: Recorder, reason: str) -> Outcome:
        self.deps.gate.wait_ready(self._health_seen)
        weights = self._write(state, 100)
        self._start_step(state, len(self.rollout.analysed_steps) + 1, weights)
        self._end_step(state, "promoted")
        return self._finish(state, PROMOTED, reason)

    def _steps_or_manual(self, state: Recorder, first: int) -> Outcome:
        """The steps, or a person's abort or promotion taken at a look (`_manual`); what these
        raise goes to `run`'s handlers as the steps' own errors do."""
        try:
            return self._steps(state, first)
        except ManualAbort as manual:
            self._end_step(state, "aborted")
            self.ended_by = manual.request
            return self._abort(state, manual_reason(manual.request))
        except ManualPromote as manual:
            self._end_step(state, "manual promotion")
            return self._manual_promote(state, manual.request)

    def _manual_promote(self, state: Recorder, request: ActionRequest) -> Outcome:
        """100 % to the canary because a person said so: recorded as a manual promotion (the
        step's verdict, `promotion` in the progress, the decision), never as a pass."""
        reason = manual_reason(request)
        self.deps.gate.wait_ready(self._health_seen)  # pods not Ready: an abort, not this
        self.ended_by = request
        state.progress["promotion"] = {"basis": "manual", **request.as_dict()}
        weights = self._write(state, 100)
        self._start_step(state, len(self.rollout.analysed_steps) + 1, weights)
        self._end_step(state, reason)
        return self._finish(state, PROMOTED, reason)

    def _manual(self, state: Recorder, number: int, weights: Weights) -> None:
        """Act on a person's request, if one waits (`strategies.manual`): abort and promote
        leave the step (raised), pause and resume hold or release the canary's weight."""
        now = self.deps.clock.now()
        request = take_request(self.deps.store, state.run_id, state.progress, now)
        if request is None:
            return
        self.log.warning("a person's request", action=request.action, by=request.by,
                         reason=request.reason, step=number)  # fmt: skip
        if request.action == "abort":
            raise ManualAbort(request)
        if request.action == "promote":
            raise ManualPromote(request)
        if request.action == "pause":
            note = "" if hold(state.progress, request, now, weights.canary) else "already held"
        else:
            note = "" if release(state.progress, now) is not None else "was not paused"
        state.save()
        self.on_message(
            f"{request.action} by {request.by}"
            + (f" ({note})" if note else "")
            + f": canary at {weights.canary} %"
        )
        if self.recorder is not None:
            self.recorder.journal.record(
                manual_event(
                    self.recorder.run, request, time=now, step=number, weight=weights.canary,
                    note=note,
                )
            )  # fmt: skip

    def _watch_step(
        self, state: Recorder, number: int, weights: Weights, started: datetime
    ) -> AnalysisReport:
        clock = self.deps.clock
        interval = self.spec.interval
        last = number == len(self.rollout.analysed_steps)
        overtime = self.extra_looks * interval if last else 0.0
        while True:
            # the step's end moves by the time people held it
            end = started + timedelta(
                seconds=self.rollout.step_duration + held_seconds(state.progress)
            )
            left = (end - clock.now()).total_seconds()
            holding = held(state.progress) or self._holding or bool(self._metric_hold)
            clock.sleep(interval if holding else max(0.0, min(interval, left + overtime)))
            self._manual(state, number, weights)
            end = started + timedelta(
                seconds=self.rollout.step_duration + held_seconds(state.progress)
            )
            self._health_seen(self.deps.gate.check())
            self.deps.router.verify()
            report = self._look(state)
            left = (end - clock.now()).total_seconds()
            if self.recorder is not None:
                self.recorder.on_look(
                    LoopLook(
                        step=number,
                        weight=weights.canary,
                        look=state.looks,
                        time=clock.now(),
                        report=report,
                        health=self._health_now,
                    )
                )
            if self.on_look is not None:
                self.on_look(
                    LookEvent(
                        step=number,
                        steps=len(self.rollout.analysed_steps),
                        weights=weights,
                        look=state.looks,
                        report=report,
                        seconds_left=max(left, 0.0),
                    )
                )
            if report.verdict is Verdict.FAIL:
                return report
            if held(state.progress):  # a person's pause: no step ends until resumed
                continue
            if self._holding:  # the health gate holds: no step ends until it clears
                continue
            if self._metrics_hold(report, number, weights.canary) and left > -max(
                overtime, self.rollout.step_duration
            ):  # an SLO breach holds the step (up to one more step's time), then a person decides
                continue
            if left <= 0 and (report.verdict is not Verdict.INCONCLUSIVE or left <= -overtime):
                return report

"""The standalone canary: move the route's weights step by step, look every interval, decide.

Rules (those of `analyzer.canary`, with a real router, pods and the run store):
* The analysis is one run of the run core over the whole rollout: every look judges all traffic
  since the run started (`analyzer.runs.model.look_window`), failures are sticky.
* Before the first weight and before every increase the canary's pods must be Ready
  (`strategies.kube.pods.PodGate`); during a step each look checks them again. A fatal pod reason or
  pods not Ready for `podReadyTimeout` aborts the run: traffic back on stable.
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
from analyzer.runs.store import RunStore, StoreUnavailable
from analyzer.spec import SpecError
from analyzer.verdicts import AnalysisReport, Verdict
from metrics.source import MetricSource
from strategies.events import CanaryRecorder
from strategies.kube.istio import TrafficChanged, Weights
from strategies.kube.pods import PodState, PodsUnhealthy
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
    def wait_ready(self) -> PodState: ...
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
        look_intervals: bool = False,
        restart: bool = False,
    ) -> None:
        """`extra_looks`: the last analysed step goes on looking up to this many intervals past
        its end while undecided; `look_intervals`: each look judges the run's traffic interval by
        interval (as `verdict analyze` does) instead of as one window since the start."""
        self.extra_looks = extra_looks
        self.look_intervals = look_intervals
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
            interval=self.spec.interval if self.look_intervals else None,
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

    def _finish(self, state: Recorder, decision: str, reason: str) -> Outcome:
        state.progress["state"] = decision
        state.progress["reason"] = reason
        state.save()
        if self.recorder is not None:
            self.recorder.finish(CanaryResult(decision=decision, reason=reason, final=self.final))
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
            outcome = self._steps(state, first)
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
            return self._abort(state, f"canary pods unhealthy: {error}")
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

    def _abort(self, state: Recorder, reason: str) -> Outcome:
        if state.progress["weights"]["canary"] > 0:
            self._back_to_stable(state)
        return self._finish(state, ABORTED, reason)

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
                self.deps.gate.wait_ready()
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
        self.deps.gate.wait_ready()
        weights = self._write(state, 100)
        self._start_step(state, len(self.rollout.analysed_steps) + 1, weights)
        self._end_step(state, "promoted")
        return self._finish(state, PROMOTED, reason)

    def _watch_step(
        self, state: Recorder, number: int, weights: Weights, started: datetime
    ) -> AnalysisReport:
        clock = self.deps.clock
        end = started + timedelta(seconds=self.rollout.step_duration)
        interval = self.spec.interval
        last = number == len(self.rollout.analysed_steps)
        overtime = self.extra_looks * interval if last else 0.0
        while True:
            left = (end - clock.now()).total_seconds()
            clock.sleep(max(0.0, min(interval, left + overtime)))
            self.deps.gate.check()
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
            if left <= 0 and (report.verdict is not Verdict.INCONCLUSIVE or left <= -overtime):
                return report

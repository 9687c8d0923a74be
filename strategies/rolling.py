"""Rolling update: follow a Deployment's own rolling update, comparing new pods with old.

* The new and the previous ReplicaSets (by revision) give `{{ newHash }}` / `{{ oldHash }}` for
  the analysis' matchers (their `pod-template-hash`); the Deployment moves at its own pace
  (its maxSurge / maxUnavailable).
* Every interval one look judges the new pods against the old ones since the run started.
* A fail: the Deployment is paused (`spec.paused: true`), rolled back to the previous
  ReplicaSet's template as `kubectl rollout undo` does, resumed, and the rollback is checked to
  complete (all replicas updated and ready) within `podReadyTimeout`.
* The new ReplicaSet's pods go through the health gate (`strategies.health`) at every look: a
  failing gate rolls back as a fail does, the decision told as the gate's kind (`image-pull`,
  `readiness`, ..., with the findings in its `extra.health`); a hold (Pending for resources, the
  Argo CD Application out of sync) is recorded, told once as a decision of its kind (`pending`:
  the platform team's route) and waited out (the update cannot complete meanwhile). After a
  rollback it is checked (`strategies.recovery`: complete, the old ReplicaSet's pods Ready, the
  old version's error rates back at their pre-run level) and recorded (`rollback` in the
  progress).
* People's requests (`strategies.manual`, `verdict canary abort|promote|pause|resume`) are read
  at every look: abort rolls back as a fail does; promote ends the run as a manual promotion
  (the update goes on without Verdict); pause pauses the Deployment (`spec.paused: true`,
  recorded before it is sent) and the run looks on until resume unpauses it.
* The update complete: promoted on a pass; undecided: `onTimeout` (`pause`: exit 3 for a person,
  `abort`: rolled back, `promote`: promoted).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol

import structlog

from analyzer.clock import Clock, format_time
from analyzer.notify import Notifier
from analyzer.runs.model import RunKey
from analyzer.runs.requests import ActionRequest
from analyzer.runs.store import RunStore
from analyzer.verdicts import AnalysisReport, Verdict
from metrics.source import MetricSource
from strategies.health import Act, Finding
from strategies.kube.deployments import DeploymentOps, Revisions, complete, revision
from strategies.kube.pods import PodState, PodsUnhealthy
from strategies.manual import (
    ManualAbort,
    ManualPromote,
    held,
    hold,
    manual_event,
    manual_reason,
    release,
    take_request,
)
from strategies.record import ABORTED, INTERRUPTED, PAUSED, PROMOTED, Outcome, Recorder
from strategies.recovery import Part, check_of, rates_since
from strategies.restore import RestoreFailed, RestorePolicy, until_restored
from strategies.rollout_file import RolloutFile


class Gate(Protocol):
    def check(self) -> PodState: ...


class RollingRollout:
    def __init__(
        self,
        file: RolloutFile,
        *,
        ops: DeploymentOps,
        source: MetricSource,
        store: RunStore,
        clock: Clock,
        on_message: Any = None,
        notifier: Notifier | None = None,
        restart: bool = False,
        gate_for: Callable[[str], Gate] | None = None,
        new_gate_for: Callable[[str], Gate] | None = None,
    ) -> None:
        """`gate_for(selector)`: the health gate over the pods a label selector matches (the
        new ReplicaSet's during the update, the old one's after a rollback); `new_gate_for`,
        when given, the new ReplicaSet's (with the Argo CD Application, say)."""
        self.gate_for = gate_for
        self.new_gate_for = new_gate_for or gate_for
        self.restart = restart
        self.file = file
        self.r = file.rollout
        self.ops = ops
        self.clock = clock
        self.recorder = Recorder(
            file.analysis, store, source, clock, notifier=notifier, way="rolling"
        )
        self.say = on_message or (lambda _m: None)
        self.log = structlog.get_logger().bind(deployment=ops.where)

    def _finish(
        self,
        decision: str,
        reason: str,
        verdict: str,
        *,
        outcome: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome:
        self.log.info("rolling update finished", decision=decision, reason=reason)
        return self.recorder.finish(decision, reason, verdict, outcome=outcome, extra=extra)

    def _rollback(
        self,
        revisions: Revisions,
        why: str,
        decision: str = ABORTED,
        *,
        verdict: str = "fail",
        outcome: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Outcome:
        started = self.recorder.run.started_at if self.recorder.run is not None else None
        release(self.recorder.progress, self.clock.now())  # the undo resumes the Deployment
        done = self._undo(revisions)
        state = "complete" if done else f"not complete after {self.r.pod_ready_timeout:g} s"
        reason = (
            f"rolled back to revision {revision(revisions.old)} (pod-template-hash "
            f"{revisions.old_hash}): rollback {state}; {why}"
        )
        ended = self._finish(decision, reason, verdict, outcome=outcome, extra=extra)
        if started is not None:
            ended.rollback = self._verify_rollback(revisions, done, started)
        return ended

    def _pods(self, pod_hash: str) -> str:
        """The label selector of the Deployment's pods of one ReplicaSet (by its hash)."""
        labels = dict((self.ops.get()["spec"]["selector"] or {}).get("matchLabels") or {})
        labels["pod-template-hash"] = pod_hash
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))

    def _note(self, findings: tuple[Finding, ...]) -> list[Finding]:
        """Add the findings not yet in the run's progress (`health`); returns those."""
        seen = self.recorder.progress.setdefault("health", [])
        known = {(e.get("kind"), e.get("subject"), e.get("reason")) for e in seen}
        added = [f for f in findings if f.key not in known]
        seen.extend(f.as_json() for f in added)
        return added

    def _health_seen(self, health: PodState) -> None:
        """One look of the gate: new findings recorded, a hold recorded and told once when it
        starts (a decision of its kind: `pending`, ...), a hold that cleared noted."""
        added = self._note(health.findings)
        current = {f.key for f in health.findings}
        now = format_time(self.clock.now())
        for entry in self.recorder.progress.get("health") or []:
            key = (entry.get("kind"), entry.get("subject"), entry.get("reason"))
            if entry.get("act") == "hold" and not entry.get("cleared") and key not in current:
                entry["cleared"] = now
                self.say(f"hold cleared: {entry.get('subject')}: {entry.get('reason')}")
        for f in added:
            if f.act is not Act.HOLD:
                continue
            reason = f"held (no rollback; the update waits for it): {f.text()}"
            self.say(reason)
            self.log.warning("rollout held", kind=f.kind, subject=f.subject, reason=f.reason)
            self.recorder.note(f.kind, reason, extra={"health": [f.as_json()]})

    def _manual(self) -> None:
        """Act on a person's request, if one waits (`strategies.manual`): abort and promote
        end the run (raised); pause and resume pause or unpause the Deployment, recorded
        before it is sent (I3)."""
        now = self.clock.now()
        progress = self.recorder.progress
        request = take_request(self.recorder.store, self.recorder.run_id, progress, now)
        if request is None:
            return
        self.log.warning("a person's request", action=request.action, by=request.by,
                         reason=request.reason)  # fmt: skip
        if request.action == "abort":
            raise ManualAbort(request)
        if request.action == "promote":
            raise ManualPromote(request)
        if request.action == "pause":
            deployment = self.ops.get()
            want = int(deployment["spec"].get("replicas", 1)) or 1
            updated = int((deployment.get("status") or {}).get("updatedReplicas", 0))
            note = "" if hold(progress, request, now, round(100 * updated / want)) else "already held"
        else:
            note = "" if release(progress, now) is not None else "was not paused"
        self.recorder.save()
        if not note:
            (self.ops.pause if request.action == "pause" else self.ops.resume)()
        self.say(f"{request.action} by {request.by}" + (f" ({note})" if note else "")
                 + f": {self.ops.where} {'paused' if held(progress) else 'rolling'}")  # fmt: skip
        self.recorder.record(
            manual_event(self.recorder.info, request, time=now, step=1, weight=None, note=note)
        )

    def _verdict_now(self) -> str:
        final = self.recorder.final
        return str(final.verdict) if final is not None else "inconclusive"

    def _verify_rollback(
        self, revisions: Revisions, complete: bool, started: datetime
    ) -> dict[str, Any]:
        """One interval after the undo: the rollback complete, the old ReplicaSet's pods Ready,
        the old version's error rates back at their pre-run level (`strategies.recovery`);
        recorded in the progress (`rollback`), never changing the decision (I6)."""
        restored = self.clock.now()
        try:
            self.clock.sleep(self.file.analysis.interval)
            parts = [Part("rollout", complete, f"{self.ops.where} rolled back to "
                          f"{revisions.old_hash}: {'complete' if complete else 'not complete'}")]  # fmt: skip
            if self.gate_for is not None:
                old = self.gate_for(self._pods(revisions.old_hash))
                try:
                    pods = old.check()
                    parts.append(Part("old pods", pods.ready, pods.summary))
                except PodsUnhealthy as error:
                    parts.append(Part("old pods", False, str(error)))
            run = self.recorder.run
            assert run is not None
            parts += rates_since(self.recorder.plan, self.recorder.source, dict(run.params),
                                 started=started, restored=restored, now=self.clock.now())  # fmt: skip
            check = check_of(parts, self.clock.now())
        except Exception as error:
            check = check_of([Part("check", False, f"could not be made: {error}")], self.clock.now())
        found = check.as_json()
        self.recorder.progress["rollback"] = found
        try:
            self.recorder.save()
        except Exception as error:
            self.log.error("the rollback's check could not be recorded", error=str(error))
        (self.log.info if check.verified else self.log.error)(check.text())
        self.say(check.text())
        return found

    def _undo(self, revisions: Revisions) -> bool:
        """Pause, undo and resume until the old template reads back (I2); whether the rollback
        completed within `podReadyTimeout`."""

        def undo() -> None:
            self.ops.pause()
            self.ops.undo(revisions.old)
            self.ops.resume()

        # I2: paused, undone and resumed until the read-back shows the old template again
        until_restored(
            undo,
            lambda: self.ops.rolled_back_to(revisions.old),
            what=self.ops.where,
            clock=self.clock,
            policy=RestorePolicy(deadline=self.r.rollback_deadline),
        )
        self.recorder.progress["rolledBackTo"] = revisions.old_hash
        done = self.ops.wait_complete(self.r.pod_ready_timeout)
        self.recorder.progress["rollbackComplete"] = done
        return done

    def _manual_promote(self, request: ActionRequest) -> Outcome:
        """A person's promotion: the run ends as a manual promotion (never a pass); a Deployment
        a person paused is unpaused first (recorded before it is sent), so the update goes on
        without Verdict."""
        progress = self.recorder.progress
        progress["promotion"] = {"basis": "manual", **request.as_dict()}
        if release(progress, self.clock.now()) is not None:
            self.recorder.save()
            self.ops.resume()
        return self._finish(
            PROMOTED,
            f"{manual_reason(request)}: the update goes on without Verdict",
            self._verdict_now(),
            extra={"manual": request.as_dict()},
        )

    def _ended(self, key: RunKey) -> Outcome | None:
        """I5: the last run of this update ended (promoted, aborted): what it decided, to say
        so and do nothing; None otherwise."""
        previous = self.recorder.store.find(key)
        progress = ((previous.answer or {}).get("rollout") if previous else None) or {}
        state = progress.get("state")
        if previous is None or state not in (PROMOTED, ABORTED):
            return None
        reason = (
            f"run {previous.id} already {state} this update of {self.ops.where} "
            f"({progress.get('reason') or 'no reason recorded'}); nothing done "
            "(--restart starts a new run)"
        )
        self.say(reason)
        return Outcome(
            decision=str(state), reason=reason, run_id=previous.id,
            steps=list(progress.get("steps") or []),
        )  # fmt: skip

    def run(self) -> Outcome:
        revisions = self.ops.revisions()
        now = self.clock.now()
        key = RunKey(
            self.file.analysis.name, self.r.namespace, str(self.r.deployment), revisions.new_hash
        )
        ended = self._ended(key)
        if ended is not None:
            if not self.restart:
                return ended
            attempt = 2
            while self.recorder.store.find(replace(key, canary_hash=f"{key.canary_hash}-{attempt}")):
                attempt += 1
            key = replace(key, canary_hash=f"{key.canary_hash}-{attempt}")
        params = {
            "namespace": self.r.namespace,
            "rollout": str(self.r.deployment),
            "canaryHash": revisions.new_hash,
            "stableHash": revisions.old_hash,
            "newHash": revisions.new_hash,
            "oldHash": revisions.old_hash,
        }
        progress: dict[str, Any] = {
            "strategy": "rolling",
            "deployment": f"{self.r.namespace}/{self.r.deployment}",
            "state": "running",
            "newHash": revisions.new_hash,
            "oldHash": revisions.old_hash,
            "steps": [
                {
                    "step": 1,
                    "newHash": revisions.new_hash,
                    "start": format_time(now),
                    "end": None,
                    "verdict": None,
                }
            ],
            "reason": "",
        }
        report: AnalysisReport | None = None
        try:
            # from here on Verdict follows the update: an error stop rolls it back (I2)
            self.recorder.start(key, params, now, progress)
            self.say(
                f"following {self.ops.where}: new {revisions.new_hash}, old {revisions.old_hash}"
            )
            pods = self._pods(revisions.new_hash)
            gate = self.new_gate_for(pods) if self.new_gate_for else None
            while True:
                self.clock.sleep(self.file.analysis.interval)
                try:
                    self._manual()
                except ManualAbort as manual:
                    return self._rollback(
                        revisions,
                        manual_reason(manual.request),
                        verdict=self._verdict_now(),
                        extra={"manual": manual.request.as_dict()},
                    )
                except ManualPromote as manual:
                    return self._manual_promote(manual.request)
                if gate is not None:
                    try:
                        self._health_seen(gate.check())
                    except PodsUnhealthy as error:
                        findings = tuple(f for f in error.findings if isinstance(f, Finding))
                        self._note(findings)
                        return self._rollback(
                            revisions,
                            f"the health gate failed: {error}",
                            outcome=findings[0].kind if findings else None,
                            extra={"health": [f.as_json() for f in findings]}
                            if findings
                            else None,
                        )
                report = self.recorder.look()
                deployment = self.ops.get()
                status = deployment.get("status") or {}
                self.say(
                    f"look: {report.verdict}; updated {status.get('updatedReplicas', 0)}/"
                    f"{deployment['spec'].get('replicas', 1)}"
                )
                if report.verdict is Verdict.FAIL:
                    return self._rollback(revisions, report.reason)
                if complete(deployment) and not held(self.recorder.progress):
                    break
        except KeyboardInterrupt:
            return self._finish(
                INTERRUPTED, "interrupted: the Deployment left as it is", "interrupted"
            )
        except RestoreFailed:
            raise
        except Exception as error:
            # Prometheus, the API or the store failing mid-update: safe by default, roll back
            self.log.error("rolling update stopped by an error; rolling back", error=str(error))
            restore_failed: RestoreFailed | None = None
            try:
                self._undo(revisions)
            except RestoreFailed as failed:
                restore_failed = failed
            except Exception as other:
                self.log.error("could not roll back", error=str(other))
            reason = f"stopped by an error: {error}"
            if restore_failed is not None:
                reason += f"; {restore_failed}"
            try:
                self._finish(ABORTED, reason, "error")
            except Exception as record:
                self.log.error("the run's end could not be recorded", error=str(record))
            if restore_failed is not None:
                raise restore_failed from error
            raise
        if report.verdict is Verdict.PASS:
            return self._finish(PROMOTED, f"update complete: {report.reason}", "pass")
        if self.r.on_timeout == "abort":
            return self._rollback(revisions, f"undecided (onTimeout: abort): {report.reason}")
        slo_hold = any(m.held for m in report.metrics)  # an SLO breach: never promoted undecided
        if self.r.on_timeout == "promote" and not slo_hold:
            return self._finish(
                PROMOTED, f"update complete, undecided: {report.reason}", "inconclusive"
            )
        if slo_hold:
            return self._finish(
                PAUSED, f"update complete, held by the metrics: a person decides: {report.reason}",
                "inconclusive",
            )
        return self._finish(
            PAUSED, f"update complete, undecided: a person decides: {report.reason}", "inconclusive"
        )

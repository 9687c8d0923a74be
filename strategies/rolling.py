"""Rolling update: follow a Deployment's own rolling update, comparing new pods with old.

* The new and the previous ReplicaSets (by revision) give `{{ newHash }}` / `{{ oldHash }}` for
  the analysis' matchers (their `pod-template-hash`); the Deployment moves at its own pace
  (its maxSurge / maxUnavailable).
* Every interval one look judges the new pods against the old ones since the run started.
* A fail: the Deployment is paused (`spec.paused: true`), rolled back to the previous
  ReplicaSet's template as `kubectl rollout undo` does, resumed, and the rollback is checked to
  complete (all replicas updated and ready) within `podReadyTimeout`.
* The update complete: promoted on a pass; undecided: `onTimeout` (`pause`: exit 3 for a person,
  `abort`: rolled back, `promote`: promoted).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import structlog

from analyzer.clock import Clock, format_time
from analyzer.runs.model import RunKey
from analyzer.runs.store import RunStore
from analyzer.verdicts import AnalysisReport, Verdict
from metrics.source import MetricSource
from strategies.kube.deployments import DeploymentOps, Revisions, complete, revision
from strategies.record import ABORTED, INTERRUPTED, PAUSED, PROMOTED, Outcome, Recorder
from strategies.restore import RestorePolicy, until_restored
from strategies.rollout_file import RolloutFile


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
        restart: bool = False,
    ) -> None:
        self.restart = restart
        self.file = file
        self.r = file.rollout
        self.ops = ops
        self.clock = clock
        self.recorder = Recorder(file.analysis, store, source, clock)
        self.say = on_message or (lambda _m: None)
        self.log = structlog.get_logger().bind(deployment=ops.where)

    def _finish(self, decision: str, reason: str, verdict: str) -> Outcome:
        self.log.info("rolling update finished", decision=decision, reason=reason)
        return self.recorder.finish(decision, reason, verdict)

    def _rollback(self, revisions: Revisions, why: str, decision: str = ABORTED) -> Outcome:
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
        state = "complete" if done else f"not complete after {self.r.pod_ready_timeout:g} s"
        reason = (
            f"rolled back to revision {revision(revisions.old)} (pod-template-hash "
            f"{revisions.old_hash}): rollback {state}; {why}"
        )
        self.recorder.progress["rollbackComplete"] = done
        return self._finish(decision, reason, "fail")

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
        self.recorder.start(key, params, now, progress)
        self.say(f"following {self.ops.where}: new {revisions.new_hash}, old {revisions.old_hash}")
        report: AnalysisReport | None = None
        try:
            while True:
                self.clock.sleep(self.file.analysis.interval)
                report = self.recorder.look()
                deployment = self.ops.get()
                status = deployment.get("status") or {}
                self.say(
                    f"look: {report.verdict}; updated {status.get('updatedReplicas', 0)}/"
                    f"{deployment['spec'].get('replicas', 1)}"
                )
                if report.verdict is Verdict.FAIL:
                    return self._rollback(revisions, report.reason)
                if complete(deployment):
                    break
        except KeyboardInterrupt:
            return self._finish(
                INTERRUPTED, "interrupted: the Deployment left as it is", "interrupted"
            )
        if report.verdict is Verdict.PASS:
            return self._finish(PROMOTED, f"update complete: {report.reason}", "pass")
        if self.r.on_timeout == "abort":
            return self._rollback(revisions, f"undecided (onTimeout: abort): {report.reason}")
        if self.r.on_timeout == "promote":
            return self._finish(
                PROMOTED, f"update complete, undecided: {report.reason}", "inconclusive"
            )
        return self._finish(
            PAUSED, f"update complete, undecided: a person decides: {report.reason}", "inconclusive"
        )

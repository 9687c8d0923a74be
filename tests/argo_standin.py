"""A small stand-in for Argo Rollouts' controller, over the Kubernetes API test server.

It changes a canary Rollout's status as Argo does (argo-rollouts.md §3-4), for the steps the tests
use: `setWeight` sets the canary weight and moves on; `pause` adds the `CanaryPauseStep` pause
condition (`controllerPause: true`) and waits: for a promote (the condition cleared while
`controllerPause` is still true), or for its `duration` to pass (timed pause) unless
`spec.paused` holds it; after the last step the canary becomes stable (phase Healthy); an abort
(`status.abort`) sends the canary weight back to 0 (phase Degraded). `observedGeneration` follows
`metadata.generation` at each reconcile.

`install()` makes it reconcile after every write over HTTP (so a promote is acted on at once);
`reconcile()` runs it by hand (after moving the clock, for timed pauses); `run_in_background()`
reconciles every 0.2 s in a thread (live tests). `weight(namespace, name)` is the canary weight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from analyzer.durations import parse_seconds
from tests.kube_server import KubeServer, Resource

ARGO = ("argoproj.io", "v1alpha1", "rollouts")
PAUSE_STEPS: list[dict[str, Any]] = [
    {"setWeight": 5},
    {"pause": {}},
    {"setWeight": 10},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
]
"""The canary steps of the issue's scenario: 5, 10 and 50 %, each followed by `pause: {}`."""
PROMOTE = {"status": {"pauseConditions": None}}
"""`kubectl argo rollouts promote` at a paused step (sent to `/status`)."""
ABORT = {"status": {"abort": True}}
"""`kubectl argo rollouts abort` (sent to `/status`)."""


def _utc(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def canary_rollout(
    name: str,
    namespace: str,
    *,
    analysis: str,
    steps: list[dict[str, Any]],
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A canary Rollout opted in to Verdict (valid against the CRD)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"verdict.dev/analysis": analysis, **(annotations or {})},
        },
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": f"{name}:1"}]},
            },
            "strategy": {
                "canary": {
                    "canaryService": f"{name}-canary",
                    "stableService": f"{name}-stable",
                    "steps": steps,
                }
            },
        },
    }


class ArgoStandIn:
    def __init__(self, kube: KubeServer, now: Callable[[], datetime] | None = None) -> None:
        self.kube = kube
        self.now = now or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self.history: list[tuple[str, int, str]] = []  # (rollout, step index, phase) as seen

    def install(self) -> ArgoStandIn:
        def react(server: KubeServer, resource: Resource, obj: dict[str, Any]) -> None:
            if resource.plural == "rollouts":
                meta = obj["metadata"]
                self.reconcile(meta["namespace"], meta["name"])

        self.kube.react(react)
        return self

    def start_update(self, namespace: str, name: str, *, canary: str, stable: str) -> None:
        """A new pod template: the update starts at step 0 (the stable version had 100 %)."""

        def change(obj: dict[str, Any]) -> None:
            obj["status"] = {
                "currentPodHash": canary,
                "stableRS": stable,
                "currentStepIndex": 0,
                "observedGeneration": str(obj["metadata"]["generation"]),
                "phase": "Progressing",
                "canary": {
                    "weights": {
                        "canary": {"weight": 0, "podTemplateHash": canary},
                        "stable": {"weight": 100, "podTemplateHash": stable},
                    }
                },
            }

        self.kube.modify(*ARGO, namespace, name, change)
        self.reconcile(namespace, name)

    def weight(self, namespace: str, name: str) -> int:
        try:
            obj = self.kube.get(*ARGO, namespace, name)
        except KeyError:
            return 0
        weights = (obj.get("status", {}).get("canary") or {}).get("weights") or {}
        return int((weights.get("canary") or {}).get("weight", 0))

    def reconcile(self, namespace: str, name: str) -> None:
        with self._lock:
            self.kube.modify(*ARGO, namespace, name, self._step)
            obj = self.kube.get(*ARGO, namespace, name)
            status = obj.get("status", {})
            entry = (name, int(status.get("currentStepIndex") or 0), str(status.get("phase")))
            if not self.history or self.history[-1] != entry:
                self.history.append(entry)

    def _step(self, obj: dict[str, Any]) -> None:
        status = obj.setdefault("status", {})
        status["observedGeneration"] = str(obj["metadata"]["generation"])
        canary_hash = status.get("currentPodHash")
        if not canary_hash or canary_hash == status.get("stableRS"):
            return
        if status.get("abort"):
            self._set_weight(status, 0)
            status.pop("pauseConditions", None)
            status["controllerPause"] = False
            status["currentStepIndex"] = 0
            status["phase"] = "Degraded"
            status["message"] = "RolloutAborted: Rollout aborted update"
            return
        steps = obj["spec"]["strategy"]["canary"].get("steps", [])
        index = int(status.get("currentStepIndex") or 0)
        while index < len(steps):
            step = steps[index]
            if "setWeight" in step:
                self._set_weight(status, int(step["setWeight"]))
                index += 1
                continue
            if "pause" in step:
                conditions = status.get("pauseConditions") or []
                if conditions:
                    duration = (step["pause"] or {}).get("duration")
                    started = datetime.fromisoformat(
                        conditions[0]["startTime"].replace("Z", "+00:00")
                    )
                    ends = started + timedelta(seconds=parse_seconds(duration or 0))
                    if duration is None or obj["spec"].get("paused") or self.now() < ends:
                        status["phase"] = "Paused"
                        break
                    status.pop("pauseConditions", None)
                    status["controllerPause"] = False
                    index += 1
                    continue
                if status.get("controllerPause"):  # promoted: the condition was cleared
                    status["controllerPause"] = False
                    index += 1
                    continue
                if obj["spec"].get("paused"):
                    status["phase"] = "Paused"
                    break
                status["pauseConditions"] = [
                    {"reason": "CanaryPauseStep", "startTime": _utc(self.now())}
                ]
                status["controllerPause"] = True
                status["phase"] = "Paused"
                break
            index += 1  # steps the stand-in does not model pass through
        status["currentStepIndex"] = index
        if index >= len(steps):
            status["stableRS"] = canary_hash
            self._set_weight(status, 0, stable=canary_hash)
            status.pop("pauseConditions", None)
            status["controllerPause"] = False
            status["phase"] = "Healthy"
        elif status.get("phase") != "Paused" or not status.get("pauseConditions"):
            status["phase"] = "Paused" if obj["spec"].get("paused") else "Progressing"

    @staticmethod
    def _set_weight(status: dict[str, Any], weight: int, stable: str | None = None) -> None:
        weights = status.setdefault("canary", {}).setdefault("weights", {})
        weights.setdefault("canary", {})["weight"] = weight
        weights.setdefault("stable", {})["weight"] = 100 - weight
        if stable is not None:
            weights["stable"]["podTemplateHash"] = stable

    @contextmanager
    def run_in_background(self, namespace: str, name: str, every: float = 0.2) -> Iterator[None]:
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(every):
                self.reconcile(namespace, name)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)

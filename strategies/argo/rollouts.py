"""The Argo Rollouts actuator: promote, pause and abort a Rollout exactly as the kubectl plugin does.

The patches are those of `kubectl argo rollouts promote / pause / abort` (argo-rollouts
`pkg/kubectl-argo-rollouts/cmd/{promote,pause,abort}`), all JSON merge patches:

* pause: `{"spec":{"paused":true}}` on the Rollout;
* abort: `{"status":{"abort":true}}` on its `/status` subresource;
* resume (no plugin command of that name: `resume_patches`): the plugin's unpause patch
  `{"spec":{"paused":false}}` (the spec half of `promote`, which skips no step) for a paused
  Rollout, and `kubectl argo rollouts retry rollout`'s `{"status":{"abort":false}}` on
  `/status` for an aborted one;
* promote: first one status patch, on `/status`:
  (a) a canary step analysis Inconclusive with `controllerPause`:
      `{"status":{"pauseConditions":null,"controllerPause":false,"currentStepIndex":i+1}}`;
  (b) else, pause conditions present: `{"status":{"pauseConditions":null}}`;
  (c) else, a canary with steps: `{"status":{"pauseConditions":null,"currentStepIndex":i+1}}`;
  then, if `spec.paused`, `{"spec":{"paused":false}}` on the Rollout. The step index never
  passes the number of steps (the plugin's `if *index < len(steps) { *index++ }`).

The patches are computed by pure functions from the Rollout as read (`promote_patches`, ...);
`ArgoRollouts` sends them with the official `kubernetes` client. Verdict never writes the
VirtualServices or Services of a Rollout: Argo owns them. Also here: the decision annotation and
the Kubernetes Event each decision leaves on the Rollout. The verbs used are those of
`strategies.kube.permissions.CONTROLLER`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
MERGE_PATCH = "application/merge-patch+json"

Rollout = dict[str, Any]


@dataclass(frozen=True)
class Patch:
    """One merge patch: `body` sent to the Rollout (`subresource` None) or to `/status`."""

    body: dict[str, Any]
    subresource: str | None = None


def _steps(rollout: Rollout) -> list[Any] | None:
    canary = (rollout.get("spec", {}).get("strategy") or {}).get("canary")
    if canary is None:
        return None
    return list(canary.get("steps") or [])


def promote_patches(rollout: Rollout) -> list[Patch]:
    """The patches of `kubectl argo rollouts promote` (no flags) for the Rollout as read."""
    spec, status = rollout.get("spec", {}), rollout.get("status", {}) or {}
    steps = _steps(rollout)
    index = int(status.get("currentStepIndex") or 0)
    after = min(index + 1, len(steps)) if steps else index + 1
    step_analysis = ((status.get("canary") or {}).get("currentStepAnalysisRunStatus") or {}).get(
        "status"
    )
    patches: list[Patch] = []
    if steps is not None and step_analysis == "Inconclusive" and status.get("controllerPause"):
        patches.append(
            Patch(
                {
                    "status": {
                        "pauseConditions": None,
                        "controllerPause": False,
                        "currentStepIndex": after,
                    }
                },
                "status",
            )
        )
    elif status.get("pauseConditions"):
        patches.append(Patch({"status": {"pauseConditions": None}}, "status"))
    elif steps:
        patches.append(
            Patch({"status": {"pauseConditions": None, "currentStepIndex": after}}, "status")
        )
    if spec.get("paused"):
        patches.append(Patch({"spec": {"paused": False}}))
    return patches


def pause_patches(rollout: Rollout) -> list[Patch]:
    """`kubectl argo rollouts pause`."""
    return [Patch({"spec": {"paused": True}})]


def abort_patches(rollout: Rollout) -> list[Patch]:
    """`kubectl argo rollouts abort`."""
    return [Patch({"status": {"abort": True}}, "status")]


def resume_patches(rollout: Rollout) -> list[Patch]:
    """Resume: `kubectl argo rollouts retry rollout` for an aborted Rollout, then the plugin's
    unpause patch for a paused one (nothing for a Rollout neither paused nor aborted)."""
    patches: list[Patch] = []
    if (rollout.get("status") or {}).get("abort"):
        patches.append(Patch({"status": {"abort": False}}, "status"))
    if (rollout.get("spec") or {}).get("paused"):
        patches.append(Patch({"spec": {"paused": False}}))
    return patches


PATCHES = {"promote": promote_patches, "pause": pause_patches, "abort": abort_patches}


class RolloutActuator(Protocol):
    """Reads Rollouts and acts on them (promote, pause, abort), and leaves the decision on them."""

    def get(self, namespace: str, name: str) -> Rollout: ...

    def send(self, rollout: Rollout, patches: list[Patch]) -> None: ...

    def annotate(self, rollout: Rollout, annotations: dict[str, str]) -> None: ...

    def event(self, rollout: Rollout, *, reason: str, message: str, warning: bool) -> None: ...


class ArgoRollouts:
    """A `RolloutActuator` over the Kubernetes API (the official client's `ApiClient`)."""

    def __init__(self, api_client: Any, *, component: str = "verdict", instance: str = "") -> None:
        from kubernetes import client

        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)
        self.component = component
        self.instance = instance or component

    def get(self, namespace: str, name: str) -> Rollout:
        found: Any = self._custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )
        return dict(found)

    def send(self, rollout: Rollout, patches: list[Patch]) -> None:
        namespace, name = _where(rollout)
        for patch in patches:
            if patch.subresource == "status":
                self._custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, PLURAL, name, patch.body, _content_type=MERGE_PATCH
                )
            else:
                self._custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, patch.body, _content_type=MERGE_PATCH
                )

    def annotate(self, rollout: Rollout, annotations: dict[str, str]) -> None:
        namespace, name = _where(rollout)
        body = {"metadata": {"annotations": dict(annotations)}}
        self._custom.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE_PATCH
        )

    def event(self, rollout: Rollout, *, reason: str, message: str, warning: bool) -> None:
        namespace, name = _where(rollout)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        meta = rollout.get("metadata", {})
        body: Any = {
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Rollout",
                "name": name,
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": self.component},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self._core.create_namespaced_event(namespace, body)


def _where(rollout: Rollout) -> tuple[str, str]:
    meta = rollout.get("metadata", {})
    return str(meta.get("namespace", "default")), str(meta["name"])

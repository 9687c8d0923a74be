"""Rolling updates: a Deployment's ReplicaSets read, and its rollback as `kubectl rollout undo`.

`undo` sends the JSON patch `kubectl rollout undo` sends (kubectl
`pkg/polymorphichelpers/rollback.go`): `/spec/template` replaced by the previous ReplicaSet's
template without its `pod-template-hash` label, and `/metadata/annotations` by that
ReplicaSet's annotations (except the deployment bookkeeping ones, kept from the Deployment).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Protocol

from strategies.kube.client import NETWORK_ERRORS, Clock
from strategies.kube.errors import DeploymentError, KubeUnreachable

__all__ = ["DeploymentError", "DeploymentOps", "Revisions", "complete", "undo_patch"]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
REVISION = "deployment.kubernetes.io/revision"
HASH_LABEL = "pod-template-hash"
SKIPPED_ANNOTATIONS = (
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
)


class AppsApi(Protocol):
    def read_namespaced_deployment(self, name: str, namespace: str, **kwargs: Any) -> Any: ...
    def patch_namespaced_deployment(
        self, name: str, namespace: str, body: Any, **kwargs: Any
    ) -> Any: ...
    def list_namespaced_replica_set(self, namespace: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class Revisions:
    new: dict[str, Any]
    old: dict[str, Any]

    @property
    def new_hash(self) -> str:
        return str(self.new["metadata"]["labels"][HASH_LABEL])

    @property
    def old_hash(self) -> str:
        return str(self.old["metadata"]["labels"][HASH_LABEL])


def revision(rs: dict[str, Any]) -> int:
    return int((rs.get("metadata", {}).get("annotations") or {}).get(REVISION, "0"))


def undo_patch(deployment: dict[str, Any], previous: dict[str, Any]) -> list[dict[str, Any]]:
    template = copy.deepcopy(previous["spec"]["template"])
    template.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
    current = deployment.get("metadata", {}).get("annotations") or {}
    annotations = {k: v for k, v in current.items() if k in SKIPPED_ANNOTATIONS}
    for k, v in (previous.get("metadata", {}).get("annotations") or {}).items():
        if k not in SKIPPED_ANNOTATIONS:
            annotations[k] = v
    return [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]


def complete(deployment: dict[str, Any]) -> bool:
    """All replicas updated, ready and available, none of an older template left."""
    spec, status = deployment.get("spec", {}), deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    generation = int(deployment.get("metadata", {}).get("generation", 0))
    return (
        int(status.get("observedGeneration", 0)) >= generation
        and int(status.get("updatedReplicas", 0)) == want
        and int(status.get("readyReplicas", 0)) == want
        and int(status.get("availableReplicas", 0)) == want
        and int(status.get("replicas", 0)) == want
    )


class DeploymentOps:
    def __init__(self, api: Any, *, namespace: str, name: str, clock: Clock) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.clock = clock
        self.where = f"Deployment {namespace}/{name}"

    def _call(self, what: str, call: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        try:
            answer = call()
        except ApiException as error:
            if error.status == 404:
                raise DeploymentError(f"{self.where}: {what}: not found") from None
            raise KubeUnreachable(
                f"{self.where}: {what}: the API answered {error.status}"
            ) from None
        except NETWORK_ERRORS as error:
            raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
        return json.loads(answer.data) if hasattr(answer, "data") else answer

    def get(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call(
            "read",
            lambda: self._api.read_namespaced_deployment(
                self.name, self.namespace, _preload_content=False
            ),
        )
        return found

    def revisions(self) -> Revisions:
        deployment = self.get()
        labels = deployment["spec"]["selector"].get("matchLabels") or {}
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        listed = self._call(
            "list ReplicaSets",
            lambda: self._api.list_namespaced_replica_set(
                self.namespace, label_selector=selector, _preload_content=False
            ),
        )
        uid = deployment["metadata"].get("uid")
        owned = [
            rs
            for rs in listed.get("items", [])
            if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])
        ]
        owned.sort(key=revision, reverse=True)
        if len(owned) < 2:
            raise DeploymentError(
                f"{self.where} has {len(owned)} ReplicaSet(s): a rolling update needs the new "
                "and the previous one"
            )
        return Revisions(new=owned[0], old=owned[1])

    def _patch(self, what: str, body: Any, content_type: str) -> None:
        self._call(
            what,
            lambda: self._api.patch_namespaced_deployment(
                self.name, self.namespace, body, _content_type=content_type
            ),
        )

    def pause(self) -> None:
        self._patch("pause", {"spec": {"paused": True}}, MERGE_PATCH)

    def resume(self) -> None:
        self._patch("resume", {"spec": {"paused": False}}, MERGE_PATCH)

    def undo(self, previous: dict[str, Any]) -> None:
        self._patch("undo", undo_patch(self.get(), previous), JSON_PATCH)

    def rolled_back_to(self, previous: dict[str, Any]) -> bool:
        """Whether the Deployment's template is `previous`'s again and it is not paused (the
        read-back of an undo)."""
        deployment = self.get()
        template = copy.deepcopy(previous["spec"]["template"])
        template.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
        current = copy.deepcopy(deployment.get("spec", {}).get("template") or {})
        current.get("metadata", {}).get("labels", {}).pop(HASH_LABEL, None)
        return current == template and not deployment.get("spec", {}).get("paused")

    def wait_complete(self, timeout: float, poll: float = 1.0) -> bool:
        waited = 0.0
        while not complete(self.get()):
            if waited >= timeout:
                return False
            self.clock.sleep(poll)
            waited += poll
        return True

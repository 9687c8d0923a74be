"""Controller mode's health gate: a Rollout's new pods, their Events and its Argo CD Application,
read over the Kubernetes API and judged by `strategies.health` (the same rules as every way that
acts).

* The new version's pods: the Rollout's `spec.selector.matchLabels` plus
  `rollouts-pod-template-hash=<status.currentPodHash>` (the label Argo puts on the pods of each
  ReplicaSet); the stable version's, after an abort: the same with `status.stableRS`.
* The Application: the one the analysis file names (`argocd:`), else the one the Rollout's
  `argocd.argoproj.io/instance` label (or tracking annotation) names; none: no Argo CD gate.
* No pod at all is not a failure here: Argo creates the pods, and reports a ReplicaSet that
  cannot make them itself.
* An Application that cannot be read (missing, or Verdict may not read its namespace) is logged
  and leaves the pods' judgement alone.
* Reads are shared: the Rollouts of one namespace tick together every interval, and a tick
  that wants the namespace's pod Events (or the same pods) while another tick's read of them is
  in flight waits for that read instead of sending its own (never an older answer: a read that
  has finished is not kept). Each keeps the Events of its own pods.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import structlog

from analyzer.gates import DEFAULT_READINESS_GRACE, ArgoCDSpec, HealthSpec
from metrics.shared_reads import SharedReads
from strategies.health import Health, HealthPolicy, Memory, classify_pods, with_findings
from strategies.kube.argocd import ApplicationGate, app_of
from strategies.kube.pod_watch import PodWatch
from strategies.kube.pods import PodReader, events_of

HASH_LABEL = "rollouts-pod-template-hash"

_log = structlog.get_logger()


def labels_of(rollout: dict[str, Any], pod_hash: str) -> dict[str, str]:
    """The labels of a Rollout's pods of one ReplicaSet (by its pod-template-hash)."""
    spec = rollout.get("spec") or {}
    matched = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = {str(k): str(v) for k, v in matched.items()}
    labels[HASH_LABEL] = pod_hash
    return labels


def selector_of(labels: dict[str, str]) -> str:
    """The label selector of exactly these labels (`a=b,c=d`, sorted)."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def pods_of(rollout: dict[str, Any], pod_hash: str) -> str:
    """The label selector of a Rollout's pods of one ReplicaSet (by its pod-template-hash)."""
    return selector_of(labels_of(rollout, pod_hash))


def policy_of(health: HealthSpec) -> HealthPolicy:
    return HealthPolicy(
        readiness_grace=health.readiness_grace or DEFAULT_READINESS_GRACE,
        max_restarts=health.max_restarts,
        require_pods=False,
    )


class RolloutHealth:
    """Reads what the gate judges for a Rollout (module docstring)."""

    def __init__(self, api_client: Any, *, watched: PodWatch | None = None) -> None:
        """`watched`: the pods kept from a watch (`strategies.kube.pod_watch`), read instead of
        a list while its watch runs; None: every look lists its pods."""
        from kubernetes import client

        self._core = client.CoreV1Api(api_client)
        self._custom = client.CustomObjectsApi(api_client)
        self.shared = SharedReads()
        self.watched = watched

    def pods(
        self,
        rollout: dict[str, Any],
        pod_hash: str,
        *,
        health: HealthSpec,
        memory: Memory,
        now: datetime,
    ) -> Health:
        """The gate over the pods of `pod_hash`; raises `KubeUnreachable` when they cannot be
        listed."""
        namespace = str((rollout.get("metadata") or {}).get("namespace") or "default")
        reader = PodReader(self._core, namespace)
        labels = labels_of(rollout, pod_hash)
        selector = selector_of(labels)
        pods = None if self.watched is None else self.watched.pods(namespace, labels)
        if pods is None:
            pods = self.shared.get(("pods", namespace, selector), lambda: reader.pods(selector))
        names = {str((p.get("metadata") or {}).get("name")) for p in pods}
        events = (
            events_of(self.shared.get(("events", namespace), reader.pod_events), names)
            if names
            else []
        )
        return classify_pods(
            pods, events, now=now, policy=policy_of(health), memory=memory, selector=selector
        )

    def gate(
        self,
        rollout: dict[str, Any],
        pod_hash: str,
        *,
        health: HealthSpec,
        argocd: ArgoCDSpec | None,
        memory: Memory,
        now: datetime,
    ) -> Health:
        """The new pods' health with the Application's findings."""
        found = self.pods(rollout, pod_hash, health=health, memory=memory, now=now)
        ref = app_of(
            rollout,
            named=argocd.application if argocd is not None else None,
            namespace=argocd.namespace if argocd is not None else None,
        )
        if ref is None:
            return found
        try:
            return with_findings(found, ApplicationGate(self._custom, ref).findings(now))
        except Exception as error:
            _log.warning("the Argo CD Application was not read", application=str(ref),
                         error=str(error)[:300])  # fmt: skip
            return found

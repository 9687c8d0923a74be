"""The health gate's reader: the new version's pods and their Events, judged by
`strategies.health` (which says what fails, what holds and what passes).

`PodGate` reads the pods matching a label selector and the namespace's pod Events (list only:
`list` on `pods` and `events`, see `strategies.kube.permissions`), and, when given one, the Argo
CD Application (`strategies.kube.argocd.ApplicationGate`). It keeps the gate's memory between
looks (the run's start, each pod's restarts when first seen).

* `check()`: one look; raises `PodsUnhealthy` (with the findings) when the gate fails: a fatal
  container reason at once, a pod not Ready past `ready_timeout` (the readiness grace), more
  than `max_restarts` restarts, the Application's sync failed or its health Degraded. A hold
  (Pending for resources, the Application OutOfSync) is returned, not raised.
* `wait_ready()`: looks every second until every pod is Ready and nothing holds; a hold waits
  as long as it lasts (the caller is told of each look through `on_health`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

import structlog

from strategies.health import (
    Act,
    Finding,
    Health,
    HealthPolicy,
    Memory,
    classify_pods,
    with_findings,
)
from strategies.kube.client import NETWORK_ERRORS, Clock
from strategies.kube.errors import KubeUnreachable, PodsUnhealthy

__all__ = ["PodGate", "PodReader", "PodState", "PodsUnhealthy", "events_of"]

POLL_SECONDS = 1.0
EVENT_LIMIT = 500
"""The most Events read per look (the newest are what matter; a real API lists oldest first
within the limit, which is fine: a pod's Events are few)."""

PodState = Health
"""What one look at the pods gives (the name the strategies have long used)."""

_log = structlog.get_logger()


class Findings(Protocol):
    """More findings for the gate (the Argo CD Application)."""

    def findings(self, now: Any) -> tuple[Finding, ...]: ...


class PodReader:
    """Lists pods by label selector and the namespace's pod Events."""

    def __init__(self, api: Any, namespace: str) -> None:
        self._api = api
        self.namespace = namespace
        self._events_denied = False

    def pods(self, selector: str) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self._api.list_namespaced_pod(
                self.namespace, label_selector=selector, _preload_content=False
            )
            items: list[dict[str, Any]] = json.loads(listed.data).get("items", [])
        except ApiException as error:
            raise KubeUnreachable(
                f"listing pods {selector} in {self.namespace}: the API answered "
                f"{error.status} {error.reason}"
            ) from None
        except NETWORK_ERRORS as error:
            raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
        return items

    def events(self, pods: set[str]) -> list[dict[str, Any]]:
        """The Events of the named pods (none when Events cannot be read: the gate then judges
        by the pods alone, and says so in the log once)."""
        if not pods:
            return []
        return events_of(self.pod_events(), pods)

    def pod_events(self) -> list[dict[str, Any]]:
        """The namespace's pod Events (the newest `EVENT_LIMIT`; none when they cannot be
        read)."""
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self._api.list_namespaced_event(
                self.namespace,
                field_selector="involvedObject.kind=Pod",
                limit=EVENT_LIMIT,
                _preload_content=False,
            )
            items: list[dict[str, Any]] = json.loads(listed.data).get("items", [])
        except ApiException as error:
            if error.status in (401, 403) and not self._events_denied:
                self._events_denied = True
                _log.warning(
                    "pod Events cannot be read; judging by the pods alone",
                    namespace=self.namespace,
                    status=error.status,
                )
                return []
            if error.status in (401, 403):
                return []
            raise KubeUnreachable(
                f"listing Events in {self.namespace}: the API answered {error.status} "
                f"{error.reason}"
            ) from None
        except NETWORK_ERRORS as error:
            raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
        return items


def events_of(events: list[dict[str, Any]], pods: set[str]) -> list[dict[str, Any]]:
    """The Events of the named pods among `events`."""
    return [e for e in events if (e.get("involvedObject") or {}).get("name") in pods]


class PodGate:
    """The health gate over the pods matching `selector` in `namespace` (module docstring)."""

    def __init__(
        self,
        api: Any,
        *,
        namespace: str,
        selector: str,
        ready_timeout: float,
        clock: Clock,
        max_restarts: int = 3,
        require_pods: bool = True,
        application: Findings | None = None,
    ) -> None:
        self._reader = PodReader(api, namespace)
        self.namespace = namespace
        self.selector = selector
        self.ready_timeout = ready_timeout
        self.policy = HealthPolicy(
            readiness_grace=ready_timeout, max_restarts=max_restarts, require_pods=require_pods
        )
        self.application = application
        self._clock = clock
        self.memory = Memory()
        self.last: Health | None = None

    def template_hash(self) -> str | None:
        """The `pod-template-hash` label of the pods (the first by name), if any."""
        pods = sorted(
            self._reader.pods(self.selector), key=lambda p: str(p.get("metadata", {}).get("name"))
        )
        for pod in pods:
            found = (pod.get("metadata", {}).get("labels") or {}).get("pod-template-hash")
            if found:
                return str(found)
        return None

    def state(self) -> Health:
        """One look, remembered; never raises for what it finds."""
        now = self._clock.now()
        pods = self._reader.pods(self.selector)
        names = {str((p.get("metadata") or {}).get("name")) for p in pods}
        events = self._reader.events(names)
        health = classify_pods(
            pods, events, now=now, policy=self.policy, memory=self.memory, selector=self.selector
        )
        if self.application is not None:
            health = with_findings(health, self.application.findings(now))
        self.memory = health.memory
        self.last = health
        return health

    def check(self) -> Health:
        """One look during the rollout: raises `PodsUnhealthy` when the gate fails."""
        health = self.state()
        if health.act is Act.FAIL:
            raise PodsUnhealthy(health.text(), health.failing)
        return health

    def wait_ready(self, on_health: Callable[[Health], None] | None = None) -> Health:
        """Wait until every pod is Ready and nothing holds; `PodsUnhealthy` as `check` says."""
        while True:
            health = self.check()
            if on_health is not None:
                on_health(health)
            if health.ready and health.act is Act.OK:
                return health
            self._clock.sleep(POLL_SECONDS)

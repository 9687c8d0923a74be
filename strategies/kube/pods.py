"""The pod health gate: the canary's pods must be Ready before traffic moves to them.

A pod whose container waits in `ImagePullBackOff`, `ErrImagePull` or `CrashLoopBackOff` fails the
gate at once; pods that are not all Ready fail it once they have been so for `ready_timeout`
seconds (no pods at all counts as not Ready).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from strategies.kube.client import NETWORK_ERRORS, Clock
from strategies.kube.errors import KubeUnreachable, PodsUnhealthy

__all__ = ["PodGate", "PodState", "PodsUnhealthy", "pod_state"]

FATAL_REASONS = ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff")
POLL_SECONDS = 1.0


class CoreApi(Protocol):
    """The part of `kubernetes.client.CoreV1Api` the gate uses."""

    def list_namespaced_pod(self, namespace: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class PodState:
    ready: bool
    problem: str | None
    """A fatal reason (`pod x: ImagePullBackOff: ...`), or None."""
    summary: str


def pod_state(pods: list[dict[str, Any]], selector: str) -> PodState:
    """Judge pods as the API returns them (plain dicts)."""
    if not pods:
        return PodState(ready=False, problem=None, summary=f"no pods match {selector}")
    unready = []
    for pod in pods:
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status") or {}
        containers = [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]
        for c in containers:
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FATAL_REASONS:
                message = f": {waiting['message']}" if waiting.get("message") else ""
                return PodState(
                    ready=False,
                    problem=f"pod {name}: {waiting['reason']}{message}",
                    summary="",
                )
        conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
        if conditions.get("Ready") != "True":
            unready.append(name)
    if unready:
        return PodState(
            ready=False, problem=None, summary=f"not Ready: {', '.join(sorted(unready))}"
        )
    return PodState(ready=True, problem=None, summary=f"{len(pods)} pods Ready")


class PodGate:
    """Checks the pods matching `selector` in `namespace` (see the module docstring)."""

    def __init__(
        self, api: Any, *, namespace: str, selector: str, ready_timeout: float, clock: Clock
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.selector = selector
        self.ready_timeout = ready_timeout
        self._clock = clock
        self._unready_since: datetime | None = None

    def template_hash(self) -> str | None:
        """The `pod-template-hash` label of the canary's pods (the first by name), if any."""
        pods = sorted(self._pods(), key=lambda p: str(p.get("metadata", {}).get("name")))
        for pod in pods:
            found = (pod.get("metadata", {}).get("labels") or {}).get("pod-template-hash")
            if found:
                return str(found)
        return None

    def state(self) -> PodState:
        return pod_state(self._pods(), self.selector)

    def _pods(self) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self._api.list_namespaced_pod(
                self.namespace, label_selector=self.selector, _preload_content=False
            )
            items: list[dict[str, Any]] = json.loads(listed.data).get("items", [])
        except ApiException as error:
            raise KubeUnreachable(
                f"listing pods {self.selector} in {self.namespace}: the API answered "
                f"{error.status} {error.reason}"
            ) from None
        except NETWORK_ERRORS as error:
            raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
        return items

    def check(self) -> PodState:
        """One look at the pods during the rollout: raises `PodsUnhealthy` on a fatal reason or
        once they have not been Ready for `ready_timeout` seconds."""
        state = self.state()
        now = self._clock.now()
        if state.problem is not None:
            raise PodsUnhealthy(state.problem)
        if state.ready:
            self._unready_since = None
            return state
        if self._unready_since is None:
            self._unready_since = now
        if (now - self._unready_since).total_seconds() >= self.ready_timeout:
            raise PodsUnhealthy(
                f"canary pods ({self.selector}) not Ready after {self.ready_timeout:g} s: "
                f"{state.summary}"
            )
        return state

    def wait_ready(self) -> PodState:
        """Wait until every canary pod is Ready; `PodsUnhealthy` as `check` says."""
        while True:
            state = self.check()
            if state.ready:
                return state
            self._clock.sleep(POLL_SECONDS)

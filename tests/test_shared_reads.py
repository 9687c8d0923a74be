"""The controller's health gate shares reads of a namespace's pod Events (and of the same pods)
between the ticks of its Rollouts that overlap (`metrics.shared_reads.SharedReads`), over the
Kubernetes API test server and the official client."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from analyzer.gates import HealthSpec
from metrics.shared_reads import SharedReads
from strategies.argo.gate import HASH_LABEL, RolloutHealth
from strategies.health import Memory
from tests.kube_server import KubeServer

NS = "shop"


def test_asks_while_a_read_is_in_flight_share_it_and_a_finished_read_is_not_kept() -> None:
    shared = SharedReads()
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def read() -> list[int]:
        calls.append(1)
        started.set()
        release.wait(5)
        return [len(calls)]

    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(shared.get("pods", read)))
    first.start()
    assert started.wait(5)
    others = [
        threading.Thread(target=lambda: answers.append(shared.get("pods", read))) for _ in range(7)
    ]
    for t in others:
        t.start()
    release.set()
    for t in [first, *others]:
        t.join(5)
    assert len(calls) == 1 and shared.reads == 1
    assert answers == [[1]] * 8 and all(a is answers[0] for a in answers)
    assert shared.get("pods", read) == [2] and shared.reads == 2  # read again once finished
    assert shared.get("events", read) == [3]  # another key, another read


def test_a_failed_read_fails_every_ask_that_shared_it_and_the_next_ask_reads_again() -> None:
    shared = SharedReads()
    started, release = threading.Event(), threading.Event()

    def failing() -> list[int]:
        started.set()
        release.wait(5)
        raise ConnectionError("the API is down")

    errors: list[BaseException] = []

    def ask() -> None:
        try:
            shared.get("pods", failing)
        except ConnectionError as error:
            errors.append(error)

    threads = [threading.Thread(target=ask)]
    threads[0].start()
    assert started.wait(5)
    threads += [threading.Thread(target=ask) for _ in range(3)]
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    assert len(errors) == 4 and shared.reads == 1
    assert shared.get("pods", lambda: [7]) == [7]  # no failure is kept


def _rollout(app: str) -> dict[str, Any]:
    return {
        "metadata": {"name": app, "namespace": NS},
        "spec": {"selector": {"matchLabels": {"app": app}}},
    }


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "app:1"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "app", "ready": True, "restartCount": 0, "state": {"running": {}}}
            ],
        },
    }


def _event(pod: str, reason: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod}.{reason.lower()}", "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": NS},
        "reason": reason,
        "message": "Liveness probe failed: connection refused",
        "type": "Warning",
        "count": 1,
        "lastTimestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@pytest.fixture()
def kube() -> Iterator[KubeServer]:
    server = KubeServer().start()
    try:
        yield server
    finally:
        server.stop()


def test_each_rollout_gets_its_own_pods_and_only_their_events(
    kube: KubeServer,
) -> None:
    kube.put(_pod("a-new-1", {"app": "a", HASH_LABEL: "n1"}))
    kube.put(_pod("a-old-1", {"app": "a", HASH_LABEL: "o1"}))
    kube.put(_pod("b-new-1", {"app": "b", HASH_LABEL: "n2"}))
    kube.put(_pod("a-bare", {"app": "a"}))  # no pod-template-hash: not Argo's
    kube.put(_event("b-new-1", "Unhealthy"))
    health = RolloutHealth(kube.api_client())
    now = datetime.now(UTC)
    spec = HealthSpec()

    a = health.pods(_rollout("a"), "n1", health=spec, memory=Memory(), now=now)
    b = health.pods(_rollout("b"), "n2", health=spec, memory=Memory(), now=now)

    uid = {p["metadata"]["name"]: p["metadata"]["uid"] for p in _pods(health, HASH_LABEL)}
    assert a.ready and set(a.memory.restarts) == {uid["a-new-1"]}
    assert b.ready and set(b.memory.restarts) == {uid["b-new-1"]}
    none = health.pods(_rollout("a"), "zzz", health=spec, memory=Memory(), now=now)
    assert not none.ready and none.summary.startswith("no pods match app=a,")
    assert health.shared.reads == 5  # nothing overlapped: pods and Events read for each, none kept
    # the test server answers existence and inequality selectors too
    assert _names(health, HASH_LABEL) == ["a-new-1", "a-old-1", "b-new-1"]
    assert _names(health, f"!{HASH_LABEL}") == ["a-bare"]
    assert _names(health, f"app=a,{HASH_LABEL}!=n1") == ["a-bare", "a-old-1"]


def _pods(health: RolloutHealth, selector: str) -> list[dict[str, Any]]:
    listed: Any = health._core.list_namespaced_pod(
        NS, label_selector=selector, _preload_content=False
    )
    return list(json.loads(listed.data)["items"])


def _names(health: RolloutHealth, selector: str) -> list[str]:
    return sorted(p["metadata"]["name"] for p in _pods(health, selector))

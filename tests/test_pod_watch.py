"""The pods of Argo Rollouts kept from a list and a watch (`strategies.kube.pod_watch`), over
the Kubernetes API test server and the official client: what a tick reads instead of listing
its Rollout's pods. While the watch does not run, `pods()` answers None and the tick lists."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes.client import CoreV1Api

from strategies.argo.gate import HASH_LABEL
from strategies.kube.pod_watch import PodWatch
from tests.kube_server import KubeServer

NS = "shop"


def pod(name: str, pod_hash: str, *, namespace: str = NS, app: str = "checkout",
        ready: bool = True, waiting: str | None = None) -> dict[str, Any]:  # fmt: skip
    state: dict[str, Any] = {"waiting": {"reason": waiting}} if waiting else {"running": {}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": app, HASH_LABEL: pod_hash},
        },
        "spec": {"containers": [{"name": "app", "image": f"{app}:{pod_hash}"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {"name": "app", "ready": ready, "restartCount": 0, "state": state}
            ],
        },
    }


def eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


def names(found: list[dict[str, Any]] | None) -> list[str]:
    assert found is not None
    return sorted(p["metadata"]["name"] for p in found)


@pytest.fixture
def watched(kube: KubeServer) -> Iterator[PodWatch]:
    kube.put(pod("checkout-c1-a", "c1"))
    kube.put(pod("checkout-s1-a", "s1"))
    kube.put(pod("other-c1-a", "c1", app="other"))  # the same hash, another app
    kube.put(pod("checkout-c1-b", "c1", namespace="elsewhere"))
    unlabelled = pod("plain", "x")
    del unlabelled["metadata"]["labels"][HASH_LABEL]
    kube.put(unlabelled)
    w = PodWatch(kube.api_client(), label=HASH_LABEL, namespaces=(NS,), timeout_seconds=5)
    w.start()
    eventually(lambda: w.live(NS), "the watch runs")
    yield w
    w.stop()


def test_the_pods_of_one_version_of_one_app_are_read_from_memory(
    kube: KubeServer, watched: PodWatch
) -> None:
    assert names(watched.pods(NS, {"app": "checkout", HASH_LABEL: "c1"})) == ["checkout-c1-a"]
    assert names(watched.pods(NS, {HASH_LABEL: "c1"})) == ["checkout-c1-a", "other-c1-a"]
    assert names(watched.pods(NS, {"app": "checkout", HASH_LABEL: "nope"})) == []
    assert watched.pods("elsewhere", {HASH_LABEL: "c1"}) is None  # not watched there: list
    kept = watched.pods(NS, {"app": "checkout", HASH_LABEL: "c1"})
    assert kept is not None and "spec" not in kept[0]  # only what the gate judges is kept
    assert kept[0]["status"]["conditions"] == [{"type": "Ready", "status": "True"}]
    lists = [r for r in kube.requests if r.method == "GET" and r.path.endswith("/pods")]
    assert all(r.query.get("labelSelector") == HASH_LABEL for r in lists)


def test_changes_and_deletions_arrive_through_the_watch(
    kube: KubeServer, watched: PodWatch
) -> None:
    version = {"app": "checkout", HASH_LABEL: "c1"}
    kube.put(pod("checkout-c1-a", "c1", ready=False, waiting="CrashLoopBackOff"))
    kube.put(pod("checkout-c1-z", "c1"))

    def crashing() -> bool:
        found = watched.pods(NS, version) or []
        states = {
            p["metadata"]["name"]: p["status"]["containerStatuses"][0]["state"] for p in found
        }
        return states.get("checkout-c1-a") == {"waiting": {"reason": "CrashLoopBackOff"}} and (
            "checkout-c1-z" in states
        )

    eventually(crashing, "the crash and the new pod seen")
    CoreV1Api(kube.api_client()).delete_namespaced_pod("checkout-c1-z", NS, _preload_content=False)
    eventually(lambda: names(watched.pods(NS, version)) == ["checkout-c1-a"], "the deletion seen")
    relabelled = pod("checkout-c1-a", "c2")  # a pod whose hash label changes is filed again
    kube.put(relabelled)
    eventually(lambda: names(watched.pods(NS, version)) == [], "the old filing dropped")
    assert names(watched.pods(NS, {"app": "checkout", HASH_LABEL: "c2"})) == ["checkout-c1-a"]


def test_an_expired_watch_lists_again_and_forgets_pods_deleted_meanwhile(
    kube: KubeServer,
) -> None:
    kube.put(pod("checkout-c1-a", "c1"))
    kube.put(pod("checkout-s1-a", "s1"))
    w = PodWatch(kube.api_client(), label=HASH_LABEL, namespaces=(NS,), timeout_seconds=1)
    w.start()
    try:
        eventually(lambda: w.live(NS), "the watch runs")
        assert names(w.pods(NS, {HASH_LABEL: "s1"})) == ["checkout-s1-a"]
        with kube._lock:  # a deletion no watch event tells: its event is compacted at once
            kube._delete(kube.resource("", "v1", "pods"), NS, "checkout-s1-a")
            kube.compact()
        # the watch ends within its 1 s, resumes from its version, gets 410, lists again
        eventually(lambda: w.pods(NS, {HASH_LABEL: "s1"}) == [], "the silent deletion dropped")
        assert names(w.pods(NS, {HASH_LABEL: "c1"})) == ["checkout-c1-a"]
        lists = [r for r in kube.requests if r.path.endswith("/pods") and "watch" not in r.query]
        assert len(lists) >= 2
    finally:
        w.stop()


def test_while_the_api_fails_the_watch_answers_none_then_runs_again(kube: KubeServer) -> None:
    kube.put(pod("checkout-c1-a", "c1"))
    kube.fail_next("GET", r"/api/v1/namespaces/shop/pods$", 500, times=2)
    w = PodWatch(kube.api_client(), label=HASH_LABEL, namespaces=(NS,), timeout_seconds=5)
    assert w.pods(NS, {HASH_LABEL: "c1"}) is None  # not started: the tick lists
    w.start()
    try:
        eventually(lambda: w.live(NS), "the watch runs after two failed lists", timeout=15)
        assert names(w.pods(NS, {HASH_LABEL: "c1"})) == ["checkout-c1-a"]
        failed = [r for r in kube.requests if r.path.endswith("/pods") and r.status == 500]
        assert len(failed) == 2
    finally:
        w.stop()
    assert w.pods(NS, {HASH_LABEL: "c1"}) is None  # stopped: the tick lists again


def test_every_namespace_is_one_watch(kube: KubeServer) -> None:
    kube.put(pod("checkout-c1-a", "c1"))
    kube.put(pod("checkout-c1-b", "c1", namespace="elsewhere"))
    w = PodWatch(kube.api_client(), label=HASH_LABEL, timeout_seconds=5)
    w.start()
    try:
        eventually(lambda: w.live("elsewhere") and w.live(NS), "the watch runs")
        assert names(w.pods("elsewhere", {HASH_LABEL: "c1"})) == ["checkout-c1-b"]
        kube.put(pod("checkout-c1-c", "c1", namespace="third"))
        eventually(lambda: names(w.pods("third", {HASH_LABEL: "c1"})) == ["checkout-c1-c"],
                   "a pod of a new namespace seen")  # fmt: skip
    finally:
        w.stop()
    assert any(r.path == "/api/v1/pods" for r in kube.requests)


def test_the_label_the_pods_are_filed_by_must_be_given(watched: PodWatch) -> None:
    with pytest.raises(ValueError, match=HASH_LABEL):
        watched.pods(NS, {"app": "checkout"})

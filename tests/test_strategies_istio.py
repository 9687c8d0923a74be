"""The Istio router and the pod health gate against the Kubernetes API test server, with the
official client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from strategies.kube.istio import Destination, IstioRouter, RouterError, TrafficChanged
from strategies.kube.permissions import STRATEGIES
from strategies.kube.pods import PodGate, PodsUnhealthy
from strategies.simulated import SimulatedClock
from tests.canary_world import NS, VS, install, pod, virtual_service, weight_writes
from tests.kube_server import KubeServer


def router(kube: KubeServer, route: str | None = "primary") -> IstioRouter:
    return IstioRouter(
        client.CustomObjectsApi(kube.api_client()),
        namespace=NS,
        name="checkout",
        route=route,
        stable=Destination("checkout", "stable"),
        canary=Destination("checkout", "canary"),
    )


def allowed(rules: Any) -> set[tuple[str, str, str]]:
    return {(r.api_group, res, verb) for r in rules for res in r.resources for verb in r.verbs}


def test_weights_are_patched_on_the_named_route_only_and_always_add_up_to_100(
    kube: KubeServer,
) -> None:
    install(kube)
    r = router(kube)
    r.adopt()
    for weight in (5, 10, 50, 100, 0):
        r.set_weight(weight)
        vs = kube.get(*VS, NS, "checkout")
        primary = vs["spec"]["http"][1]["route"]
        assert [e["weight"] for e in primary] == [100 - weight, weight]
        assert vs["spec"]["http"][0] == virtual_service()["spec"]["http"][0]  # admin untouched
        assert vs["spec"]["hosts"] == ["checkout"]
    for w in weight_writes(kube):
        assert w.content_type == "application/merge-patch+json"
        assert sum(e["weight"] for e in w.body["spec"]["http"][1]["route"]) == 100
    assert not kube.rejected
    assert kube.permissions_used() <= allowed(STRATEGIES)


def test_a_conflict_is_retried_on_a_fresh_read(kube: KubeServer) -> None:
    install(kube)
    r = router(kube)
    r.adopt()
    kube.fail_next("PATCH", r"/virtualservices/checkout$", 409)
    r.set_weight(5)
    assert [w.status for w in weight_writes(kube)] == [409, 200]
    gets = [q for q in kube.requests if q.method == "GET" and q.path.endswith("/checkout")]
    assert len(gets) == 3  # adopt, the first try, the fresh read after the 409


def test_a_change_made_by_someone_else_is_reported_not_overwritten(kube: KubeServer) -> None:
    install(kube)
    r = router(kube)
    r.adopt()
    r.set_weight(5)

    def someone(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][1]["route"][0]["weight"] = 30
        vs["spec"]["http"][1]["route"][1]["weight"] = 70

    kube.modify(*VS, NS, "checkout", someone)
    with pytest.raises(TrafficChanged, match="30/70"):
        r.set_weight(10)
    with pytest.raises(TrafficChanged):
        r.verify()
    assert len(weight_writes(kube)) == 1
    assert kube.get(*VS, NS, "checkout")["spec"]["http"][1]["route"][1]["weight"] == 70


def test_a_missing_route_or_virtual_service_is_a_named_error(kube: KubeServer) -> None:
    install(kube)
    with pytest.raises(RouterError, match="no http route named 'nope'"):
        router(kube, "nope").adopt()
    with pytest.raises(RouterError, match="2 http routes"):
        router(kube, None).adopt()
    kube.put({**virtual_service(), "metadata": {"name": "other", "namespace": NS}})
    missing = IstioRouter(
        client.CustomObjectsApi(kube.api_client()), namespace=NS, name="absent",
        route=None, stable=Destination("checkout"), canary=Destination("checkout-canary"),
    )  # fmt: skip
    with pytest.raises(RouterError, match="does not exist"):
        missing.adopt()


def gate(kube: KubeServer, clock: SimulatedClock) -> PodGate:
    return PodGate(
        client.CoreV1Api(kube.api_client()), namespace=NS,
        selector="app=checkout,track=canary", ready_timeout=30, clock=clock,
    )  # fmt: skip


@pytest.mark.parametrize("reason", ["ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff"])
def test_a_fatal_pod_reason_fails_the_gate_at_once(kube: KubeServer, reason: str) -> None:
    install(kube, pods=[pod("checkout-canary-1"), pod("checkout-canary-2", waiting=reason)])
    clock = SimulatedClock(datetime(2026, 11, 26, tzinfo=UTC))
    with pytest.raises(PodsUnhealthy, match=f"checkout-canary-2: {reason}"):
        gate(kube, clock).wait_ready()
    assert clock.now() == datetime(2026, 11, 26, tzinfo=UTC)


def test_pods_not_ready_fail_the_gate_after_the_timeout_and_ready_pods_pass(
    kube: KubeServer,
) -> None:
    install(kube, pods=[pod("checkout-canary-1", ready=False)])
    start = datetime(2026, 11, 26, tzinfo=UTC)
    clock = SimulatedClock(start)
    with pytest.raises(PodsUnhealthy, match="pod checkout-canary-1: NotReady: not Ready for 30 s"):
        gate(kube, clock).wait_ready()
    assert (clock.now() - start).total_seconds() == 30
    kube.put(pod("checkout-canary-1"))
    g = gate(kube, clock)
    assert g.wait_ready().ready
    assert g.template_hash() == "c4n4ry"
    assert kube.permissions_used() <= allowed(STRATEGIES)
    assert ("", "pods", "list") in kube.permissions_used()

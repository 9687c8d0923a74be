"""`verdict demo` runs the real standalone canary over an in-memory Kubernetes."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from analyzer.demo import run_demo
from strategies.istio import Destination, IstioRouter, TrafficChanged
from strategies.memory_kube import MemoryKube


def test_the_healthy_demo_writes_5_10_50_100_through_the_istio_router() -> None:
    run = run_demo("healthy", 1)
    assert run.result.decision == "promoted"
    assert run.weights == (5, 10, 50, 100)
    assert [s["weights"]["canary"] for s in run.result.steps] == [5, 10, 50, 100]


def test_the_error_spike_demo_goes_back_to_0_from_the_first_step() -> None:
    run = run_demo("error-spike", 1)
    assert run.result.decision == "aborted"
    assert run.weights == (5, 0)


def test_the_in_memory_kubernetes_refuses_a_stale_write_as_a_server_does() -> None:
    kube = MemoryKube()
    kube.put("virtualservices", {
        "metadata": {"name": "vs", "namespace": "n"},
        "spec": {"http": [{"route": [
            {"destination": {"host": "a"}, "weight": 100},
            {"destination": {"host": "b"}, "weight": 0}]}]},
    })  # fmt: skip
    with pytest.raises(ApiException) as error:
        kube.patch_namespaced_custom_object(
            "networking.istio.io", "v1beta1", "n", "virtualservices", "vs",
            {"metadata": {"resourceVersion": "0"}, "spec": {}},
        )  # fmt: skip
    assert error.value.status == 409
    router = IstioRouter(kube, namespace="n", name="vs", route=None,
                         stable=Destination("a"), canary=Destination("b"))  # fmt: skip
    router.adopt()
    router.set_weight(20)
    kube.put("virtualservices", {
        "metadata": {"name": "vs", "namespace": "n"},
        "spec": {"http": [{"route": [
            {"destination": {"host": "a"}, "weight": 50},
            {"destination": {"host": "b"}, "weight": 50}]}]},
    })  # fmt: skip
    with pytest.raises(TrafficChanged):
        router.set_weight(50)

"""`verdict demo` runs the real standalone canary over an in-memory Kubernetes."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from analyzer.demo import run_demo
from strategies.kube.istio import Destination, IstioRouter, TrafficChanged
from strategies.kube.memory import MemoryKube


def test_the_healthy_demo_writes_5_10_50_100_through_the_istio_router() -> None:
    run = run_demo("healthy", 1)
    assert run.result.decision == "promoted"
    assert run.weights == (5, 10, 50, 100)
    assert [s["weights"]["canary"] for s in run.result.steps] == [5, 10, 50]


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


def test_canary_pods_losing_readiness_mid_step_abort_after_pod_ready_timeout() -> None:
    from datetime import UTC, datetime
    from pathlib import Path
    from tempfile import TemporaryDirectory

    from analyzer.demo import SCENARIOS, default_analysis, demo_rollout, demo_world
    from analyzer.runs.store import open_store
    from metrics.simulated import SimulatedSource
    from strategies.canary import CanaryRollout
    from strategies.kube.istio import read_weights
    from strategies.rollout_file import RolloutFile
    from strategies.simulated import SimulatedClock, SimulatedRouter
    from strategies.wiring import deps_over

    spec = default_analysis()
    clock = SimulatedClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    kube = MemoryKube()
    demo_world(kube)
    history = SimulatedRouter(clock)
    written: list[int] = []

    def follow(plural: str, obj: dict[str, object]) -> None:
        if plural == "virtualservices":
            w = read_weights(obj, "primary", Destination("checkout", "stable"),
                             Destination("checkout", "canary"), "t").canary  # fmt: skip
            history.set_weight(w)
            written.append(w)
            if w == 5:  # a canary pod stops being Ready once traffic reaches it
                kube.put("pods", {
                    "metadata": {"name": "checkout-canary-2", "namespace": "demo",
                                 "labels": {"app": "checkout", "track": "canary"}},
                    "status": {"conditions": [{"type": "Ready", "status": "False"}]},
                })  # fmt: skip

    kube.on_write(follow)
    rollout = demo_rollout(spec).model_copy(update={"pod_ready_timeout": 60.0})
    file = RolloutFile(path="t", analysis=spec, rollout=rollout, text="t")
    source = SimulatedSource(SCENARIOS["healthy"], history.weight_at, seed=1)
    with TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'runs.sqlite'}")
        outcome = CanaryRollout(file, deps_over(file, kube, kube, source, store, clock)).run()
        store.close()
    assert outcome.decision == "aborted"
    assert "readiness: pod checkout-canary-2: NotReady: not Ready for 60 s" in outcome.reason
    assert written == [5, 0]

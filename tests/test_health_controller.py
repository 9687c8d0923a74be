"""Controller mode with the health gate, end to end: Verdict's controller (one tick at a time on a
simulated clock) over the Kubernetes API test server (the official client; Rollouts and Argo CD
Applications checked against their real CRDs), Argo's part played by `tests/argo_standin.py`,
a real Prometheus over the `healthy` scenario (the metrics alone would promote), and real
notification targets (a webhook receiver, a PagerDuty stand-in).

Each row of the gate's table: an image that cannot be pulled aborts the Rollout and is told; a
pod not Ready past its grace aborts and pages; pods Pending for resources pause the Rollout (no
abort, told with the scheduler's words) until they are scheduled, then it goes on; Argo CD
OutOfSync pauses it until Synced; a failed sync aborts it. After an abort, its check: verified.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from analyzer.gates import ArgoCDSpec, HealthSpec
from analyzer.notify import NotificationSpec, RetryPolicy, build_notifier
from analyzer.runs import PrometheusSources, RunService, RunSettings, Telemetry
from analyzer.runs.store import RunStore, open_store
from strategies.argo import ControllerTelemetry
from strategies.argo.controller import Controller
from strategies.argo.gate import HASH_LABEL, RolloutHealth
from strategies.argo.rollouts import ArgoRollouts
from strategies.kube.permissions import CONTROLLER
from strategies.kube.pod_watch import PodWatch
from tests.argo_standin import ABORT, ARGO, PAUSE_STEPS, PROMOTE, ArgoStandIn, canary_rollout
from tests.conftest import PrometheusServer
from tests.hook_server import HookReceiver
from tests.kube_server import KubeServer
from tests.local_http import serving
from tests.test_notify_pagerduty import PagerDutyStandIn
from tests.test_notify_pagerduty import _Handler as PagerDutyHandler
from tests.test_serve_api import Clock, analyses_for

pytestmark = pytest.mark.prometheus

NS = "shop"
KEY = "e93facc04764012d7bfb002500d5d1a6"
REVISION = "0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788776"
SCHEDULER = "0/4 nodes are available: 4 Insufficient memory. preemption: 0/4 nodes are available."
TIMED = [{"setWeight": 5}, {"pause": {"duration": "10m"}}, {"setWeight": 50}, {"pause": {}}]
PAUSE = ("main", {"spec": {"paused": True}}, 200)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str,
    pod_hash: str = "c4n4ry",
    *,
    ready: bool = True,
    since: datetime | None = None,
    waiting: str | None = None,
    unschedulable: str | None = None,
) -> dict[str, Any]:
    """A pod of the Rollout `checkout` (Argo labels each ReplicaSet's pods with its hash)."""
    condition: dict[str, Any] = {"type": "Ready", "status": "True" if ready else "False"}
    if since is not None:
        condition["lastTransitionTime"] = iso(since)
    conditions = [condition]
    if unschedulable is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        )
    state: dict[str, Any] = {"running": {}}
    if waiting is not None:
        state = {"waiting": {"reason": waiting, "message": "Back-off pulling image"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app": "checkout", "rollouts-pod-template-hash": pod_hash},
        },
        "spec": {"containers": [{"name": "checkout", "image": f"checkout:{pod_hash}"}]},
        "status": {
            "phase": "Pending" if unschedulable else "Running",
            "conditions": conditions,
            "containerStatuses": [
                {"name": "checkout", "ready": ready, "restartCount": 0, "state": state}
            ],
        },
    }


def pod_event(pod_name: str, reason: str, message: str, first: datetime) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod_name}.{uuid.uuid4().hex[:10]}", "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": NS},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "firstTimestamp": iso(first),
        "lastTimestamp": iso(first),
        "count": 1,
    }


def application(sync: str, phase: str, started: datetime, message: str = "") -> dict[str, Any]:
    operation: dict[str, Any] = {
        "phase": phase,
        "message": message or f"sync {phase.lower()}",
        "startedAt": iso(started),
        "operation": {
            "sync": {"revision": REVISION},
            "initiatedBy": {"username": "bob"} if phase == "Running" else {"automated": True},
        },
    }
    if phase != "Running":
        operation["finishedAt"] = iso(started + timedelta(seconds=30))
        operation["syncResult"] = {"revision": REVISION}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "checkout", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
            "source": {
                "repoURL": "https://git.example.com/shop.git",
                "path": "checkout",
                "targetRevision": "main",
            },
        },
        "status": {
            "sync": {"status": sync, "revision": REVISION},
            "health": {"status": "Progressing" if phase == "Running" else "Healthy"},
            "operationState": operation,
        },
    }


@dataclass
class World:
    kube: KubeServer
    clock: Clock
    argo: ArgoStandIn
    store: RunStore
    service: RunService
    controller: Controller
    start: datetime
    hooks: HookReceiver
    pagerduty: PagerDutyStandIn

    def at(self, minutes: float) -> datetime:
        return self.start + timedelta(minutes=minutes)

    def tick_at(self, minutes: float) -> Any:
        self.clock.set(self.at(minutes))
        self.argo.reconcile(NS, "checkout")
        return self.controller.tick(NS, "checkout")

    def status(self) -> dict[str, Any]:
        return dict(self.kube.get(*ARGO, NS, "checkout").get("status", {}))

    def annotations(self) -> dict[str, str]:
        return dict(self.kube.get(*ARGO, NS, "checkout")["metadata"].get("annotations", {}))

    def action_patches(self) -> list[tuple[str, Any, int]]:
        out = []
        for r in self.kube.writes(plural="rollouts", name="checkout", method="PATCH"):
            if set(r.body) != {"metadata"}:
                out.append(("status" if r.path.endswith("/status") else "main", r.body, r.status))
        return out

    def decisions(self) -> list[str]:
        self.service.notifiers["healthy"].close(timeout=10)  # type: ignore[attr-defined]
        return [b["decision"] for b in self.hooks.bodies]

    def told(self, outcome: str) -> dict[str, Any]:
        found = [b for b in self.hooks.bodies if b["decision"] == outcome]
        assert found, f"no {outcome} among {[b['decision'] for b in self.hooks.bodies]}"
        return dict(found[0])


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyStandIn]:
    state = PagerDutyStandIn()
    with serving(PagerDutyHandler, state) as url:
        state.url = f"{url}/v2/enqueue"
        yield state


@pytest.fixture
def make(
    prometheus: PrometheusServer,
    kube: KubeServer,
    tmp_path: Path,
    hooks: HookReceiver,
    pagerduty: PagerDutyStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    monkeypatch.setenv("PD_KEY", KEY)
    made: list[World] = []
    watches: list[PodWatch] = []

    def build(
        steps: list[dict[str, Any]],
        *,
        argocd: ArgoCDSpec | None = None,
        labels: Any = None,
        watched: bool = False,
    ) -> World:
        start = prometheus.scenarios["healthy"].start
        clock = Clock(start)
        store = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
        analyses = analyses_for(prometheus)
        analyses["healthy"] = analyses["healthy"].model_copy(
            update={"health": HealthSpec(readinessGrace=120.0), "argocd": argocd}
        )
        hook = NotificationSpec.model_validate({"type": "webhook", "url": hooks.url})
        pager = NotificationSpec.model_validate(
            {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": pagerduty.url}
        )
        notifier = build_notifier(None, [hook, pager], policy=RetryPolicy(retries=1, backoff=0.01))
        service = RunService(
            analyses=analyses,
            store=store,
            sources=PrometheusSources(look_budget=8.0),
            clock=clock,
            settings=RunSettings(),
            telemetry=Telemetry(store.count),
            notifiers={"healthy": notifier},
            way="controller",
        )
        argo = ArgoStandIn(kube, now=clock.now).install()
        rollout = canary_rollout("checkout", NS, analysis="healthy", steps=steps)
        rollout["metadata"]["labels"] = labels or {}
        kube.put(rollout)
        for i in (1, 2):
            kube.put(pod(f"checkout-c4n4ry-{i}"))
            kube.put(pod(f"checkout-s7ab1e-{i}", "s7ab1e"))
        argo.start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")
        pods = None
        if watched:  # the pods kept from a watch, as `verdict serve --watch` does
            pods = PodWatch(kube.api_client(), label=HASH_LABEL, namespaces=(NS,))
            pods.start()
            watches.append(pods)
            deadline = time.monotonic() + 10
            while not pods.live(NS):
                assert time.monotonic() < deadline, "the pod watch did not start"
                time.sleep(0.02)
        controller = Controller(
            service=service,
            actuator=ArgoRollouts(kube.api_client()),
            clock=clock,
            telemetry=ControllerTelemetry(CollectorRegistry()),
            health=RolloutHealth(kube.api_client(), watched=pods),
        )
        world = World(kube, clock, argo, store, service, controller, start, hooks, pagerduty)
        made.append(world)
        return world

    yield build
    for pods in watches:
        pods.stop()
    for world in made:
        world.service.close()
        world.store.close()


def allowed() -> set[tuple[str, str, str]]:
    return {(r.api_group, res, verb) for r in CONTROLLER for res in r.resources for verb in r.verbs}


def test_an_image_that_cannot_be_pulled_aborts_the_rollout_and_the_rollback_is_verified(
    make: Any,
) -> None:
    world: World = make(PAUSE_STEPS)
    world.tick_at(0)
    assert world.action_patches() == []
    broken = world.at(0.5)
    world.kube.put(pod("checkout-c4n4ry-2", ready=False, waiting="ErrImagePull"))
    world.kube.put(
        pod_event(
            "checkout-c4n4ry-2",
            "Failed",
            'Failed to pull image "checkout:c4n4ry": not found',
            broken,
        )
    )
    decision = world.tick_at(1)
    assert (decision.action, decision.outcome) == ("abort", "image-pull")
    assert world.action_patches() == [("status", ABORT, 200)]
    assert world.status()["canary"]["weights"]["canary"]["weight"] == 0
    note = world.annotations()["verdict.dev/status"]
    assert "image-pull: pod checkout-c4n4ry-2: ErrImagePull" in note
    assert f"(since {iso(broken)})" in note and "not found" in note
    # one interval later: the abort's check (Argo put the stable version back)
    world.clock.set(world.at(1.5))
    check = world.controller.check_rollback(NS, "checkout")
    assert check is not None
    assert check.verified, check.text()
    assert [p.name for p in check.parts][:2] == ["rollout", "stable pods"]
    assert world.annotations()["verdict.dev/rollback"].startswith("rollback verified")
    assert "VerdictRollbackVerified" in [
        e["reason"] for e in world.kube.objects("", "v1", "events")
    ]
    assert world.controller.check_rollback(NS, "checkout") is None  # once
    assert world.decisions() == ["image-pull", "rollback-verified"]
    told = world.told("image-pull")
    assert told["extra"]["health"][0]["subject"] == "pod checkout-c4n4ry-2"
    assert told["run"]["way"] == "controller"
    assert world.kube.permissions_used() <= allowed()


def test_with_the_pods_watched_an_image_that_cannot_be_pulled_aborts_without_a_pod_list(
    make: Any,
) -> None:
    world: World = make(PAUSE_STEPS, watched=True)
    world.tick_at(0)
    assert world.action_patches() == []
    broken = world.at(0.5)
    world.kube.put(pod("checkout-c4n4ry-2", ready=False, waiting="ErrImagePull"))
    world.kube.put(
        pod_event("checkout-c4n4ry-2", "Failed", "Failed to pull image: not found", broken)
    )
    health = world.controller.health
    assert health is not None and health.watched is not None
    deadline = time.monotonic() + 10
    while not any(  # the watch has told the change (a tick reads what it was told)
        p["status"]["containerStatuses"][0]["state"].get("waiting")
        for p in health.watched.pods(NS, {"app": "checkout", HASH_LABEL: "c4n4ry"}) or []
    ):
        assert time.monotonic() < deadline, "the watch did not tell the broken pod"
        time.sleep(0.02)
    decision = world.tick_at(1)
    assert (decision.action, decision.outcome) == ("abort", "image-pull")
    assert world.action_patches() == [("status", ABORT, 200)]
    assert "image-pull: pod checkout-c4n4ry-2: ErrImagePull" in (
        world.annotations()["verdict.dev/status"]
    )
    selectors = {
        r.query.get("labelSelector")
        for r in world.kube.requests
        if r.method == "GET" and r.path.endswith("/pods")
    }
    assert selectors == {HASH_LABEL}, "a tick listed its pods although they were watched"
    used = world.kube.permissions_used()
    assert ("", "pods", "watch") in used and used <= allowed()


def test_a_pod_not_ready_past_its_grace_aborts_and_pages(make: Any) -> None:
    world: World = make(PAUSE_STEPS)
    failing = world.at(0.5)
    world.kube.put(pod("checkout-c4n4ry-1", ready=False, since=failing))
    world.kube.put(
        pod_event(
            "checkout-c4n4ry-1", "Unhealthy", "Readiness probe failed: connection refused", failing
        )
    )
    world.tick_at(1)
    world.tick_at(2)  # 1.5 minutes not Ready: within the 2-minute grace
    assert world.action_patches() == []
    decision = world.tick_at(3)
    assert (decision.action, decision.outcome) == ("abort", "readiness")
    assert world.action_patches() == [("status", ABORT, 200)]
    assert "readiness: pod checkout-c4n4ry-1: NotReady" in world.annotations()["verdict.dev/status"]
    assert "connection refused" in world.annotations()["verdict.dev/status"]
    assert world.decisions() == ["readiness"]
    pages = world.pagerduty.wait_for(1)
    assert pages[0]["event_action"] == "trigger"
    assert pages[0]["payload"]["class"] == "rollout readiness"
    assert pages[0]["payload"]["source"] == "shop/checkout"
    assert world.pagerduty.violations == []


def test_pods_pending_for_resources_pause_the_rollout_without_an_abort_until_scheduled(
    make: Any,
) -> None:
    world: World = make(TIMED)
    world.tick_at(0)
    pending = world.at(1)
    world.kube.put(pod("checkout-c4n4ry-3", ready=False, since=pending, unschedulable=SCHEDULER))
    world.kube.put(pod_event("checkout-c4n4ry-3", "FailedScheduling", SCHEDULER, pending))
    decision = world.tick_at(1.5)
    assert (decision.action, decision.outcome) == ("pause", "pending")
    assert world.action_patches() == [PAUSE]
    assert SCHEDULER in world.annotations()["verdict.dev/status"]
    for held in (4, 8, 12):  # held past the timed pause's 10 minutes: no abort, no promotion
        decision = world.tick_at(held)
        assert (decision.action, decision.outcome) == ("none", "pending")
    assert world.action_patches() == [PAUSE]
    assert world.status()["currentStepIndex"] == 1 and world.status()["phase"] == "Paused"
    world.kube.put(pod("checkout-c4n4ry-3"))  # scheduled at last
    minute = 13.0
    while world.status()["currentStepIndex"] == 1 and minute <= 30:
        world.tick_at(minute)
        minute += 1
    assert world.status()["currentStepIndex"] == 3  # promoted on a pass, then Argo moved on
    patches = world.action_patches()
    assert patches[0] == PAUSE and ("status", PROMOTE, 200) in patches
    assert ("status", ABORT, 200) not in patches
    decisions = world.decisions()
    assert decisions.count("pending") == 1 and "aborted" not in decisions
    told = world.told("pending")
    assert SCHEDULER in told["reason"] and told["extra"]["health"][0]["kind"] == "pending"
    assert all(r["event_action"] != "trigger" for r in world.pagerduty.requests)  # no page


def test_argo_cd_out_of_sync_pauses_the_rollout_until_synced_then_it_goes_on(make: Any) -> None:
    world: World = make(TIMED, labels={"argocd.argoproj.io/instance": "checkout"})
    world.kube.put(application("OutOfSync", "Running", world.at(-1)))
    decision = world.tick_at(1)
    assert (decision.action, decision.outcome) == ("pause", "out-of-sync")
    note = world.annotations()["verdict.dev/status"]
    assert f"application argocd/checkout (commit {REVISION[:12]} by bob)" in note
    world.tick_at(4)
    assert world.action_patches() == [PAUSE]
    world.kube.put(application("Synced", "Succeeded", world.at(4)))
    minute = 5.0
    while world.status()["currentStepIndex"] == 1 and minute <= 30:
        world.tick_at(minute)
        minute += 1
    assert world.status()["currentStepIndex"] == 3
    assert ("status", PROMOTE, 200) in world.action_patches()
    told = world.told("out-of-sync")
    assert f"commit {REVISION[:12]} by bob" in told["reason"]
    assert told["extra"]["health"][0]["revision"] == REVISION
    assert world.decisions().count("out-of-sync") == 1
    assert not world.kube.rejected  # every Application valid against Argo CD's CRD
    assert ("argoproj.io", "applications", "get") in world.kube.permissions_used()


def test_a_failed_argo_cd_sync_aborts_the_rollout_and_names_the_commit(make: Any) -> None:
    world: World = make(PAUSE_STEPS, argocd=ArgoCDSpec(application="checkout"))
    world.kube.put(application("Synced", "Succeeded", world.at(-5)))
    world.tick_at(0)
    assert world.action_patches() == []
    world.kube.put(
        application(
            "OutOfSync", "Failed", world.at(1), "one or more synchronization tasks are not valid"
        )
    )
    decision = world.tick_at(2)
    assert (decision.action, decision.outcome) == ("abort", "sync-failed")
    assert world.action_patches() == [("status", ABORT, 200)]
    told = world.told("sync-failed")
    assert f"commit {REVISION[:12]} by automated" in told["reason"]
    assert "synchronization tasks are not valid" in told["reason"]
    pages = world.pagerduty.wait_for(1)
    assert pages[0]["payload"]["class"] == "rollout sync-failed"
    assert not world.kube.rejected

"""`verdict canary run` with the health gate, end to end on the Kubernetes API test server (the
official client), a real Prometheus over generated traffic (the `healthy` scenario: the metrics
alone would go on) and real notification targets (a webhook receiver, a PagerDuty stand-in that
checks every event against PagerDuty's schema). The clock is simulated; the world changes at
given times (a pod's image cannot be pulled, a pod stops being Ready, the scheduler finds no
room, Argo CD syncs or fails to).

Each row of the gate's table: image pull → rolled back and told; readiness failing past its
grace → rolled back and paged; Pending for resources → held (no rollback, no next step) and told
with the scheduler's words, then on; Argo CD OutOfSync → held until Synced, then on; a failed
sync → rolled back, told with the commit and who started the sync. After every rollback its
check: verified, or "did not recover" (paged).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from analyzer.clock import parse_time
from analyzer.notify import RetryPolicy, build_notifier
from analyzer.runs.store import RunStore, open_store
from metrics.factory import SourceSettings, open_source
from strategies.canary import CanaryRollout
from strategies.kube.permissions import STRATEGIES
from strategies.record import Outcome
from strategies.rollout_file import RolloutFile, load_rollout_file
from strategies.simulated import SimulatedClock
from strategies.wiring import deps_over
from tests.canary_world import NS, virtual_service, weights, written_weights
from tests.conftest import PrometheusServer
from tests.helpers import example_analysis, write_analysis
from tests.hook_server import HookReceiver
from tests.kube_server import KubeServer
from tests.local_http import serving
from tests.test_notify_pagerduty import PagerDutyStandIn
from tests.test_notify_pagerduty import _Handler as PagerDutyHandler

pytestmark = pytest.mark.prometheus

PODS = ("", "v1", "pods")
APPS = ("argoproj.io", "v1alpha1", "applications")
KEY = "e93facc04764012d7bfb002500d5d1a6"
REVISION = "9c1f2e3d4c5b6a7f8e9d0c1b2a3f4e5d6c7b8a90"
SCHEDULER = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def at(text: str) -> datetime:
    return parse_time(text)


class ScriptedClock(SimulatedClock):
    """The simulated clock; each change scripted `at` a time happens when a wait passes it."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._script: list[tuple[datetime, Callable[[], object]]] = []

    def at(self, when: datetime, change: Callable[[], object]) -> None:
        self._script.append((when, change))
        self._script.sort(key=lambda entry: entry[0])

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        while self._script and self._script[0][0] <= self.now():
            self._script.pop(0)[1]()


def pod(
    name: str,
    *,
    track: str = "canary",
    ready: bool = True,
    since: datetime | None = None,
    waiting: str | None = None,
    unschedulable: str | None = None,
) -> dict[str, Any]:
    ready_condition: dict[str, Any] = {"type": "Ready", "status": "True" if ready else "False"}
    if since is not None:
        ready_condition["lastTransitionTime"] = iso(since)
    conditions = [ready_condition]
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
        state = {"waiting": {"reason": waiting, "message": f"Back-off pulling image {name}:2"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {
                "app": "checkout",
                "track": track,
                "pod-template-hash": "c4n4ry" if track == "canary" else "s7ab1e",
            },
        },
        "spec": {"containers": [{"name": "checkout", "image": f"checkout:{track}"}]},
        "status": {
            "phase": "Running" if ready or waiting else "Pending",
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
        "source": {"component": "kubelet"},
    }


def application(status: dict[str, Any]) -> dict[str, Any]:
    """The Argo CD Application that deploys checkout (written to the API test server, which
    checks it against Argo CD's CRD)."""
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
        "status": status,
    }


def syncing(started: datetime) -> dict[str, Any]:
    return {
        "sync": {"status": "OutOfSync", "revision": REVISION},
        "health": {"status": "Progressing"},
        "operationState": {
            "phase": "Running",
            "startedAt": iso(started),
            "operation": {"sync": {"revision": REVISION}, "initiatedBy": {"username": "alice"}},
        },
    }


def synced(started: datetime, *, phase: str = "Succeeded", message: str = "") -> dict[str, Any]:
    return {
        "sync": {"status": "Synced" if phase == "Succeeded" else "OutOfSync", "revision": REVISION},
        "health": {"status": "Healthy"},
        "operationState": {
            "phase": phase,
            "message": message or f"successfully synced (phase {phase})",
            "startedAt": iso(started),
            "finishedAt": iso(started + timedelta(seconds=20)),
            "syncResult": {"revision": REVISION},
            "operation": {"sync": {"revision": REVISION}, "initiatedBy": {"automated": True}},
        },
    }


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyStandIn]:
    state = PagerDutyStandIn()
    with serving(PagerDutyHandler, state) as url:
        state.url = f"{url}/v2/enqueue"
        yield state


@dataclass
class World:
    kube: KubeServer
    clock: ScriptedClock
    start: datetime
    hooks: HookReceiver
    pagerduty: PagerDutyStandIn
    store: RunStore

    def minute(self, m: float) -> datetime:
        return self.start + timedelta(minutes=m)

    def run(self, file: RolloutFile, prometheus: PrometheusServer) -> Outcome:
        api = self.kube.api_client()
        source = open_source(SourceSettings.of(prometheus.url))
        deps = deps_over(
            file,
            client.CustomObjectsApi(api),
            client.CoreV1Api(api),
            source,
            self.store,
            self.clock,
        )
        notifier = build_notifier(
            None, file.analysis.notifications, policy=RetryPolicy(retries=1, backoff=0.01)
        )
        try:
            return CanaryRollout(file, replace(deps, notifier=notifier)).run()
        finally:
            notifier.close(timeout=10)

    def told(self) -> list[dict[str, Any]]:
        """The webhook's decisions, by outcome."""
        return list(self.hooks.bodies)

    def decision(self, outcome: str) -> dict[str, Any]:
        found = [b for b in self.hooks.bodies if b["decision"] == outcome]
        assert found, f"no {outcome} decision among {[b['decision'] for b in self.hooks.bodies]}"
        return dict(found[0])


@pytest.fixture
def world(
    prometheus: PrometheusServer,
    kube: KubeServer,
    hooks: HookReceiver,
    pagerduty: PagerDutyStandIn,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    monkeypatch.setenv("PD_KEY", KEY)
    start = prometheus.scenarios["healthy"].start
    kube.put(virtual_service())
    for name in ("checkout-canary-1", "checkout-canary-2"):
        kube.put(pod(name))
    for name in ("checkout-stable-1", "checkout-stable-2"):
        kube.put(pod(name, track="stable"))
    store = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    yield World(kube, ScriptedClock(start), start, hooks, pagerduty, store)
    store.close()


def rollout_file(
    tmp_path: Path, prometheus: PrometheusServer, world: World, **analysis: Any
) -> RolloutFile:
    scenario = prometheus.scenarios["healthy"]
    data = example_analysis()
    data.update(
        prometheus={"url": prometheus.url},
        canary=dict(scenario.canary_matchers),
        baseline=dict(scenario.baseline_matchers),
        health={"readinessGrace": "2m", "maxRestarts": 3},
        notifications=[
            {"type": "webhook", "url": world.hooks.url},
            {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": world.pagerduty.url},
        ],
        **analysis,
    )
    data["rollout"] = {
        "strategy": "canary",
        "namespace": NS,
        "virtualService": "checkout",
        "route": "primary",
        "stable": {"host": "checkout", "subset": "stable"},
        "canary": {"host": "checkout", "subset": "canary"},
        "canaryPods": "app=checkout,track=canary",
        "stablePods": "app=checkout,track=stable",
        "steps": [5, 50, 100],
        "stepDuration": "3m",
        "onTimeout": "promote",
        "rollbackDeadline": "30s",
    }
    return load_rollout_file(write_analysis(tmp_path / "checkout.yaml", data))


def allowed(rules: Any) -> set[tuple[str, str, str]]:
    return {(r.api_group, res, verb) for r in rules for res in r.resources for verb in r.verbs}


def health_of(outcome: Outcome, store: RunStore) -> list[dict[str, Any]]:
    assert outcome.run_id is not None
    run = store.get(outcome.run_id)
    assert run is not None
    return list((run.answer or {})["rollout"].get("health") or [])


def test_an_image_that_cannot_be_pulled_rolls_back_at_once_and_is_told(
    world: World, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    file = rollout_file(tmp_path, prometheus, world)
    broken = world.minute(1)

    def cannot_pull() -> None:
        world.kube.put(pod("checkout-canary-2", ready=False, waiting="ImagePullBackOff"))
        world.kube.put(
            pod_event(
                "checkout-canary-2",
                "Failed",
                'Failed to pull image "checkout:2": manifest unknown',
                broken,
            )
        )

    world.clock.at(broken, cannot_pull)
    outcome = world.run(file, prometheus)
    assert outcome.decision == "aborted", outcome.reason
    assert "image-pull: pod checkout-canary-2: ImagePullBackOff" in outcome.reason
    assert written_weights(world.kube) == [5, 0] and weights(world.kube) == (100, 0)
    # next to the metric verdicts: the pod, the reason and the time, in the stored run
    (found,) = health_of(outcome, world.store)
    assert (found["kind"], found["subject"], found["reason"]) == (
        "image-pull",
        "pod checkout-canary-2",
        "ImagePullBackOff",
    )
    assert found["time"] == iso(broken) and found["weight"] == 5
    assert "manifest unknown" in found["message"]
    world.hooks.wait_for(2)
    told = world.decision("image-pull")
    assert told["extra"]["health"][0]["subject"] == "pod checkout-canary-2"
    assert told["weight"] == 5 and "ImagePullBackOff" in told["summary"]
    # the rollback's check: stable serves again, its error rate as before the run
    assert outcome.rollback is not None and outcome.rollback["verified"] is True
    checks = {c["check"]: c["ok"] for c in outcome.rollback["checks"]}
    assert checks["route"] and checks["stable pods"] and checks["error-rate of the old version"]
    assert world.decision("rollback-verified")["extra"]["rollback"]["verified"] is True
    pages = world.pagerduty.wait_for(1)
    assert [p["payload"]["class"] for p in pages] == ["rollout image-pull"]
    assert world.pagerduty.violations == []
    assert not world.kube.rejected
    assert world.kube.permissions_used() <= allowed(STRATEGIES)
    assert ("", "events", "list") in world.kube.permissions_used()


def test_a_pod_not_ready_past_its_grace_rolls_back_and_pages(
    world: World, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    file = rollout_file(tmp_path, prometheus, world)
    failing = world.minute(1)

    def not_ready() -> None:
        world.kube.put(pod("checkout-canary-1", ready=False, since=failing))
        world.kube.put(
            pod_event(
                "checkout-canary-1",
                "Unhealthy",
                "Readiness probe failed: HTTP probe failed with statuscode: 503",
                failing,
            )
        )

    world.clock.at(failing, not_ready)
    outcome = world.run(file, prometheus)
    assert outcome.decision == "aborted", outcome.reason
    assert written_weights(world.kube) == [5, 0]
    (found,) = health_of(outcome, world.store)
    assert (found["kind"], found["subject"], found["time"]) == (
        "readiness",
        "pod checkout-canary-1",
        iso(failing),
    )
    assert "statuscode: 503" in found["message"]
    # not before the grace: the step's looks went on for two minutes while it failed
    assert at(outcome.steps[0]["end"]) >= failing + timedelta(minutes=2)
    pages = world.pagerduty.wait_for(1)
    assert pages[0]["event_action"] == "trigger"
    assert pages[0]["payload"]["class"] == "rollout readiness"
    assert "pod checkout-canary-1" in pages[0]["payload"]["summary"]
    assert pages[0]["payload"]["custom_details"]["extra"]["health"][0]["kind"] == "readiness"
    assert world.pagerduty.violations == []
    assert outcome.rollback is not None and outcome.rollback["verified"] is True


def test_pods_pending_for_resources_hold_the_canary_without_a_rollback_and_tell_why(
    world: World, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    file = rollout_file(tmp_path, prometheus, world)
    pending, scheduled = world.minute(1), world.minute(9)

    def no_room() -> None:
        world.kube.put(
            pod("checkout-canary-3", ready=False, since=pending, unschedulable=SCHEDULER)
        )
        world.kube.put(pod_event("checkout-canary-3", "FailedScheduling", SCHEDULER, pending))

    world.clock.at(pending, no_room)
    world.clock.at(scheduled, lambda: world.kube.put(pod("checkout-canary-3")))
    outcome = world.run(file, prometheus)
    assert outcome.decision == "promoted", outcome.reason
    # held at 5 % past the step's 3 minutes, never rolled back, then on to 50 and 100
    assert written_weights(world.kube) == [5, 50, 100]
    first, second = outcome.steps[0], outcome.steps[1]
    assert first["weights"]["canary"] == 5 and at(first["end"]) >= scheduled
    assert at(second["start"]) >= scheduled
    (found,) = health_of(outcome, world.store)
    assert (found["kind"], found["act"], found["message"]) == ("pending", "hold", SCHEDULER)
    assert found["time"] == iso(pending) and at(found["cleared"]) >= scheduled
    world.hooks.wait_for(2)
    told = world.decision("pending")
    assert SCHEDULER in told["reason"] and "held at 5 % canary weight" in told["reason"]
    assert told["extra"]["health"][0]["subject"] == "pod checkout-canary-3"
    assert [b["decision"] for b in world.told()].count("pending") == 1  # told once
    assert "aborted" not in [b["decision"] for b in world.told()]
    assert world.pagerduty.requests == [] or all(
        r["event_action"] == "resolve" for r in world.pagerduty.requests
    )  # a hold does not page


def test_argo_cd_out_of_sync_holds_the_start_until_synced_then_the_run_goes_on(
    world: World, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    file = rollout_file(
        tmp_path, prometheus, world, argocd={"application": "checkout", "namespace": "argocd"}
    )
    world.kube.put(application(syncing(world.minute(-1))))
    done = world.minute(4)
    world.clock.at(done, lambda: world.kube.put(application(synced(world.minute(3)))))
    outcome = world.run(file, prometheus)
    assert outcome.decision == "promoted", outcome.reason
    assert written_weights(world.kube) == [5, 50, 100]
    assert at(outcome.steps[0]["start"]) >= done  # no traffic moved while Argo CD synced
    (found,) = health_of(outcome, world.store)
    assert (found["kind"], found["subject"], found["reason"]) == (
        "out-of-sync",
        "application argocd/checkout",
        "sync Running",
    )
    assert found["weight"] == 0 and at(found["cleared"]) >= done
    world.hooks.wait_for(2)
    told = world.decision("out-of-sync")
    assert f"commit {REVISION[:12]} by alice" in told["reason"]
    assert told["extra"]["health"][0]["revision"] == REVISION
    assert not world.kube.rejected  # every Application valid against Argo CD's CRD
    assert ("argoproj.io", "applications", "get") in world.kube.permissions_used()


def test_a_failed_argo_cd_sync_rolls_back_and_names_the_commit(
    world: World, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    file = rollout_file(
        tmp_path, prometheus, world, argocd={"application": "checkout", "namespace": "argocd"}
    )
    world.kube.put(application(synced(world.minute(-5))))
    failed = world.minute(2)
    world.clock.at(
        failed,
        lambda: world.kube.put(
            application(
                synced(
                    failed,
                    phase="Failed",
                    message="one or more objects failed to apply: admission denied",
                )
            )
        ),
    )
    outcome = world.run(file, prometheus)
    assert outcome.decision == "aborted", outcome.reason
    assert written_weights(world.kube) == [5, 0]
    kinds = [h["kind"] for h in health_of(outcome, world.store)]
    assert "sync-failed" in kinds
    world.hooks.wait_for(2)
    told = world.decision("sync-failed")
    assert f"commit {REVISION[:12]} by automated" in told["reason"]
    assert "admission denied" in told["reason"]
    assert told["extra"]["health"][0]["revision"] == REVISION
    pages = world.pagerduty.wait_for(1)
    assert pages[0]["payload"]["class"] == "rollout sync-failed"
    assert not world.kube.rejected


def test_a_rollback_whose_stable_pods_are_not_ready_did_not_recover_and_pages(
    world: World, prometheus: PrometheusServer, tmp_path: Path
) -> None:
    file = rollout_file(tmp_path, prometheus, world)
    broken = world.minute(1)

    def crash_and_stable_gone() -> None:
        world.kube.put(pod("checkout-canary-1", ready=False, waiting="CrashLoopBackOff"))
        for name in ("checkout-stable-1", "checkout-stable-2"):
            world.kube.put(pod(name, track="stable", ready=False, since=broken))

    world.clock.at(broken, crash_and_stable_gone)
    outcome = world.run(file, prometheus)
    assert outcome.decision == "aborted" and "crash-loop" in outcome.reason
    assert weights(world.kube) == (100, 0)
    assert outcome.rollback is not None and outcome.rollback["verified"] is False
    failed = [c for c in outcome.rollback["checks"] if not c["ok"]]
    assert [c["check"] for c in failed] == ["stable pods"]
    world.hooks.wait_for(2)
    told = world.decision("rollback-not-recovered")
    assert told["reason"].startswith("rollback did not recover: stable pods: not Ready")
    pages = world.pagerduty.wait_for(2)
    assert {p["payload"]["class"] for p in pages} == {
        "rollout crash-loop",
        "rollout rollback-not-recovered",
    }
    assert {p["payload"]["severity"] for p in pages if "rollback" in p["payload"]["class"]} == {
        "critical"
    }
    assert len({p["dedup_key"] for p in pages}) == 1  # one alert for the run

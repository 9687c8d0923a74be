"""The health gate's rows for `verdict canary run` with `strategy: blueGreen` and
`strategy: rolling`, end to end.

In a real process on the Kubernetes API test server, a real Prometheus over live traffic
(healthy: the metrics alone would go on) and a webhook receiver: blue/green, a green pod in
ImagePullBackOff after the switch → switched back to blue, exit 1, told; rolling, a pod of the
new ReplicaSet in ImagePullBackOff → rolled back (the Deployment's template back to the old one),
exit 1, told.

On a simulated clock (`tests/health_world.py`: the same API test server, a real Prometheus over
the `healthy` scenario, a webhook per audience of the default routes and a PagerDuty stand-in),
the other rows for each strategy: readiness failing past `readinessGrace` → rolled back and
paged; liveness restarts above `maxRestarts` → rolled back; pods Pending for resources → held
(no rollback), the platform team told with the scheduler's words; a failed Argo CD sync →
rolled back, the commit's author told with the commit; and green broken before the switch → not
switched to, and told. Each decision carries the gate's kind and findings (pod, reason, time).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from strategies.kube.permissions import STRATEGIES
from tests.canary_world import LIVE_RPS, NS
from tests.conftest import PrometheusServer
from tests.deployment_standin import APPS, DeploymentStandIn, template
from tests.health_world import BLUE as HEALTH_BLUE
from tests.health_world import GREEN as HEALTH_GREEN
from tests.health_world import World, open_world, outcomes, replica_pod, restarted
from tests.health_world import told as told_to
from tests.helpers import example_analysis, write_analysis
from tests.hook_server import HookReceiver
from tests.kube_server import KubeServer
from tests.live_exporter import LiveExporter, Version, live_prometheus, wait_for_scrapes
from tests.test_bluegreen_live import BLUE, GREEN, install, selector, selector_writes
from tests.test_canary_run_live import finish, start, wait_for
from tests.test_health_canary import (
    REVISION,
    SCHEDULER,
    allowed,
    application,
    at,
    iso,
    pod,
    pod_event,
    synced,
)

pytestmark = pytest.mark.prometheus


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def broken_pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    """A pod whose image cannot be pulled."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"containers": [{"name": "checkout", "image": "checkout:2"}]},
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now_iso()}],
            "containerStatuses": [{
                "name": "checkout", "ready": False, "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff",
                                      "message": 'Back-off pulling image "checkout:2"'}},
            }],
        },
    }  # fmt: skip


def pull_failed(pod_name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{pod_name}.{uuid.uuid4().hex[:10]}", "namespace": NS},
        "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": NS},
        "reason": "Failed", "type": "Warning",
        "message": 'Failed to pull image "checkout:2": manifest unknown',
        "firstTimestamp": now_iso(), "lastTimestamp": now_iso(), "count": 1,
        "source": {"component": "kubelet"},
    }  # fmt: skip


def told(hooks: HookReceiver) -> list[dict[str, Any]]:
    """The webhook's decisions (at least one, within the receiver's wait)."""
    hooks.wait_for(1)
    return [dict(b) for b in hooks.bodies]


@contextmanager
def bluegreen(kube: KubeServer, tmp_path: Path, hooks: HookReceiver) -> Iterator[Path]:
    """Blue/green on healthy traffic (green as good as blue), a 20 s validation period, a
    webhook told of every decision."""
    install(kube)
    exporter = LiveExporter(
        "checkout", total_rps=LIVE_RPS,
        canary_weight=lambda: 100 if selector(kube) == GREEN else 0,
        canary=Version(error_rate=0.001), baseline=Version(error_rate=0.001),
    ).start()  # fmt: skip
    root = tmp_path / "prom"
    root.mkdir()
    try:
        with live_prometheus(root, [exporter.address]) as url:
            data: dict[str, Any] = example_analysis()
            data.update(
                prometheus={"url": url}, interval="2s",
                health={"readinessGrace": "10s", "maxRestarts": 3},
                notifications=[{"type": "webhook", "url": hooks.url}],
            )  # fmt: skip
            data["rollout"] = {"strategy": "blueGreen", "namespace": NS,
                               "activeService": "checkout", "blue": BLUE, "green": GREEN,
                               "validationPeriod": "20s", "podReadyTimeout": "10s"}  # fmt: skip
            wait_for_scrapes(url, 10)  # blue's own figures before the switch
            yield write_analysis(tmp_path / "bluegreen.yaml", data)
    finally:
        exporter.stop()


def test_bluegreen_green_pod_that_cannot_pull_its_image_switches_back_to_blue_and_tells(
    kube: KubeServer, hooks: HookReceiver, tmp_path: Path
) -> None:
    with bluegreen(kube, tmp_path, hooks) as config:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        process = start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}")
        try:
            wait_for(lambda: selector(kube) == GREEN, 30, "the switch to green")
            kube.put(broken_pod("checkout-green-2", GREEN))
            kube.put(pull_failed("checkout-green-2"))
        finally:
            code, doc = finish(process, timeout=60)
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert doc["reason"].startswith("switched back to blue: the health gate failed")
    assert "image-pull: pod checkout-green-2" in doc["reason"]
    assert "ImagePullBackOff" in doc["reason"]
    assert selector(kube) == BLUE
    assert selector_writes(kube) == [GREEN, BLUE]
    decisions = [b for b in told(hooks) if b["decision"] in ("aborted", "image-pull")]
    assert decisions, [b["decision"] for b in hooks.bodies]
    assert "ImagePullBackOff" in decisions[0]["reason"]
    assert "checkout-green-2" in decisions[0]["reason"]


def run_rolling(
    kube: KubeServer, tmp_path: Path, hooks: HookReceiver
) -> tuple[int, dict[str, Any], DeploymentStandIn]:
    """`verdict canary run` on a Deployment rolling from `stable` to `canary` (4 replicas, one
    moved every 2.5 s), healthy traffic; once the update moves, a pod of the new ReplicaSet
    cannot pull its image."""
    standin = DeploymentStandIn(kube, NS)
    standin.install(replicas=4)
    exporter = LiveExporter(
        "checkout", total_rps=LIVE_RPS, canary_weight=standin.canary_weight,
        canary=Version(error_rate=0.001), baseline=Version(error_rate=0.001),
    ).start()  # fmt: skip
    root = tmp_path / "prom"
    root.mkdir()
    try:
        with live_prometheus(root, [exporter.address]) as url:
            wait_for_scrapes(url, 2)
            data: dict[str, Any] = example_analysis()
            data.update(
                prometheus={"url": url}, interval="2s",
                canary={"destination_service_name": "checkout-{{ newHash }}"},
                baseline={"destination_service_name": "checkout-{{ oldHash }}"},
                health={"readinessGrace": "10s", "maxRestarts": 3},
                notifications=[{"type": "webhook", "url": hooks.url}],
                rollout={"strategy": "rolling", "namespace": NS, "deployment": "checkout",
                         "podReadyTimeout": "60s"},
            )  # fmt: skip
            config = write_analysis(tmp_path / "rolling.yaml", data)
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
            new_pod = {"app": "checkout", "pod-template-hash": "canary"}
            with standin.running(period=2.5):
                process = start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}")
                try:
                    wait_for(lambda: standin.ready("canary") >= 1, 30, "the update moving")
                    kube.put(broken_pod("checkout-canary-x1", new_pod))
                    kube.put(pull_failed("checkout-canary-x1"))
                finally:
                    code, doc = finish(process, timeout=90)
    finally:
        exporter.stop()
    return code, doc, standin


def test_rolling_new_pod_that_cannot_pull_its_image_rolls_back_and_tells(
    kube: KubeServer, hooks: HookReceiver, tmp_path: Path
) -> None:
    code, doc, standin = run_rolling(kube, tmp_path, hooks)
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert "the health gate failed" in doc["reason"]
    assert "image-pull: pod checkout-canary-x1" in doc["reason"]
    assert "rollback complete" in doc["reason"]
    patches = [(r.content_type, r.body)
               for r in kube.writes(plural="deployments", name="checkout", method="PATCH")]  # fmt: skip
    assert patches[0] == ("application/merge-patch+json", {"spec": {"paused": True}})
    assert patches[1][1][0] == {
        "op": "replace",
        "path": "/spec/template",
        "value": template("checkout:1"),
    }
    deployment = kube.get(*APPS, "deployments", NS, "checkout")
    assert deployment["spec"]["template"] == template("checkout:1")
    assert deployment["spec"]["paused"] is False
    assert (standin.ready("stable"), standin.ready("canary")) == (4, 0)
    decisions = [b for b in told(hooks) if b["decision"] in ("aborted", "image-pull")]
    assert decisions, [b["decision"] for b in hooks.bodies]
    assert "ImagePullBackOff" in decisions[0]["reason"]
    assert "checkout-canary-x1" in decisions[0]["reason"]


# --- the other rows, on a simulated clock (tests/health_world.py) ---------------------------


@pytest.fixture
def world(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    with open_world(prometheus, kube, tmp_path, monkeypatch) as found:
        yield found


def readiness_fails(world: World, name: str, when: datetime, found: dict[str, Any]) -> None:
    """At `when` the pod `name` (`found`: it, not Ready since then) stops passing its probe."""

    def fail() -> None:
        world.kube.put(found)
        world.kube.put(pod_event(
            name, "Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 503",
            when,
        ))  # fmt: skip

    world.clock.at(when, fail)


def restarts_at(world: World, name: str, when: datetime, found: dict[str, Any]) -> None:
    """At `when` the pod `name` (`found`: it) has been restarted 5 times by its liveness probe."""

    def restart() -> None:
        world.kube.put(restarted(found, 5))
        world.kube.put(pod_event(
            name, "Unhealthy", "Liveness probe failed: Get http://10.0.0.7:8080/healthz: timeout",
            when,
        ))  # fmt: skip

    world.clock.at(when, restart)


def no_room(world: World, found: dict[str, Any], when: datetime) -> None:
    """`found` (a pod Pending, unschedulable) and the scheduler's FailedScheduling Event."""
    world.kube.put(found)
    world.kube.put(pod_event(found["metadata"]["name"], "FailedScheduling", SCHEDULER, when))


def sync_fails(world: World, when: datetime) -> None:
    """Argo CD's Application checkout synced, then its sync of `REVISION` fails at `when`."""
    world.kube.put(application(synced(world.minute(-5))))
    failed = synced(when, phase="Failed",
                    message="one or more objects failed to apply: admission denied")  # fmt: skip
    world.clock.at(when, lambda: world.kube.put(application(failed)))


def paged(world: World) -> list[str]:
    """The classes of PagerDuty's triggers (every event checked against its schema)."""
    assert world.pagerduty.violations == []
    return [e["payload"]["class"] for e in world.pagerduty.requests if e["event_action"] == "trigger"]


def the_decision(world: World, outcome: Any) -> dict[str, Any]:
    """The run's last decision event that is not the rollback's check."""
    found = [d for d in world.decisions(outcome) if not d["outcome"].startswith("rollback-")]
    return found[-1]


def test_bluegreen_green_not_ready_past_its_grace_switches_back_and_pages(world: World) -> None:
    world.install_bluegreen()
    failing = world.minute(1)
    readiness_fails(world, "checkout-green-1", failing,
                    pod("checkout-green-1", ready=False, since=failing))  # fmt: skip
    outcome = world.run_bluegreen(world.bluegreen_file())
    assert outcome.decision == "aborted", outcome.reason
    assert outcome.reason.startswith("switched back to blue: the health gate failed: readiness:")
    assert world.selector_writes() == [HEALTH_GREEN, HEALTH_BLUE]
    assert world.selector() == HEALTH_BLUE
    (found,) = world.health(outcome)
    assert (found["kind"], found["subject"], found["time"], found["active"]) == (
        "readiness", "pod checkout-green-1", iso(failing), "green",
    )  # fmt: skip
    assert "statuscode: 503" in found["message"]
    decision = the_decision(world, outcome)
    assert decision["outcome"] == "readiness"
    assert decision["extra"]["health"][0]["subject"] == "pod checkout-green-1"
    assert at(decision["time"]) >= failing + timedelta(minutes=2)  # not before the grace
    assert set(decision["figures"]) == {"error-rate", "latency-p99", "success-rate"}
    assert paged(world) == ["rollout readiness"]
    (page,) = [e for e in world.pagerduty.requests if e["event_action"] == "trigger"]
    assert "pod checkout-green-1" in page["payload"]["summary"]
    assert page["payload"]["custom_details"]["extra"]["health"][0]["time"] == iso(failing)
    assert told_to(world.team, "readiness") and not told_to(world.platform, "readiness")
    assert outcome.rollback is not None and outcome.rollback["verified"] is True
    assert not world.kube.rejected
    assert world.kube.permissions_used() <= allowed(STRATEGIES)


def test_bluegreen_green_restarted_by_its_liveness_probe_switches_back(world: World) -> None:
    world.install_bluegreen()
    restarts_at(world, "checkout-green-2", world.minute(2), pod("checkout-green-2"))
    outcome = world.run_bluegreen(world.bluegreen_file())
    assert outcome.decision == "aborted", outcome.reason
    assert "restarts: pod checkout-green-2: Restarted" in outcome.reason
    assert "5 restarts during the run (maxRestarts 3)" in outcome.reason
    assert world.selector_writes() == [HEALTH_GREEN, HEALTH_BLUE]
    assert the_decision(world, outcome)["outcome"] == "restarts"
    assert "Liveness probe failed" in world.health(outcome)[0]["message"]
    assert paged(world) == ["rollout restarts"]
    assert told_to(world.team, "restarts")


def test_bluegreen_green_pending_for_resources_holds_the_switch_and_tells_the_platform_team(
    world: World,
) -> None:
    world.install_bluegreen()
    scheduled = world.minute(5)
    no_room(world, pod("checkout-green-3", ready=False, since=world.start,
                       unschedulable=SCHEDULER), world.start)  # fmt: skip
    world.clock.at(scheduled, lambda: world.kube.put(pod("checkout-green-3")))
    outcome = world.run_bluegreen(world.bluegreen_file())
    assert outcome.decision == "promoted", outcome.reason
    # held before the switch, no rollback: green switched to once it was scheduled, then kept
    assert world.selector_writes() == [HEALTH_GREEN]
    progress = world.progress(outcome)
    switched = at(progress["steps"][0]["start"])
    assert switched >= scheduled
    run = world.store.get(str(outcome.run_id))
    assert run is not None and run.started_at == switched  # green judged from the switch
    assert at(progress["steps"][0]["end"]) >= switched + timedelta(minutes=6)
    (found,) = world.health(outcome)
    assert (found["kind"], found["act"], found["message"], found["active"]) == (
        "pending", "hold", SCHEDULER, "blue",
    )  # fmt: skip
    assert found["time"] == iso(world.start) and at(found["cleared"]) >= scheduled
    # the platform team hears the hold once, with the scheduler's words, and nothing else
    assert outcomes(world.platform) == ["pending"]
    (held,) = told_to(world.platform, "pending")
    assert SCHEDULER in held["reason"] and "blue serves" in held["reason"]
    assert held["extra"]["health"][0]["subject"] == "pod checkout-green-3"
    assert outcomes(world.team).count("pending") == 1
    assert world.author.bodies == []
    assert paged(world) == []  # a hold does not page (the promotion resolves)
    assert [d["outcome"] for d in world.decisions(outcome)] == ["pending", "promoted"]


def test_bluegreen_a_failed_argo_cd_sync_switches_back_and_names_the_commit_to_its_author(
    world: World,
) -> None:
    world.install_bluegreen({"argocd.argoproj.io/instance": "checkout"})
    sync_fails(world, world.minute(2))
    outcome = world.run_bluegreen(world.bluegreen_file(argocd={"namespace": "argocd"}))
    assert outcome.decision == "aborted", outcome.reason
    assert world.selector_writes() == [HEALTH_GREEN, HEALTH_BLUE]
    assert the_decision(world, outcome)["outcome"] == "sync-failed"
    (told,) = told_to(world.author, "sync-failed")  # the Service's label named the Application
    assert f"commit {REVISION[:12]} by automated" in told["reason"]
    assert "admission denied" in told["reason"]
    assert told["extra"]["health"][0]["revision"] == REVISION
    assert outcomes(world.author) == ["sync-failed"]
    assert world.platform.bodies == []
    assert paged(world) == ["rollout sync-failed"]
    assert outcome.rollback is not None and outcome.rollback["verified"] is True
    assert not world.kube.rejected  # every Application valid against Argo CD's CRD
    assert ("argoproj.io", "applications", "get") in world.kube.permissions_used()


def test_bluegreen_green_broken_before_the_switch_is_not_switched_to_and_is_told(
    world: World,
) -> None:
    world.install_bluegreen()
    world.kube.put(pod("checkout-green-2", ready=False, waiting="ImagePullBackOff"))
    world.kube.put(pod_event("checkout-green-2", "Failed",
                             'Failed to pull image "checkout:2": manifest unknown', world.start))  # fmt: skip
    outcome = world.run_bluegreen(world.bluegreen_file())
    assert outcome.decision == "aborted", outcome.reason
    assert outcome.reason.startswith("green not switched to (blue kept): the health gate failed")
    assert "image-pull: pod checkout-green-2: ImagePullBackOff" in outcome.reason
    assert world.selector_writes() == [] and world.selector() == HEALTH_BLUE
    assert outcome.rollback is None  # nothing to roll back
    (found,) = world.health(outcome)
    assert (found["kind"], found["active"], found["time"]) == ("image-pull", "blue", iso(world.start))
    assert "manifest unknown" in found["message"]
    (decision,) = world.decisions(outcome)
    assert decision["outcome"] == "image-pull"
    assert decision["extra"]["health"][0]["subject"] == "pod checkout-green-2"
    (told,) = told_to(world.team, "image-pull")
    assert "ImagePullBackOff" in told["summary"]
    assert paged(world) == ["rollout image-pull"]
    assert world.platform.bodies == [] and world.author.bodies == []


def test_rolling_new_pods_not_ready_past_their_grace_roll_back_and_page(world: World) -> None:
    standin = world.install_rolling()
    failing = world.minute(1)
    readiness_fails(world, "checkout-new-1", failing,
                    replica_pod("checkout-new-1", "canary", ready=False, since=failing))  # fmt: skip
    outcome = world.run_rolling(world.rolling_file())
    assert outcome.decision == "aborted", outcome.reason
    assert "the health gate failed: readiness: pod checkout-new-1" in outcome.reason
    assert "rollback complete" in outcome.reason
    patches = world.deployment_patches()
    assert patches[0] == {"spec": {"paused": True}}
    assert patches[1][0] == {"op": "replace", "path": "/spec/template",
                             "value": template("checkout:1")}  # fmt: skip
    assert (standin.ready("stable"), standin.ready("canary")) == (4, 0)
    decision = the_decision(world, outcome)
    assert decision["outcome"] == "readiness"
    assert at(decision["time"]) >= failing + timedelta(minutes=2)
    (found,) = world.health(outcome)
    assert (found["subject"], found["time"]) == ("pod checkout-new-1", iso(failing))
    assert paged(world) == ["rollout readiness"]
    assert told_to(world.team, "readiness") and world.platform.bodies == []
    assert outcome.rollback is not None and outcome.rollback["verified"] is True
    assert world.kube.permissions_used() <= allowed(STRATEGIES)


def test_rolling_new_pods_restarted_by_their_liveness_probe_roll_back(world: World) -> None:
    world.install_rolling()
    found = replica_pod("checkout-new-1", "canary")
    world.kube.put(found)
    restarts_at(world, "checkout-new-1", world.minute(2), found)
    outcome = world.run_rolling(world.rolling_file())
    assert outcome.decision == "aborted", outcome.reason
    assert "restarts: pod checkout-new-1: Restarted" in outcome.reason
    assert world.deployment_patches()[0] == {"spec": {"paused": True}}
    assert the_decision(world, outcome)["outcome"] == "restarts"
    assert paged(world) == ["rollout restarts"]


def test_rolling_new_pods_pending_for_resources_hold_without_a_rollback_and_tell_the_platform(
    world: World,
) -> None:
    pending, scheduled = world.minute(1), world.minute(4)
    standin = world.install_rolling(ticks_from=4)  # the update waits for the pods
    world.clock.at(pending, lambda: no_room(world, replica_pod(
        "checkout-new-1", "canary", ready=False, since=pending, unschedulable=SCHEDULER,
    ), pending))  # fmt: skip
    world.clock.at(scheduled, lambda: world.kube.put(replica_pod("checkout-new-1", "canary")))
    outcome = world.run_rolling(world.rolling_file())
    assert outcome.decision == "promoted", outcome.reason
    assert world.deployment_patches() == []  # never paused, never undone
    assert (standin.ready("stable"), standin.ready("canary")) == (0, 4)
    (found,) = world.health(outcome)
    assert (found["kind"], found["act"], found["message"]) == ("pending", "hold", SCHEDULER)
    assert found["time"] == iso(pending) and at(found["cleared"]) >= scheduled
    assert outcomes(world.platform) == ["pending"]
    (held,) = told_to(world.platform, "pending")
    assert SCHEDULER in held["reason"] and "no rollback" in held["reason"]
    assert held["extra"]["health"][0]["subject"] == "pod checkout-new-1"
    assert world.author.bodies == []
    assert paged(world) == []
    assert [d["outcome"] for d in world.decisions(outcome)] == ["pending", "promoted"]


def test_rolling_a_failed_argo_cd_sync_rolls_back_and_names_the_commit_to_its_author(
    world: World,
) -> None:
    world.install_rolling(labels={"argocd.argoproj.io/instance": "checkout"})
    sync_fails(world, world.minute(2))
    outcome = world.run_rolling(world.rolling_file(argocd={"namespace": "argocd"}))
    assert outcome.decision == "aborted", outcome.reason
    assert "sync-failed: application argocd/checkout" in outcome.reason
    assert world.deployment_patches()[0] == {"spec": {"paused": True}}
    assert the_decision(world, outcome)["outcome"] == "sync-failed"
    (told,) = told_to(world.author, "sync-failed")  # the Deployment's label named it
    assert f"commit {REVISION[:12]} by automated" in told["reason"]
    assert told["extra"]["health"][0]["revision"] == REVISION
    assert world.platform.bodies == []
    assert paged(world) == ["rollout sync-failed"]
    assert not world.kube.rejected
    assert ("apps", "deployments", "get") in world.kube.permissions_used()

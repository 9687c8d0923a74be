"""The health gate's rows for `verdict canary run` with `strategy: blueGreen` and
`strategy: rolling`, end to end: a real process on the Kubernetes API test server, a real
Prometheus over live traffic (healthy: the metrics alone would go on) and a webhook receiver.

Blue/green: a green pod in ImagePullBackOff after the switch → switched back to blue, exit 1,
told. Rolling: a pod of the new ReplicaSet in ImagePullBackOff → rolled back (the Deployment's
template back to the old one), exit 1, told.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.canary_world import LIVE_RPS, NS
from tests.deployment_standin import APPS, DeploymentStandIn, template
from tests.helpers import example_analysis, write_analysis
from tests.hook_server import HookReceiver
from tests.kube_server import KubeServer
from tests.live_exporter import LiveExporter, Version, live_prometheus, wait_for_scrapes
from tests.test_bluegreen_live import BLUE, GREEN, install, selector, selector_writes
from tests.test_canary_run_live import finish, start, wait_for

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

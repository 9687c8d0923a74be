"""`verdict canary run` with `strategy: rolling`: a real process following a Deployment's rolling
update (moved by a Deployment controller stand-in on the Kubernetes API test server), judging the
new pods against the old on a real Prometheus whose traffic follows the pods' shares (40,000
requests a second, a look every 2 s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from strategies.kube.permissions import STRATEGIES
from tests.canary_world import LIVE_RPS, NS
from tests.deployment_standin import APPS, DeploymentStandIn, template
from tests.helpers import example_analysis, write_analysis
from tests.kube_server import KubeServer
from tests.live_exporter import LiveExporter, Version, live_prometheus, wait_for_scrapes
from tests.test_canary_run_live import finish, start
from tests.test_strategies_istio import allowed

pytestmark = pytest.mark.prometheus


def run_rolling(
    kube: KubeServer, tmp_path: Path, *, new_pods: Version, period: float, **rollout: Any
) -> tuple[int, dict[str, Any], DeploymentStandIn]:
    """`verdict canary run` on a Deployment rolling from `stable` to `canary` (4 replicas, one
    moved every `period` s from Prometheus' second scrape on), with traffic following the pods'
    shares."""
    standin = DeploymentStandIn(kube, NS)
    standin.install(replicas=4)
    exporter = LiveExporter(
        "checkout", total_rps=LIVE_RPS, canary_weight=standin.canary_weight,
        canary=new_pods, baseline=Version(error_rate=0.001),
    ).start()  # fmt: skip
    root = tmp_path / "prom"
    root.mkdir()
    try:
        with live_prometheus(root, [exporter.address]) as url:
            wait_for_scrapes(url, 2)  # the old pods' traffic is in before the update moves
            data: dict[str, Any] = example_analysis()
            data.update(
                prometheus={"url": url}, interval="2s",
                canary={"destination_service_name": "checkout-{{ newHash }}"},
                baseline={"destination_service_name": "checkout-{{ oldHash }}"},
                rollout={"strategy": "rolling", "namespace": NS, "deployment": "checkout",
                         **rollout},
            )  # fmt: skip
            config = write_analysis(tmp_path / "rolling.yaml", data)
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
            with standin.running(period=period):
                code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
    finally:
        exporter.stop()
    return code, doc, standin


def test_a_regression_in_new_pods_pauses_rolls_back_and_verifies_the_rollback(
    kube: KubeServer, tmp_path: Path
) -> None:
    code, doc, standin = run_rolling(
        kube, tmp_path, new_pods=Version(error_rate=0.05), period=2.5, podReadyTimeout="60s"
    )
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert "rollback complete" in doc["reason"]
    patches = [(r.content_type, r.body)
               for r in kube.writes(plural="deployments", name="checkout", method="PATCH")]  # fmt: skip
    assert patches == [
        ("application/merge-patch+json", {"spec": {"paused": True}}),
        ("application/json-patch+json", [
            {"op": "replace", "path": "/spec/template", "value": template("checkout:1")},
            {"op": "replace", "path": "/metadata/annotations",
             "value": {"deployment.kubernetes.io/revision": "2"}},
        ]),
        ("application/merge-patch+json", {"spec": {"paused": False}}),
    ]  # fmt: skip
    deployment = kube.get(*APPS, "deployments", NS, "checkout")
    assert deployment["spec"]["template"] == template("checkout:1")
    assert deployment["spec"]["paused"] is False
    assert (standin.ready("stable"), standin.ready("canary")) == (4, 0)
    assert kube.permissions_used() <= allowed(STRATEGIES)


def test_a_healthy_update_completes_without_any_write_from_verdict(
    kube: KubeServer, tmp_path: Path
) -> None:
    code, doc, standin = run_rolling(kube, tmp_path, new_pods=Version(error_rate=0.001), period=2.0)
    assert doc["decision"] in ("promoted", "paused"), doc["reason"]
    assert code == {"promoted": 0, "paused": 3}[doc["decision"]]
    assert doc["reason"].startswith("update complete")
    assert kube.writes(plural="deployments", method="PATCH") == []
    assert (standin.ready("stable"), standin.ready("canary")) == (0, 4)

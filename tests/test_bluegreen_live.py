"""`verdict canary run` with `strategy: blueGreen`: a real process switching a Service's selector
on the Kubernetes API test server, judged on a real Prometheus whose traffic goes to the version
the Service selects (green judged against blue's own figures before the switch): 40,000 requests
a second, a look every 2 s, an 8 s validation period after 10 s of blue's traffic."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from strategies.kube.permissions import STRATEGIES
from tests.canary_world import LIVE_RPS, NS
from tests.helpers import example_analysis, write_analysis
from tests.kube_server import KubeServer
from tests.live_exporter import LiveExporter, Version, live_prometheus, wait_for_scrapes
from tests.test_canary_run_live import finish, start
from tests.test_strategies_istio import allowed

pytestmark = pytest.mark.prometheus

SERVICE = ("", "v1", "services")
BLUE = {"app": "checkout", "version": "blue"}
GREEN = {"app": "checkout", "version": "green"}


def selector(kube: KubeServer) -> dict[str, str]:
    return dict(kube.get(*SERVICE, NS, "checkout")["spec"]["selector"])


def install(kube: KubeServer) -> None:
    kube.put({"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": "checkout", "namespace": NS},
              "spec": {"selector": BLUE, "ports": [{"port": 80}]}})  # fmt: skip
    kube.put({"apiVersion": "v1", "kind": "Service",
              "metadata": {"name": "checkout-preview", "namespace": NS},
              "spec": {"selector": GREEN, "ports": [{"port": 80}]}})  # fmt: skip
    for i in (1, 2):
        kube.put({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"checkout-green-{i}", "namespace": NS, "labels": GREEN},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        })  # fmt: skip


@contextmanager
def world(
    kube: KubeServer, tmp_path: Path, green: Version, *, preview: int = 0, **rollout: Any
) -> Iterator[Path]:
    """`preview`: the share of requests green gets through the preview Service before the
    switch (0: no preview Service)."""
    install(kube)
    exporter = LiveExporter(
        "checkout", total_rps=LIVE_RPS,
        canary_weight=lambda: 100 if selector(kube) == GREEN else preview,
        canary=green, baseline=Version(error_rate=0.001),
    ).start()  # fmt: skip
    root = tmp_path / "prom"
    root.mkdir()
    try:
        with live_prometheus(root, [exporter.address]) as url:
            data: dict[str, Any] = example_analysis()
            data.update(prometheus={"url": url}, interval="2s")
            data["rollout"] = {"strategy": "blueGreen", "namespace": NS,
                               "activeService": "checkout", "blue": BLUE, "green": GREEN,
                               "validationPeriod": "8s", "podReadyTimeout": "10s"}  # fmt: skip
            data["rollout"].update(rollout)
            if preview:
                data["rollout"]["previewService"] = "checkout-preview"
            wait_for_scrapes(url, 10)  # blue's own figures before the switch
            yield write_analysis(tmp_path / "bluegreen.yaml", data)
    finally:
        exporter.stop()


def selector_writes(kube: KubeServer) -> list[dict[str, Any]]:
    return [
        r.body["spec"]["selector"]
        for r in kube.writes(plural="services", name="checkout", method="PATCH")
        if r.status == 200
    ]


def test_healthy_green_is_switched_to_and_kept(kube: KubeServer, tmp_path: Path) -> None:
    with world(kube, tmp_path, Version(error_rate=0.001)) as config:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
    assert (code, doc["decision"]) == (0, "promoted"), doc["reason"]
    assert selector(kube) == GREEN
    assert selector_writes(kube) == [GREEN]
    assert kube.permissions_used() <= allowed(STRATEGIES)


def test_a_regression_in_the_validation_period_switches_back_to_blue(
    kube: KubeServer, tmp_path: Path
) -> None:
    only_analysis = {"maxErrorRate": None}
    with world(kube, tmp_path, Version(error_rate=0.05), rollbackOn=only_analysis) as config:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert doc["reason"].startswith("switched back to blue: Critical metric error-rate failed")
    assert selector(kube) == BLUE
    assert selector_writes(kube) == [GREEN, BLUE]


def test_an_error_rate_over_rollback_on_switches_back_without_the_analysis(
    kube: KubeServer, tmp_path: Path
) -> None:
    only_rate = {"analysisFails": False, "maxErrorRate": 0.01}
    with world(kube, tmp_path, Version(error_rate=0.05), rollbackOn=only_rate) as config:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert "above rollbackOn.maxErrorRate 0.01" in doc["reason"]
    assert selector_writes(kube) == [GREEN, BLUE]


def test_green_failing_on_the_preview_is_not_switched_to(kube: KubeServer, tmp_path: Path) -> None:
    with world(kube, tmp_path, Version(error_rate=0.05), preview=10) as config:
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert doc["reason"].startswith("green failed on the preview, not switched")
    assert selector(kube) == BLUE
    assert selector_writes(kube) == []

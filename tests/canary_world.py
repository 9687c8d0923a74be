"""A world for `verdict canary run` tests: a VirtualService and canary pods on the Kubernetes API
test server, and (for live tests) an Istio-like exporter whose traffic follows the route's
weights, scraped by a real Prometheus.

Live traffic is 40,000 requests a second and rollout files look every 2 s: a step of a few
seconds then holds as many requests as a step of minutes in a small service, so the live tests
take seconds per step."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import example_analysis, write_analysis
from tests.kube_server import KubeServer, Recorded
from tests.live_exporter import LiveExporter, Version, live_prometheus

NS = "shop"
VS = ("networking.istio.io", "v1beta1", "virtualservices")
PODS = ("", "v1", "pods")
LIVE_RPS = 40_000
"""Requests a second of live traffic, split between stable and canary by the route's weights."""


def virtual_service(stable: int = 100, canary: int = 0) -> dict[str, Any]:
    """`checkout` with an untouched `admin` route before the `primary` route Verdict splits."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "checkout", "namespace": NS},
        "spec": {
            "hosts": ["checkout"],
            "http": [
                {
                    "name": "admin",
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": "checkout-admin"}}],
                },
                {
                    "name": "primary",
                    "route": [
                        {"destination": {"host": "checkout", "subset": "stable"}, "weight": stable},
                        {"destination": {"host": "checkout", "subset": "canary"}, "weight": canary},
                    ],
                },
            ],
        },
    }


def pod(name: str, *, ready: bool = True, waiting: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = (
        {"waiting": {"reason": waiting, "message": "Back-off pulling image"}}
        if waiting
        else {"running": {}}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {"app": "checkout", "track": "canary", "pod-template-hash": "c4n4ry"},
        },
        "spec": {"containers": [{"name": "checkout", "image": "checkout:2"}]},
        "status": {
            "phase": "Running" if ready else "Pending",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [{"name": "checkout", "ready": ready, "state": state}],
        },
    }


def install(kube: KubeServer, *, pods: list[dict[str, Any]] | None = None) -> None:
    kube.put(virtual_service())
    for p in pods if pods is not None else [pod("checkout-canary-1"), pod("checkout-canary-2")]:
        kube.put(p)


def weights(kube: KubeServer) -> tuple[int, int]:
    """(stable, canary) of the primary route now."""
    route = kube.get(*VS, NS, "checkout")["spec"]["http"][1]["route"]
    return int(route[0]["weight"]), int(route[1]["weight"])


def weight_writes(kube: KubeServer) -> list[Recorded]:
    return kube.writes(plural="virtualservices", name="checkout", method="PATCH")


def written_weights(kube: KubeServer) -> list[int]:
    """The canary weight of every weight write the server carried out, in order."""
    return [
        int(r.body["spec"]["http"][1]["route"][1]["weight"])
        for r in weight_writes(kube)
        if r.status == 200
    ]


def rollout_file(path: Path, prometheus_url: str, **rollout: Any) -> Path:
    data = example_analysis()
    data.update(prometheus={"url": prometheus_url}, interval="2s")
    data["rollout"] = {
        "strategy": "canary",
        "namespace": NS,
        "virtualService": "checkout",
        "route": "primary",
        "stable": {"host": "checkout", "subset": "stable"},
        "canary": {"host": "checkout", "subset": "canary"},
        "canaryPods": "app=checkout,track=canary",
        "steps": [5, 10, 50, 100],
        "stepDuration": "20s",
        "podReadyTimeout": "10s",
        **rollout,
    }
    return write_analysis(path, data)


@contextmanager
def live_traffic(
    kube: KubeServer, root: Path, canary: Version, *, total_rps: float = LIVE_RPS
) -> Iterator[str]:
    """A real Prometheus scraping an exporter whose canary share is the route's weight."""
    exporter = LiveExporter(
        "checkout",
        total_rps=total_rps,
        canary_weight=lambda: weights(kube)[1],
        canary=canary,
        baseline=Version(error_rate=0.001),
    ).start()
    root.mkdir(exist_ok=True)
    try:
        with live_prometheus(root, [exporter.address]) as url:
            yield url
    finally:
        exporter.stop()

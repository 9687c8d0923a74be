"""A world for `verdict canary run`'s blue/green and rolling strategies on a simulated clock: the
Kubernetes API test server (the official client; Services, Deployments and ReplicaSets, pods,
their Events, Argo CD Applications checked against Argo CD's CRD), a real Prometheus over the
`healthy` scenario (the metrics alone would go on), and real notification targets: a webhook for
each audience of the default routes (the team that ships, the platform team, the commit's
author) and a PagerDuty stand-in that checks every event against PagerDuty's schema (on call).
No target names `on:`: who hears what is `analyzer.notify.routes.DEFAULT_ROUTES`.

The strategies are built as `verdict canary run` builds them (`strategies.wiring.bluegreen_over`,
`rolling_over`), with the simulated clock; the world changes at scripted times
(`tests.test_health_canary.ScriptedClock`), and a stand-in for the Deployment controller
(`tests.deployment_standin`) moves one replica at each of its ticks.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from analyzer.notify import RetryPolicy, build_notifier
from analyzer.runs.store import RunStore, open_store
from metrics.factory import SourceSettings, open_source
from strategies.record import Outcome
from strategies.rollout_file import RolloutFile, load_rollout_file
from strategies.wiring import bluegreen_over, rolling_over
from tests.canary_world import NS
from tests.conftest import PrometheusServer
from tests.deployment_standin import APPS, DeploymentStandIn
from tests.helpers import example_analysis, write_analysis
from tests.hook_server import HookReceiver
from tests.hook_server import running as hooks_running
from tests.kube_server import KubeServer
from tests.local_http import serving
from tests.test_health_canary import KEY, ScriptedClock, pod
from tests.test_notify_pagerduty import PagerDutyStandIn
from tests.test_notify_pagerduty import _Handler as PagerDutyHandler

SERVICE = ("", "v1", "services")
BLUE = {"app": "checkout", "track": "stable"}
GREEN = {"app": "checkout", "track": "canary"}
"""Blue's and green's labels: `tests.test_health_canary.pod`'s `stable` and `canary` pods."""
TICK = timedelta(seconds=90)
"""How often the Deployment controller's stand-in moves one of the 4 replicas."""


def replica_pod(name: str, pod_hash: str, **state: Any) -> dict[str, Any]:
    """A pod of the Deployment's ReplicaSet `pod_hash` (`canary`: the new one, `stable`: the
    old one), as `tests.test_health_canary.pod` makes it (`ready`, `since`, `waiting`,
    `unschedulable`)."""
    found = pod(name, track="canary" if pod_hash == "canary" else "stable", **state)
    found["metadata"]["labels"]["pod-template-hash"] = pod_hash
    return found


def restarted(found: dict[str, Any], count: int) -> dict[str, Any]:
    """`found` with its container restarted `count` times (last ended by its liveness probe)."""
    status = found["status"]["containerStatuses"][0]
    status["restartCount"] = count
    status["lastState"] = {"terminated": {"reason": "Error", "exitCode": 137}}
    return found


@dataclass
class World:
    kube: KubeServer
    clock: ScriptedClock
    start: datetime
    team: HookReceiver
    platform: HookReceiver
    author: HookReceiver
    pagerduty: PagerDutyStandIn
    store: RunStore
    root: Path
    prometheus: PrometheusServer

    def minute(self, m: float) -> datetime:
        return self.start + timedelta(minutes=m)

    # --- the rollout files ------------------------------------------------------------------

    def _file(self, name: str, rollout: dict[str, Any], **analysis: Any) -> RolloutFile:
        scenario = self.prometheus.scenarios["healthy"]
        data = example_analysis()
        data.update(canary=dict(scenario.canary_matchers), baseline=dict(scenario.baseline_matchers))
        data.update(
            prometheus={"url": self.prometheus.url},
            health={"readinessGrace": "2m", "maxRestarts": 3},
            notifications=[
                {"type": "webhook", "url": self.team.url},
                {"type": "webhook", "url": self.platform.url, "audience": "platform"},
                {"type": "webhook", "url": self.author.url, "audience": "author"},
                {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": self.pagerduty.url},
            ],
            **analysis,
        )
        data["rollout"] = rollout
        return load_rollout_file(write_analysis(self.root / f"{name}.yaml", data))

    def bluegreen_file(self, **analysis: Any) -> RolloutFile:
        """Blue/green from `BLUE` to `GREEN` on Service checkout, a 6-minute validation (kept
        undecided: `onTimeout: promote`)."""
        rollout = {
            "strategy": "blueGreen",
            "namespace": NS,
            "activeService": "checkout",
            "blue": BLUE,
            "green": GREEN,
            "validationPeriod": "6m",
            "onTimeout": "promote",
            "rollbackDeadline": "30s",
        }
        return self._file("bluegreen", rollout, **analysis)

    def rolling_file(self, **analysis: Any) -> RolloutFile:
        """A rolling update of Deployment checkout, new pods (`{{ newHash }}`) against old."""
        rollout = {
            "strategy": "rolling",
            "namespace": NS,
            "deployment": "checkout",
            "onTimeout": "promote",
            "podReadyTimeout": "5m",
            "rollbackDeadline": "30s",
        }
        analysis.setdefault("canary", {"destination_service_name": "healthy-{{ newHash }}"})
        analysis.setdefault("baseline", {"destination_service_name": "healthy-{{ oldHash }}"})
        return self._file("rolling", rollout, **analysis)

    # --- the workloads ----------------------------------------------------------------------

    def install_bluegreen(self, labels: dict[str, str] | None = None) -> None:
        """Service checkout (with `labels`) selecting blue; two Ready pods of each version."""
        self.kube.put({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "checkout", "namespace": NS, "labels": dict(labels or {})},
            "spec": {"selector": dict(BLUE), "ports": [{"port": 80}]},
        })  # fmt: skip
        for name in ("checkout-green-1", "checkout-green-2"):
            self.kube.put(pod(name))
        for name in ("checkout-blue-1", "checkout-blue-2"):
            self.kube.put(pod(name, track="stable"))

    def install_rolling(
        self, *, ticks_from: float = 0.0, labels: dict[str, str] | None = None
    ) -> DeploymentStandIn:
        """Deployment checkout (4 replicas, with `labels`) rolling from ReplicaSet `stable` to
        `canary`, one replica every `TICK` after minute `ticks_from`; two Ready pods of the old
        ReplicaSet."""
        standin = DeploymentStandIn(self.kube, NS)
        standin.install(replicas=4)
        if labels:

            def label(obj: dict[str, Any]) -> None:
                obj["metadata"].setdefault("labels", {}).update(labels or {})

            self.kube.modify(*APPS, "deployments", NS, "checkout", label)
        for name in ("checkout-old-1", "checkout-old-2"):
            self.kube.put(replica_pod(name, "stable"))
        first = self.minute(ticks_from)
        for i in range(1, 40):
            self.clock.at(first + TICK * i, standin.tick)
        return standin

    # --- running ----------------------------------------------------------------------------

    def run_bluegreen(self, file: RolloutFile) -> Outcome:
        api = self.kube.api_client()
        source = open_source(SourceSettings.of(self.prometheus.url))
        notifier = build_notifier(
            None, file.analysis.notifications, policy=RetryPolicy(retries=1, backoff=0.01)
        )
        try:
            rollout = bluegreen_over(
                file, client.CoreV1Api(api), client.CustomObjectsApi(api), source, self.store,
                self.clock, notifier=notifier,
            )  # fmt: skip
            return rollout.run()
        finally:
            notifier.close(timeout=10)

    def run_rolling(self, file: RolloutFile) -> Outcome:
        api = self.kube.api_client()
        source = open_source(SourceSettings.of(self.prometheus.url))
        notifier = build_notifier(
            None, file.analysis.notifications, policy=RetryPolicy(retries=1, backoff=0.01)
        )
        try:
            rollout = rolling_over(
                file, client.AppsV1Api(api), client.CoreV1Api(api), client.CustomObjectsApi(api),
                source, self.store, self.clock, notifier=notifier,
            )  # fmt: skip
            return rollout.run()
        finally:
            notifier.close(timeout=10)

    # --- what was seen and told -------------------------------------------------------------

    def progress(self, outcome: Outcome) -> dict[str, Any]:
        assert outcome.run_id is not None
        run = self.store.get(outcome.run_id)
        assert run is not None
        return dict((run.answer or {})["rollout"])

    def health(self, outcome: Outcome) -> list[dict[str, Any]]:
        return list(self.progress(outcome).get("health") or [])

    def decisions(self, outcome: Outcome) -> list[dict[str, Any]]:
        """The run's decision events as stored (what the report is made of)."""
        assert outcome.run_id is not None
        return [e for e in self.store.events(outcome.run_id) if e["kind"] == "decision"]

    def selector(self) -> dict[str, str]:
        return dict(self.kube.get(*SERVICE, NS, "checkout")["spec"]["selector"])

    def selector_writes(self) -> list[dict[str, Any]]:
        return [
            r.body["spec"]["selector"]
            for r in self.kube.writes(plural="services", name="checkout", method="PATCH")
            if r.status == 200
        ]

    def deployment_patches(self) -> list[Any]:
        return [r.body for r in self.kube.writes(plural="deployments", name="checkout",
                                                 method="PATCH")]  # fmt: skip


def told(receiver: HookReceiver, outcome: str) -> list[dict[str, Any]]:
    """The decisions `outcome` a webhook received."""
    return [dict(b) for b in receiver.bodies if b["decision"] == outcome]


def outcomes(receiver: HookReceiver) -> list[str]:
    return [str(b["decision"]) for b in receiver.bodies]


@contextmanager
def open_world(
    prometheus: PrometheusServer,
    kube: KubeServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    """The world, for a test module's fixture (the targets served until the block ends)."""
    monkeypatch.setenv("PD_KEY", KEY)
    start = prometheus.scenarios["healthy"].start
    with ExitStack() as stack:
        team, platform, author = (
            stack.enter_context(hooks_running(HookReceiver())) for _ in range(3)
        )
        pagerduty = PagerDutyStandIn()
        pagerduty.url = f"{stack.enter_context(serving(PagerDutyHandler, pagerduty))}/v2/enqueue"
        store = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
        stack.callback(store.close)
        yield World(kube, ScriptedClock(start), start, team, platform, author, pagerduty,
                    store, tmp_path, prometheus)  # fmt: skip

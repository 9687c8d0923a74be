"""Controller mode over a real Prometheus (generated scenarios) and the Kubernetes API test server.

The controller is driven one tick at a time on a clock the test moves through each scenario's
window; Argo's part is played by `tests/argo_standin.py`. Assertions are on the requests the
official client sent (`kube.writes`), the Rollout's state, and the run store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from prometheus_client import CollectorRegistry, generate_latest

from analyzer.notify import NotificationSpec, RetryPolicy, build_notifier
from analyzer.runs import PrometheusSources, RunService, RunSettings, Telemetry
from analyzer.runs.store import RunStore, open_store
from analyzer.spec import plan_analysis
from strategies.argo import (
    Action,
    ControllerApp,
    ControllerOptions,
    ControllerSettings,
    ControllerTelemetry,
    LeaseElector,
)
from strategies.argo.controller import Controller
from strategies.argo.rollouts import ArgoRollouts
from strategies.kube.permissions import CONTROLLER, LEADER_ELECTION
from tests.argo_standin import ABORT, ARGO, PAUSE_STEPS, PROMOTE, ArgoStandIn, canary_rollout
from tests.conftest import PrometheusServer
from tests.hook_server import HookReceiver
from tests.kube_server import KubeServer
from tests.reliability.fault_proxy import Fault, FaultProxy
from tests.test_serve_api import Clock, analyses_for

pytestmark = pytest.mark.prometheus

NS = "shop"


@dataclass
class World:
    kube: KubeServer
    clock: Clock
    argo: ArgoStandIn
    store: RunStore
    service: RunService
    controller: Controller
    start: datetime

    def rollout(self) -> dict[str, Any]:
        return self.kube.get(*ARGO, NS, "checkout")

    def status(self) -> dict[str, Any]:
        return dict(self.rollout().get("status", {}))

    def annotation(self) -> str:
        return str(self.rollout()["metadata"].get("annotations", {}).get("verdict.dev/status"))

    def tick_at(self, minutes: float) -> Any:
        self.clock.set(self.start + timedelta(minutes=minutes))
        self.argo.reconcile(NS, "checkout")
        return self.controller.tick(NS, "checkout")

    def action_patches(self) -> list[tuple[str, Any, int]]:
        """(endpoint, body, status) of every write to the Rollout except annotations."""
        out = []
        for r in self.kube.writes(plural="rollouts", name="checkout", method="PATCH"):
            if set(r.body) == {"metadata"}:
                continue
            out.append(("status" if r.path.endswith("/status") else "main", r.body, r.status))
        return out


def new_controller(
    service: RunService,
    kube: KubeServer,
    clock: Clock,
    settings: ControllerSettings | None = None,
) -> Controller:
    """A controller (a process of its own: its own metrics) over the shared run store."""
    return Controller(
        service=service,
        actuator=ArgoRollouts(kube.api_client()),
        clock=clock,
        telemetry=ControllerTelemetry(CollectorRegistry()),
        settings=settings,
    )


def make_world(
    prometheus: PrometheusServer,
    kube: KubeServer,
    tmp_path: Path,
    scenario: str,
    *,
    steps: list[dict[str, Any]] | None = None,
    settings: ControllerSettings | None = None,
) -> World:
    start = prometheus.scenarios[scenario].start
    clock = Clock(start)
    store = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    service = RunService(
        analyses=analyses_for(prometheus),
        store=store,
        sources=PrometheusSources(look_budget=8.0),
        clock=clock,
        settings=RunSettings(),
        telemetry=Telemetry(store.count),
    )
    argo = ArgoStandIn(kube, now=clock.now).install()
    kube.put(canary_rollout("checkout", NS, analysis=scenario, steps=steps or PAUSE_STEPS))
    argo.start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")
    controller = new_controller(service, kube, clock, settings)
    return World(kube, clock, argo, store, service, controller, start)


@pytest.fixture
def closing() -> Iterator[list[Any]]:
    things: list[Any] = []
    yield things
    for thing in things:
        thing.close()


def test_a_healthy_canary_is_promoted_step_by_step_to_healthy(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    world = make_world(prometheus, kube, tmp_path, "healthy")
    closing.append(world.service)
    assert world.status()["pauseConditions"][0]["reason"] == "CanaryPauseStep"
    minute = 0.0
    while world.status().get("phase") != "Healthy" and minute <= 36:
        world.tick_at(minute)
        minute += 3
    assert world.status()["phase"] == "Healthy"
    assert world.status()["stableRS"] == "c4n4ry"
    # one promote per pause step: exactly the patch of `kubectl argo rollouts promote`
    assert world.action_patches() == [("status", PROMOTE, 200)] * 3
    steps_paused = [i for name, i, phase in world.argo.history if phase == "Paused"]
    assert steps_paused == [1, 3, 5]
    assert world.annotation().startswith("pass; promote (done); the analysis passes at step 5")
    events = kube.objects("", "v1", "events")
    assert [e["reason"] for e in events].count("VerdictPromoted") == 3
    assert all(e["involvedObject"]["name"] == "checkout" for e in events)
    runs = world.store.runs()
    assert len(runs) == 1 and runs[0].key.canary_hash == "c4n4ry" and runs[0].verdict == "pass"
    assert world.store.pending_actions() == []
    assert_allowed(kube)


def test_a_regression_at_the_first_step_is_aborted_without_a_promote(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    world = make_world(prometheus, kube, tmp_path, "error-regression")
    closing.append(world.service)
    world.tick_at(0)  # the run starts: no data yet
    assert world.action_patches() == []
    world.tick_at(5)
    assert world.action_patches() == [("status", ABORT, 200)]
    status = world.status()
    assert status["abort"] is True and status["phase"] == "Degraded"
    assert status["canary"]["weights"]["canary"]["weight"] == 0
    assert world.annotation().startswith("fail; abort (done); the analysis fails at step 1")
    events = {(e["reason"], e["type"]) for e in kube.objects("", "v1", "events")}
    assert ("VerdictAborted", "Warning") in events and ("VerdictPromoted", "Normal") not in events
    world.tick_at(8)  # an aborted Rollout is left alone
    assert world.action_patches() == [("status", ABORT, 200)]


def test_an_undecided_canary_stays_paused_and_the_annotation_says_why(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    settings = ControllerSettings(max_inconclusive=timedelta(minutes=10))
    world = make_world(prometheus, kube, tmp_path, "low-traffic", settings=settings)
    closing.append(world.service)
    for minute in (0, 4, 8):
        world.tick_at(minute)
    assert world.annotation().startswith("inconclusive; none; undecided at step 1: stays paused")
    world.tick_at(12)
    assert world.action_patches() == []
    assert world.status()["phase"] == "Paused"
    note = world.annotation()
    assert "undecided for 12m at step 1 (maxInconclusive 10m)" in note
    assert "promote or abort it by hand" in note
    assert "VerdictUndecided" in [e["reason"] for e in kube.objects("", "v1", "events")]


def test_an_unchanged_decision_refreshes_its_figures_at_most_once_a_minute_without_events(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    # a thousand Rollouts looked at every 30 s would cost the API two writes a look
    settings = ControllerSettings(min_step_looks=50)  # "pass, after k of 50 looks": k moves
    world = make_world(prometheus, kube, tmp_path, "healthy", settings=settings)
    closing.append(world.service)
    world.tick_at(0)
    written: list[str] = []
    for minute in (20.0, 20.25, 20.5, 20.75, 21.0, 21.25, 22.5):
        world.tick_at(minute)
        written.append(world.annotation())
    assert all(w.startswith("pass; none; pass, after ") for w in written), written
    # the text moves every look; the annotation follows at most once a minute
    assert written[0] == written[1] == written[2] == written[3]
    assert written[4] != written[3] and written[5] == written[4] and written[6] != written[5]
    events = [e["reason"] for e in kube.objects("", "v1", "events")]
    assert events.count("VerdictAnalysis") == 2  # the first look's, and the first pass's
    world.tick_at(23)
    assert world.annotation() == written[6]  # a minute has not passed


def test_a_timed_pause_is_paused_before_its_end_and_promoted_on_pass(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    steps = [{"setWeight": 5}, {"pause": {"duration": "10m"}}, {"setWeight": 50}]
    world = make_world(prometheus, kube, tmp_path, "healthy", steps=steps)
    closing.append(world.service)
    # first look 9.6 minutes into the 10-minute pause: no data yet, so not a pass
    world.tick_at(9.6)
    assert world.action_patches() == [("main", {"spec": {"paused": True}}, 200)]
    world.tick_at(11)  # the pause's clock has run out: Argo keeps it paused (spec.paused)
    assert world.status()["currentStepIndex"] == 1 and world.status()["phase"] == "Paused"
    minute = 14.0
    while world.status()["phase"] != "Healthy" and minute <= 36:
        world.tick_at(minute)
        minute += 3
    assert world.status()["phase"] == "Healthy"
    assert world.action_patches() == [
        ("main", {"spec": {"paused": True}}, 200),
        ("status", PROMOTE, 200),
        ("main", {"spec": {"paused": False}}, 200),
    ]


def test_a_look_that_fails_during_a_timed_pause_pauses_it_at_once_until_a_pass(
    prometheus: PrometheusServer,
    kube: KubeServer,
    tmp_path: Path,
    closing: list[Any],
    fault_proxy: FaultProxy,
) -> None:
    steps = [{"setWeight": 5}, {"pause": {"duration": "10m"}}, {"setWeight": 50}]
    world = make_world(prometheus, kube, tmp_path, "healthy", steps=steps)
    closing.append(world.service)
    spec = world.service.analyses["healthy"]  # Verdict reads Prometheus through the proxy
    world.service.analyses["healthy"] = spec.model_copy(
        update={"prometheus": spec.prometheus.model_copy(update={"url": fault_proxy.url})}
    )
    world.tick_at(0)  # a new run: no data yet, and 10 minutes left
    assert world.action_patches() == []
    fault_proxy.set(Fault("http_503"))
    world.tick_at(1)  # 9 minutes left, but no verdict: the next look may fail as well
    assert world.action_patches() == [("main", {"spec": {"paused": True}}, 200)]
    note = world.annotation()
    assert note.startswith(
        "no verdict; pause (done); no verdict this look: prometheus_unavailable: "
    )
    assert "; the timed pause of step 1 ends at " in note
    assert "paused until the analysis passes" in note
    world.tick_at(12)  # the pause's time is up: Argo keeps it paused (spec.paused)
    assert world.status()["currentStepIndex"] == 1 and world.status()["phase"] == "Paused"
    assert "(paused by Verdict until the analysis passes)" in world.annotation()
    fault_proxy.clear()
    minute = 15.0
    while world.status()["phase"] != "Healthy" and minute <= 36:
        world.tick_at(minute)
        minute += 3
    assert world.status()["phase"] == "Healthy"
    assert world.action_patches() == [
        ("main", {"spec": {"paused": True}}, 200),
        ("status", PROMOTE, 200),
        ("main", {"spec": {"paused": False}}, 200),
    ]
    assert max(i for _, i, phase in world.argo.history if phase == "Paused") == 1


def test_a_timed_pause_is_held_even_when_the_look_cannot_start_a_run(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    steps = [{"setWeight": 5}, {"pause": {"duration": "10m"}}, {"setWeight": 50}]
    world = make_world(prometheus, kube, tmp_path, "healthy", steps=steps)
    closing.append(world.service)
    # an analysis whose matchers need a value the Rollout does not give: no run, no verdict
    kube.modify(*ARGO, NS, "checkout",
                lambda o: o["metadata"]["annotations"].update({"verdict.dev/analysis": "templated"}))  # fmt: skip
    world.tick_at(0)
    assert world.action_patches() == [("main", {"spec": {"paused": True}}, 200)]
    assert world.annotation().startswith(
        "no verdict; pause (done); no verdict this look: missing_placeholder: "
    )
    assert world.store.runs() == [] and world.store.pending_actions() == []
    world.tick_at(11)
    assert world.status()["currentStepIndex"] == 1 and world.status()["phase"] == "Paused"


def test_a_rollout_whose_generation_is_ahead_is_left_alone(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    world = make_world(prometheus, kube, tmp_path, "error-regression")
    closing.append(world.service)
    kube.modify(*ARGO, NS, "checkout", lambda o: o["spec"].update(replicas=6))
    before = len(kube.writes())
    for minute in (0, 5, 10):
        world.clock.set(world.start + timedelta(minutes=minute))
        decision = world.controller.tick(NS, "checkout")
        assert decision is not None and "not trusted" in decision.reason
    assert kube.writes()[before:] == []
    assert world.store.runs() == []  # no look either


def test_a_conflict_is_retried_on_a_fresh_read(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    world = make_world(prometheus, kube, tmp_path, "error-regression")
    closing.append(world.service)
    world.tick_at(0)
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 409)
    world.tick_at(5)
    assert world.action_patches() == [("status", ABORT, 409), ("status", ABORT, 200)]
    reads = [r for r in kube.requests if r.method == "GET" and r.path.endswith("/checkout")]
    assert len(reads) >= 3  # the tick's read, then one fresh read per attempt
    text = generate_latest(world.controller.telemetry.actions).decode()
    assert 'verdict_controller_actions_total{kind="abort",outcome="conflict"} 1.0' in text
    assert 'verdict_controller_actions_total{kind="abort",outcome="sent"} 1.0' in text


@pytest.mark.parametrize("applied", [False, True], ids=["before-sending", "after-sending"])
def test_an_action_interrupted_by_a_restart_is_sent_exactly_once(
    prometheus: PrometheusServer,
    kube: KubeServer,
    tmp_path: Path,
    closing: list[Any],
    applied: bool,
) -> None:
    settings = ControllerSettings(action_first_wait=30.0)
    world = make_world(prometheus, kube, tmp_path, "error-regression", settings=settings)
    closing.append(world.service)
    world.tick_at(0)
    # the process stops with the abort recorded and its first try answered 503 (the request
    # did not take effect, or did and its answer was lost), while it waits to try again
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 503, after=applied)
    world.clock.set(world.start + timedelta(minutes=5))
    ticking = threading.Thread(target=world.controller.tick, args=(NS, "checkout"))
    ticking.start()
    _wait(lambda: [p[2] for p in world.action_patches()] == [503])
    stopping = time.monotonic()
    world.controller.stop()
    ticking.join(timeout=10)
    assert time.monotonic() - stopping < 2  # the wait for the next try ends at once
    assert "abort (left pending)" in world.annotation()
    pending = world.store.pending_actions()
    assert [(a.kind, a.step, a.state) for a in pending] == [("abort", 1, "pending")]
    # a new process over the same run store finishes what was pending
    restarted = new_controller(world.service, kube, world.clock)
    assert restarted.recover() == 1
    assert world.store.pending_actions() == []
    sent = [p for p in world.action_patches() if p[1] == ABORT]
    if applied:
        assert sent == [("status", ABORT, 503)]  # took effect; not sent again
    else:
        assert sent == [("status", ABORT, 503), ("status", ABORT, 200)]
    assert world.status()["abort"] is True
    restarted.tick(NS, "checkout")
    assert [p for p in world.action_patches() if p[1] == ABORT] == sent


def add_rollout(world: World, name: str) -> None:
    """Another Rollout of the same analysis, updating and paused at its first step."""
    world.kube.put(canary_rollout(name, NS, analysis="error-regression", steps=PAUSE_STEPS))
    world.argo.start_update(NS, name, canary=f"{name}-c1", stable=f"{name}-s0")


def aborted(world: World, name: str) -> bool:
    return world.kube.get(*ARGO, NS, name).get("status", {}).get("abort") is True


def test_an_abort_answered_with_500s_and_409s_is_retried_until_it_lands(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    settings = ControllerSettings(action_first_wait=0.01)
    world = make_world(prometheus, kube, tmp_path, "error-regression", settings=settings)
    closing.append(world.service)
    world.tick_at(0)
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 500, times=3)
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 409, times=2)
    with structlog.testing.capture_logs() as logs:
        world.tick_at(5)
    assert [p[2] for p in world.action_patches()] == [500, 500, 500, 409, 409, 200]
    assert aborted(world, "checkout")
    assert world.annotation().startswith("fail; abort (done); the analysis fails at step 1")
    tries = [(e["attempt"], e["error"]) for e in logs if e["event"].startswith("action did not")]
    failed = "HTTP 500 Internal Server Error"
    assert tries == [(1, failed), (2, failed), (3, failed), (4, "HTTP 409 Conflict"),
                     (5, "HTTP 409 Conflict")]  # fmt: skip
    assert [e["attempt"] for e in logs if e["event"] == "action landed"] == [6]
    assert world.store.pending_actions() == []
    text = generate_latest(world.controller.telemetry.actions).decode()
    assert 'verdict_controller_actions_total{kind="abort",outcome="error"} 3.0' in text
    assert 'verdict_controller_actions_total{kind="abort",outcome="conflict"} 2.0' in text
    assert 'verdict_controller_actions_total{kind="abort",outcome="sent"} 1.0' in text


def test_an_abort_that_does_not_land_by_its_deadline_is_said_on_the_rollout_and_notified(
    prometheus: PrometheusServer,
    kube: KubeServer,
    tmp_path: Path,
    closing: list[Any],
    hooks: HookReceiver,
) -> None:
    settings = ControllerSettings(
        action_deadline=timedelta(seconds=2), action_first_wait=0.1, action_max_wait=0.4
    )
    world = make_world(prometheus, kube, tmp_path, "error-regression", settings=settings)
    closing.append(world.service)
    hook = NotificationSpec.model_validate({"type": "webhook", "url": hooks.url, "on": ["aborted"]})
    notifier = build_notifier(None, [hook], policy=RetryPolicy(retries=0))
    world.service.notifiers["error-regression"] = notifier
    world.tick_at(0)
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 500, times=1000)
    started = time.monotonic()
    decision = world.tick_at(5)
    took = time.monotonic() - started
    assert decision.action is Action.ABORT
    assert 1.5 < took < 4, f"tried for {took:.1f} s"
    statuses = [p[2] for p in world.action_patches()]
    assert len(statuses) >= 4 and set(statuses) == {500}
    assert not aborted(world, "checkout")
    note = world.annotation()
    tried = f"{len(statuses)} tries in 2 s; last: HTTP 500"
    assert note.startswith(f"fail; abort (did not land: {tried}")
    assert "the analysis fails at step 1" in note
    events = [(e["reason"], e["type"]) for e in kube.objects("", "v1", "events")]
    assert ("VerdictActionFailed", "Warning") in events
    (body,) = hooks.wait_for(1)  # an `aborted` filter hears of an abort that did not land
    assert body["decision"] == "abort-failed" and body["run"]["way"] == "controller"
    assert body["reason"].startswith("the abort did not land")
    assert "abort it by hand" in body["reason"]
    # still pending: the next tick (or the next leader) tries again
    pending = world.store.pending_actions()
    assert [(a.kind, a.step, a.state) for a in pending] == [("abort", 1, "pending")]
    notifier.close(timeout=5)
    text = generate_latest(world.controller.telemetry.actions).decode()
    assert 'verdict_controller_actions_total{kind="abort",outcome="failed"} 1.0' in text


def test_one_rollouts_failing_abort_does_not_hold_back_another(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    settings = ControllerSettings(action_deadline=timedelta(seconds=4), action_first_wait=0.2)
    world = make_world(prometheus, kube, tmp_path, "error-regression", settings=settings)
    closing.append(world.service)
    add_rollout(world, "payments")
    world.tick_at(0)
    world.controller.tick(NS, "payments")
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 500, times=1000)
    world.clock.set(world.start + timedelta(minutes=5))
    ticking = threading.Thread(target=world.controller.tick, args=(NS, "checkout"))
    ticking.start()
    _wait(lambda: len(world.action_patches()) >= 1)  # checkout's abort is being tried again
    started = time.monotonic()
    world.controller.tick(NS, "payments")
    took = time.monotonic() - started
    assert aborted(world, "payments") and took < 2, f"payments aborted after {took:.1f} s"
    assert ticking.is_alive() and not aborted(world, "checkout")
    ticking.join(timeout=10)
    assert "abort (did not land" in world.annotation()


def test_a_stalled_read_or_watch_does_not_stop_the_controller_looking_at_other_rollouts(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    world = make_world(prometheus, kube, tmp_path, "error-regression")
    closing.append(world.service)
    quick = world.service.analyses["error-regression"].model_copy(update={"interval": 1.0})
    world.service.analyses["error-regression"] = quick  # a look every second
    world.service.plans["error-regression"] = plan_analysis(quick)
    add_rollout(world, "payments")
    app = ControllerApp(
        kube.api_client(),
        world.service,
        world.clock,
        ControllerOptions(namespaces=(NS,), identity="solo"),
    )
    app.watch.timeout_seconds = 1
    app.start()
    stalls = []
    try:
        _wait(lambda: len(world.store.runs()) == 2)  # each looked at once (no data yet)
        _wait(lambda: all(  # and its decision written on it (the watch has seen that)
            "verdict.dev/status" in kube.get(*ARGO, NS, n)["metadata"].get("annotations", {})
            for n in ("checkout", "payments")
        ))  # fmt: skip
        stalls.append(read := kube.stall_next("GET", r"/rollouts/checkout$"))
        stalls.append(listing := kube.stall_next("GET", rf"/namespaces/{NS}/rollouts$"))
        # a write elsewhere, then the history forgotten: the watch's next start is behind and
        # must list again: that list stalls
        kube.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "elsewhere"}})
        kube.compact()
        # (before any Rollout changes: a change the running watch sees keeps it current)
        assert listing.arrived.wait(10)
        world.clock.set(world.start + timedelta(minutes=5))
        assert read.arrived.wait(10)
        _wait(lambda: aborted(world, "payments"), 15)  # looked at and aborted meanwhile
        assert not aborted(world, "checkout")  # its read is still held
        for stall in stalls:
            stall.release(apply=True)
        _wait(lambda: aborted(world, "checkout"), 15)
        _wait(lambda: app.readiness() == {f"rollout watch ({NS})": "ok"})
    finally:
        for stall in stalls:
            stall.release(apply=True)
        app.stop()


def test_with_leader_election_one_replica_acts_and_the_other_takes_over(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    world = make_world(prometheus, kube, tmp_path, "error-regression")
    closing.append(world.service)
    electors = [
        LeaseElector(kube.api_client(), name="verdict", namespace=NS, identity=who)
        for who in ("replica-a", "replica-b")
    ]
    replicas = [
        Controller(
            service=world.service,
            actuator=ArgoRollouts(kube.api_client()),
            clock=world.clock,
            telemetry=ControllerTelemetry(Telemetry(world.store.count).registry),
            is_leader=e.is_leader,
        )
        for e in electors
    ]
    electors[0].start()
    deadline = time.monotonic() + 5
    while not electors[0].is_leader() and time.monotonic() < deadline:
        time.sleep(0.05)
    electors[1].start()
    try:
        time.sleep(0.5)
        assert electors[0].is_leader() and not electors[1].is_leader()
        lease = kube.get("coordination.k8s.io", "v1", "leases", NS, "verdict")
        assert lease["spec"]["holderIdentity"] == "replica-a"
        assert lease["spec"]["leaseDurationSeconds"] == 15
        world.clock.set(world.start)
        assert replicas[1].tick(NS, "checkout") is None  # the follower does not even look
        assert replicas[0].tick(NS, "checkout") is not None
        assert world.store.runs()[0].looks == 1
        stopped = time.monotonic()
        electors[0].stop()
        while not electors[1].is_leader() and time.monotonic() - stopped < 15:
            time.sleep(0.1)
        took_over = time.monotonic() - stopped
        assert electors[1].is_leader(), "the other replica did not take over within 15 s"
        assert took_over < 15
        world.clock.set(world.start + timedelta(minutes=5))
        world.argo.reconcile(NS, "checkout")
        assert replicas[0].tick(NS, "checkout") is None
        assert replicas[1].tick(NS, "checkout") is not None
        assert world.action_patches() == [("status", ABORT, 200)]
        lease = kube.get("coordination.k8s.io", "v1", "leases", NS, "verdict")
        assert lease["spec"]["holderIdentity"] == "replica-b"
        assert_allowed(kube)
    finally:
        for elector in electors:
            elector.stop()


def test_a_holder_that_dies_without_releasing_is_replaced_after_the_lease_expires(
    kube: KubeServer,
) -> None:
    duration = 3  # seconds; the Lease carries its holder's duration (15 s by default)
    a = LeaseElector(kube.api_client(), name="verdict", namespace=NS, identity="a", duration=duration)
    b = LeaseElector(kube.api_client(), name="verdict", namespace=NS, identity="b", retry=0.5)
    assert a.try_once() and not b.try_once()
    died = time.monotonic()  # `a` never renews again (as if killed)
    while not b.try_once():
        assert time.monotonic() - died < duration + 1, "b did not take over after the lease expired"
        time.sleep(0.5)
    assert duration - 1 < time.monotonic() - died < duration + 1
    lease = kube.get("coordination.k8s.io", "v1", "leases", NS, "verdict")
    assert lease["spec"]["holderIdentity"] == "b" and lease["spec"]["leaseTransitions"] == 1


def test_the_watch_schedules_updating_rollouts_and_relists_after_expiry(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, closing: list[Any]
) -> None:
    world = make_world(prometheus, kube, tmp_path, "healthy")
    closing.append(world.service)
    app = ControllerApp(
        kube.api_client(),
        world.service,
        world.clock,
        ControllerOptions(namespaces=(NS,), identity="solo"),
    )
    app.watch.timeout_seconds = 1
    app.start()
    try:
        _wait(lambda: app.controller.jobs() != {})
        assert app.controller.jobs() == {f"{NS}/checkout": ("healthy", "c4n4ry", 30.0)}
        # ready once the whole list is handled: a moment after its first item is scheduled
        _wait(lambda: app.readiness() == {f"rollout watch ({NS})": "ok"})
        kube.compact()  # the next watch from an old resourceVersion gets 410: list again
        other = canary_rollout("payments", NS, analysis="healthy", steps=PAUSE_STEPS)
        kube.put(other)
        world.argo.start_update(NS, "payments", canary="p1", stable="p0")
        _wait(lambda: f"{NS}/payments" in app.controller.jobs())
        world.argo.start_update(NS, "payments", canary="p1", stable="p1")  # update over
        _wait(lambda: f"{NS}/payments" not in app.controller.jobs())
        text = generate_latest(world.service.telemetry.registry).decode()
        assert "verdict_controller_leader 1.0" in text
        assert ("argoproj.io", "rollouts", "watch") in kube.permissions_used()
        assert_allowed(kube)
    finally:
        app.stop()


def assert_allowed(kube: KubeServer) -> None:
    """Every call made to the Kubernetes API is allowed by `strategies.kube.permissions` (the
    stand-in's own writes go around HTTP)."""
    allowed = {
        (rule.api_group, resource, verb)
        for rule in CONTROLLER + LEADER_ELECTION
        for resource in rule.resources
        for verb in rule.verbs
    }
    assert kube.permissions_used() <= allowed, kube.permissions_used() - allowed


def _wait(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)

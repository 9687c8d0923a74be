"""The health gate's rules (`strategies.health`), the rollback's check (`strategies.recovery`)
and the controller's decision on them (`strategies.argo.decide`): pure, on tables of API objects
as the Kubernetes and Argo CD APIs return them (Applications checked against Argo CD's CRD)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from analyzer.verdicts import Verdict
from strategies.argo.decide import Action, Policy, decide, rollout_view
from strategies.health import (
    Act,
    HealthPolicy,
    Memory,
    classify_application,
    classify_pods,
    with_findings,
)
from strategies.recovery import back_at_level, check_of
from tests.argo_standin import PAUSE_STEPS, canary_rollout
from tests.crds import application_schema

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
POLICY = HealthPolicy(readiness_grace=120, max_restarts=3)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(
    name: str = "web-1",
    *,
    ready: bool = True,
    since: datetime | None = None,
    waiting: str | None = None,
    message: str = "",
    restarts: int = 0,
    phase: str | None = None,
    unschedulable: str | None = None,
    created: datetime | None = None,
) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = [{"type": "Ready", "status": "True" if ready else "False"}]
    if since is not None:
        conditions[0]["lastTransitionTime"] = iso(since)
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
    if waiting:
        state = {"waiting": {"reason": waiting, "message": message}}
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}"}
    if created is not None:
        meta["creationTimestamp"] = iso(created)
    return {
        "metadata": meta,
        "status": {
            "phase": phase or ("Running" if ready else "Pending"),
            "conditions": conditions,
            "containerStatuses": [
                {"name": "web", "ready": ready, "restartCount": restarts, "state": state}
            ],
        },
    }


def event(pod_name: str, reason: str, message: str, first: datetime) -> dict[str, Any]:
    return {
        "involvedObject": {"kind": "Pod", "name": pod_name},
        "reason": reason,
        "message": message,
        "firstTimestamp": iso(first),
        "lastTimestamp": iso(first + timedelta(seconds=30)),
    }


def judge(
    pods: list[dict[str, Any]],
    events: list[dict[str, Any]] | None = None,
    *,
    now: datetime = T0,
    memory: Memory | None = None,
) -> Any:
    return classify_pods(pods, events or [], now=now, policy=POLICY, memory=memory or Memory())


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("ImagePullBackOff", "image-pull"),
        ("ErrImagePull", "image-pull"),
        ("InvalidImageName", "image-pull"),
        ("CrashLoopBackOff", "crash-loop"),
        ("CreateContainerConfigError", "config-error"),
    ],
)
def test_a_fatal_container_reason_fails_at_once_with_the_pod_reason_and_time(
    reason: str, kind: str
) -> None:
    first = T0 - timedelta(seconds=40)
    events = [event("web-2", "Failed", 'Failed to pull image "web:2": not found', first)]
    if kind == "crash-loop":
        events = [event("web-2", "BackOff", "Back-off restarting failed container web", first)]
    if kind == "config-error":
        events = [event("web-2", "Failed", 'Error: configmap "web" not found', first)]
    health = judge([pod("web-1"), pod("web-2", ready=False, waiting=reason)], events)
    assert health.act is Act.FAIL
    (finding,) = health.failing
    assert (finding.kind, finding.subject, finding.reason) == (kind, "pod web-2", reason)
    assert finding.time == first  # since the kubelet first said so
    assert events[0]["message"] in finding.message


def test_not_ready_fails_only_past_the_grace_counted_from_the_ready_condition() -> None:
    since = T0 - timedelta(seconds=100)
    assert judge([pod(ready=False, since=since)]).act is Act.OK  # 100 s < 120 s
    health = judge([pod(ready=False, since=since)], now=T0 + timedelta(seconds=20))
    (finding,) = health.failing
    assert (finding.kind, finding.reason, finding.time) == ("readiness", "NotReady", since)
    assert "not Ready for 120 s (readinessGrace 120 s)" in finding.message


def test_readiness_probe_events_date_the_failure_and_say_why() -> None:
    probes = [
        event("web-1", "Unhealthy", "Readiness probe failed: HTTP 503", T0 - timedelta(minutes=5))
    ]
    # the condition changed a minute ago (a flapping pod), the probe fails for five
    health = judge([pod(ready=False, since=T0 - timedelta(minutes=1))], probes)
    (finding,) = health.failing
    assert finding.kind == "readiness" and "Readiness probe failed: HTTP 503" in finding.message
    assert finding.time == T0 - timedelta(minutes=5)
    # a Ready pod is healthy whatever its older probe Events say
    assert judge([pod(ready=True)], probes).act is Act.OK


def test_without_a_transition_time_not_ready_counts_from_when_first_seen() -> None:
    first = judge([pod(ready=False)], now=T0)
    assert first.act is Act.OK
    later = judge([pod(ready=False)], now=T0 + timedelta(seconds=121), memory=first.memory)
    assert later.failing[0].time == T0


def test_restarts_during_the_run_above_max_fail_but_older_ones_do_not_count() -> None:
    old = pod(restarts=7, created=T0 - timedelta(hours=1))
    start = judge([old])
    assert start.act is Act.OK  # 7 restarts before the run: not the run's
    three = judge([pod(restarts=10, created=T0 - timedelta(hours=1))], memory=start.memory)
    assert three.act is Act.OK  # 3 during the run: not above maxRestarts 3
    four = judge([pod(restarts=11, created=T0 - timedelta(hours=1))], memory=start.memory)
    (finding,) = four.failing
    assert (
        finding.kind == "restarts"
        and "4 restarts during the run (maxRestarts 3)" in finding.message
    )
    born = judge([pod("web-9", restarts=4, created=T0 + timedelta(minutes=1))], memory=start.memory)
    assert born.failing[0].kind == "restarts"  # a pod born in the run: all its restarts count


def test_pending_for_resources_holds_and_is_never_a_readiness_failure() -> None:
    message = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available."
    pending = pod("web-3", ready=False, since=T0 - timedelta(hours=1), unschedulable=message)
    events = [event("web-3", "FailedScheduling", message, T0 - timedelta(minutes=30))]
    health = judge([pod("web-1"), pending], events)
    assert health.act is Act.HOLD and not health.failing
    (finding,) = health.held
    assert (finding.kind, finding.reason, finding.message) == (
        "pending",
        "FailedScheduling",
        message,
    )
    assert finding.time == T0 - timedelta(minutes=30)
    # unschedulable for another reason (a taint): an ordinary readiness failure
    taint = pod(
        "web-3",
        ready=False,
        since=T0 - timedelta(hours=1),
        unschedulable="0/3 nodes are available: 3 node(s) had untolerated taint",
    )
    assert judge([taint]).failing[0].kind == "readiness"


def test_no_pods_fail_after_the_grace_unless_someone_else_makes_them() -> None:
    first = judge([])
    assert first.act is Act.OK and not first.ready
    later = judge([], now=T0 + timedelta(seconds=120), memory=first.memory)
    assert later.failing[0].reason == "NoPods"
    relaxed = classify_pods(
        [],
        [],
        now=T0 + timedelta(hours=1),
        policy=replace(POLICY, require_pods=False),
        memory=first.memory,
    )
    assert relaxed.act is Act.OK


# --- Argo CD ------------------------------------------------------------------------------------


def application(status: dict[str, Any]) -> dict[str, Any]:
    app = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "checkout", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
            "source": {
                "repoURL": "https://git.example.com/shop.git",
                "path": "checkout",
                "targetRevision": "main",
            },
        },
        "status": status,
    }
    import jsonschema

    jsonschema.validate(app, application_schema())  # the real CRD's schema, strict
    return app


REV = "4f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"sync": {"status": "Synced", "revision": REV}, "health": {"status": "Healthy"}}, []),
        (
            {"sync": {"status": "OutOfSync", "revision": REV}, "health": {"status": "Healthy"}},
            [("out-of-sync", Act.HOLD, "OutOfSync")],
        ),
        (
            {
                "sync": {"status": "OutOfSync", "revision": REV},
                "operationState": {
                    "phase": "Running",
                    "startedAt": "2026-11-26T09:59:00Z",
                    "operation": {"sync": {"revision": REV}, "initiatedBy": {"username": "alice"}},
                },
            },
            [("out-of-sync", Act.HOLD, "sync Running")],
        ),
        (
            {
                "sync": {"status": "OutOfSync", "revision": REV},
                "operationState": {
                    "phase": "Failed",
                    "startedAt": "2026-11-26T09:59:00Z",
                    "finishedAt": "2026-11-26T09:59:30Z",
                    "message": "one or more objects failed to apply",
                    "syncResult": {"revision": REV},
                    "operation": {"initiatedBy": {"automated": True}},
                },
            },
            [("sync-failed", Act.FAIL, "sync Failed"), ("out-of-sync", Act.HOLD, "OutOfSync")],
        ),
        (
            {
                "sync": {"status": "Synced", "revision": REV},
                "health": {
                    "status": "Degraded",
                    "message": "Deployment exceeded its progress deadline",
                },
            },
            [("degraded", Act.FAIL, "Degraded")],
        ),
    ],
)
def test_the_application_holds_while_out_of_sync_and_fails_on_a_failed_sync_or_degraded(
    status: dict[str, Any], expected: list[tuple[str, Act, str]]
) -> None:
    found = classify_application(application(status), now=T0)
    assert [(f.kind, f.act, f.reason) for f in found] == expected
    for f in found:
        assert f.subject == "application argocd/checkout" and f.revision == REV
        assert f"commit {REV[:12]}" in f.text()
    authors = {f.author for f in found}
    if "operationState" in status:
        assert authors == {"alice"} or authors == {"automated"}
    health = with_findings(judge([pod()]), found)
    assert health.act is (expected[0][1] if expected else Act.OK)


# --- the rollback's check -----------------------------------------------------------------------


def test_the_old_version_is_back_at_its_pre_run_level_or_not() -> None:
    back = back_at_level("error-rate", (10, 10_000), (12, 10_000))  # 0.12 % vs 0.1 % before
    assert back.ok and "back at its pre-run level 0.1 %" in back.detail
    worse = back_at_level("error-rate", (10, 10_000), (500, 10_000))
    assert not worse.ok and "above" in worse.detail
    assert not back_at_level("error-rate", (10, 10_000), (0, 0)).ok  # no request since
    assert back_at_level("error-rate", None, (1, 10_000), slo=0.005).ok
    assert not back_at_level("error-rate", None, (1, 10_000)).ok  # nothing to hold it to
    check = check_of([back, worse], T0)
    assert check.outcome == "rollback-not-recovered"
    assert check.text().startswith("rollback did not recover: error-rate:")
    assert check_of([back], T0).outcome == "rollback-verified"
    assert check_of([], T0).outcome == "rollback-not-recovered"


# --- the controller's decision ------------------------------------------------------------------


def view(steps: list[dict[str, Any]], *, paused: bool = False, pause: bool = False) -> Any:
    obj = canary_rollout("web", "shop", analysis="web", steps=steps)
    obj["metadata"]["generation"] = 1
    obj["spec"]["paused"] = paused
    obj["status"] = {
        "observedGeneration": "1",
        "currentPodHash": "new",
        "stableRS": "old",
        "currentStepIndex": 1,
    }
    if pause:
        obj["status"]["pauseConditions"] = [{"reason": "CanaryPauseStep", "startTime": iso(T0)}]
    return rollout_view(obj)


def decide_with(rollout: Any, verdict: Verdict | None, health: Any) -> Any:
    return decide(
        verdict,
        rollout,
        now=T0,
        step_looks=3,
        policy=Policy(interval=timedelta(seconds=30)),
        health=health,
    )


def test_the_controller_aborts_on_a_failing_gate_and_pauses_on_a_hold() -> None:
    crash = judge([pod(ready=False, waiting="CrashLoopBackOff")])
    pending = judge(
        [pod(ready=False, unschedulable="0/2 nodes are available: 2 Insufficient memory.")]
    )
    timed: list[dict[str, Any]] = [
        {"setWeight": 5},
        {"pause": {"duration": "10m"}},
        {"setWeight": 50},
    ]
    # a failing gate aborts even on a passing analysis, told as the gate's kind
    decision = decide_with(view(timed, pause=True), Verdict.PASS, crash)
    assert (decision.action, decision.outcome) == (Action.ABORT, "crash-loop")
    assert "pod web-1: CrashLoopBackOff" in decision.reason
    # a hold pauses a Rollout Argo would move on (a timed pause), never promotes it
    decision = decide_with(view(timed, pause=True), Verdict.PASS, pending)
    assert (decision.action, decision.outcome) == (Action.PAUSE, "pending")
    assert "Insufficient memory" in decision.reason
    # paused already, or at an indefinite pause: nothing to do, no promotion either
    for held in (view(timed, pause=True, paused=True), view(PAUSE_STEPS, pause=True)):
        decision = decide_with(held, Verdict.PASS, pending)
        assert (decision.action, decision.outcome) == (Action.NONE, "pending")
    # the hold clears: a pass promotes as before
    assert decide_with(view(PAUSE_STEPS, pause=True), Verdict.PASS, judge([pod()])).action is (
        Action.PROMOTE
    )
    # a failing analysis still aborts while held
    assert decide_with(view(timed, pause=True), Verdict.FAIL, pending).action is Action.ABORT

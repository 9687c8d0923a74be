"""People's verbs on a running `verdict canary run` with `strategy: blueGreen` or `rolling`:
`verdict canary abort|promote|pause|resume` (a second process, through the shared run store),
`POST /api/v1/runs/{id}/actions`, and the run store's request (`request_action`) that both
write, taken by the running strategy at its next look.

The world is `tests/health_world.py`'s: the Kubernetes API test server (Service and pods, or a
Deployment moved by a stand-in for its controller), a real Prometheus over the `healthy`
scenario, webhook receivers and a PagerDuty stand-in, a simulated clock; people act at scripted
times.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzer.report import load_report
from analyzer.runs.model import Run
from analyzer.runs.requests import RunEnded, request_action, running_canary
from strategies.rollout_file import RolloutFile
from tests.conftest import PrometheusServer
from tests.health_world import BLUE, GREEN, World, open_world, outcomes
from tests.health_world import told as told_to
from tests.helpers import run_verdict
from tests.kube_server import KubeServer, Resource
from tests.test_health_canary import SCHEDULER, at, pod, pod_event
from tests.test_run_actions_api import AUTH, app_over

pytestmark = pytest.mark.prometheus


@pytest.fixture
def world(
    prometheus: PrometheusServer, kube: KubeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    with open_world(prometheus, kube, tmp_path, monkeypatch) as found:
        yield found


def running(world: World, file: RolloutFile) -> Run:
    """The file's run, running now (as `verdict canary abort --config FILE` finds it)."""
    found = running_canary(world.store.runs(), analysis=file.analysis.name,
                           namespace=file.rollout.namespace, rollout="checkout")  # fmt: skip
    assert found is not None, "no running run"
    return found


def ask(world: World, file: RolloutFile, action: str, by: str, reason: str = "") -> None:
    """A person's request, recorded in the running run (what the command and the API write)."""
    request_action(world.store, running(world, file).id, action, by, reason,
                   now=world.clock.now())  # fmt: skip


def from_a_second_terminal(
    world: World, file: RolloutFile, action: str, by: str, reason: str
) -> dict[str, Any]:
    """`verdict canary <action> --config FILE` in its own process, over the same run store."""
    done = run_verdict(
        "canary", action, "--config", file.path, "--store", f"sqlite:///{world.root / 'runs.sqlite'}",
        "--by", by, "--reason", reason, "--output", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def decided(world: World, outcome: Any) -> list[str]:
    return [d["outcome"] for d in world.decisions(outcome)]


# --- blue/green --------------------------------------------------------------------------------


def test_bluegreen_abort_from_a_second_terminal_switches_back_to_blue(world: World) -> None:
    world.install_bluegreen()
    file = world.bluegreen_file()
    asked: list[dict[str, Any]] = []
    world.clock.at(world.minute(2), lambda: asked.append(
        from_a_second_terminal(world, file, "abort", "alice", "SEV-2: checkout errors")))  # fmt: skip
    outcome = world.run_bluegreen(file)
    assert outcome.decision == "aborted", outcome.reason
    assert outcome.reason == "switched back to blue: aborted by alice: SEV-2: checkout errors"
    assert asked[0]["run"]["id"] == outcome.run_id
    assert world.selector_writes() == [GREEN, BLUE]
    decision = world.decisions(outcome)[0]
    assert (decision["outcome"], decision["extra"]["manual"]["by"]) == ("aborted", "alice")
    assert decision["verdict"] != "fail"  # a person's abort, not the analysis'
    assert [a.text() for a in load_report(world.store, str(outcome.run_id)).manual] == [
        "abort by alice: SEV-2: checkout errors"
    ]
    (told,) = told_to(world.team, "aborted")
    assert told["extra"]["manual"]["reason"] == "SEV-2: checkout errors"
    assert outcome.rollback is not None and outcome.rollback["verified"] is True
    (taken,) = world.progress(outcome)["manual"]
    assert (taken["action"], taken["by"]) == ("abort", "alice")


def test_bluegreen_pause_holds_green_past_its_validation_until_resumed(world: World) -> None:
    world.install_bluegreen()
    file = world.bluegreen_file()
    world.clock.at(world.minute(1), lambda: ask(world, file, "pause", "bob", "DB migration"))
    world.clock.at(world.minute(10), lambda: ask(world, file, "resume", "bob"))
    outcome = world.run_bluegreen(file)
    assert outcome.decision == "promoted", outcome.reason
    assert world.selector_writes() == [GREEN]  # held on green, never switched back
    (step,) = world.progress(outcome)["steps"]
    held = float(step["heldSeconds"])
    assert 8.5 * 60 <= held <= 9.5 * 60
    # the validation's 6 minutes, moved by the time green was held
    assert at(step["end"]) >= at(step["start"]) + timedelta(minutes=6, seconds=held)
    assert decided(world, outcome) == ["paused", "resumed", "promoted"]
    assert [d["extra"]["manual"]["by"] for d in world.decisions(outcome)[:2]] == ["bob", "bob"]
    assert outcomes(world.team) == ["paused", "resumed", "promoted"]


def test_bluegreen_promote_keeps_green_as_a_manual_promotion(world: World) -> None:
    world.install_bluegreen()
    file = world.bluegreen_file()
    world.clock.at(world.minute(2), lambda: ask(world, file, "promote", "carol", "hotfix"))
    outcome = world.run_bluegreen(file)
    assert outcome.decision == "promoted", outcome.reason
    assert outcome.reason == "green kept: manual promotion by carol: hotfix"
    assert world.selector_writes() == [GREEN] and world.selector() == GREEN
    progress = world.progress(outcome)
    assert progress["promotion"]["basis"] == "manual" and progress["promotion"]["by"] == "carol"
    assert at(progress["steps"][0]["end"]) < world.minute(3)  # before the validation's end
    (decision,) = world.decisions(outcome)
    assert decision["reason"].startswith("green kept: manual promotion by carol")
    assert decision["extra"]["manual"]["action"] == "promote"
    assert world.pagerduty.violations == []


def test_bluegreen_abort_over_http_while_green_is_held_before_the_switch(world: World) -> None:
    world.install_bluegreen()
    file = world.bluegreen_file()
    world.kube.put(pod("checkout-green-3", ready=False, since=world.start, unschedulable=SCHEDULER))
    world.kube.put(pod_event("checkout-green-3", "FailedScheduling", SCHEDULER, world.start))
    answers: list[Any] = []

    def abort_over_http() -> None:
        with app_over(world.store) as client:
            answers.append(client.post(
                f"/api/v1/runs/{running(world, file).id}/actions",
                json={"action": "abort", "by": "incident-bot", "reason": "no capacity today"},
                headers=AUTH,
            ))  # fmt: skip

    world.clock.at(world.minute(2), abort_over_http)
    outcome = world.run_bluegreen(file)
    assert answers[0].status_code == 202, answers[0].text
    assert outcome.decision == "aborted", outcome.reason
    assert outcome.reason == (
        "aborted by incident-bot: no capacity today; green not switched to (blue kept)"
    )
    assert world.selector_writes() == []  # blue never left
    assert decided(world, outcome) == ["pending", "aborted"]
    assert outcomes(world.platform) == ["pending"]
    ended = world.store.get(str(outcome.run_id))
    assert ended is not None
    with pytest.raises(RunEnded):  # an ended run takes no more requests
        request_action(world.store, ended.id, "resume", "bob", "", now=world.clock.now())


# --- rolling -----------------------------------------------------------------------------------


def test_rolling_abort_from_a_second_terminal_rolls_the_update_back(world: World) -> None:
    standin = world.install_rolling()
    file = world.rolling_file()
    world.clock.at(world.minute(2), lambda: from_a_second_terminal(
        world, file, "abort", "alice", "bad config"))  # fmt: skip
    outcome = world.run_rolling(file)
    assert outcome.decision == "aborted", outcome.reason
    assert "rollback complete; aborted by alice: bad config" in outcome.reason
    patches = world.deployment_patches()
    assert patches[0] == {"spec": {"paused": True}}
    assert patches[1][0]["path"] == "/spec/template"
    assert (standin.ready("stable"), standin.ready("canary")) == (4, 0)
    decision = next(d for d in world.decisions(outcome) if d["outcome"] == "aborted")
    assert decision["extra"]["manual"]["by"] == "alice"
    assert outcome.rollback is not None and outcome.rollback["verified"] is True


def test_rolling_pause_pauses_the_deployment_until_resumed(world: World) -> None:
    standin = world.install_rolling()
    file = world.rolling_file()
    recorded_first: list[bool] = []

    def on_write(kube: KubeServer, resource: Resource, obj: dict[str, Any]) -> None:
        if resource.plural == "deployments" and obj["spec"].get("paused") and not recorded_first:
            # I3: the person's pause was in the stored run before the patch went out
            recorded_first.append("held" in (running(world, file).answer or {})["rollout"])

    world.kube.react(on_write)
    world.clock.at(world.minute(2), lambda: ask(world, file, "pause", "bob", "watch the DB"))
    world.clock.at(world.minute(8), lambda: ask(world, file, "resume", "bob"))
    outcome = world.run_rolling(file)
    assert outcome.decision == "promoted", outcome.reason
    assert world.deployment_patches() == [{"spec": {"paused": True}}, {"spec": {"paused": False}}]
    assert recorded_first == [True]
    # one replica moved before the pause; the other three only after the resume
    assert standin.history[0] == (3, 1) and (standin.ready("stable"), standin.ready("canary")) == (0, 4)
    (step,) = world.progress(outcome)["steps"]
    assert at(step["end"]) >= world.minute(12)  # the last three ticks after the resume: 9, 10.5, 12
    assert decided(world, outcome) == ["paused", "resumed", "promoted"]


def test_rolling_promote_after_a_pause_unpauses_and_leaves_the_update_to_kubernetes(
    world: World,
) -> None:
    standin = world.install_rolling()
    file = world.rolling_file()
    world.clock.at(world.minute(2), lambda: ask(world, file, "pause", "bob"))
    world.clock.at(world.minute(4), lambda: ask(world, file, "promote", "carol", "known noise"))
    outcome = world.run_rolling(file)
    assert outcome.decision == "promoted", outcome.reason
    assert outcome.reason == (
        "manual promotion by carol: known noise: the update goes on without Verdict"
    )
    assert world.deployment_patches() == [{"spec": {"paused": True}}, {"spec": {"paused": False}}]
    assert standin.ready("canary") < 4  # Verdict did not wait for the update to complete
    progress = world.progress(outcome)
    assert progress["promotion"]["basis"] == "manual" and "held" not in progress
    assert decided(world, outcome) == ["paused", "promoted"]
    assert world.decisions(outcome)[-1]["extra"]["manual"]["by"] == "carol"

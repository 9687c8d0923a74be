"""`decide` (pure) and the actuator's patches (those of `kubectl argo rollouts`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from analyzer.verdicts import Verdict
from strategies.argo import Action, Policy, decide, rollout_view
from strategies.argo.rollouts import Patch, abort_patches, pause_patches, promote_patches
from strategies.kube.permissions import CONTROLLER, LEADER_ELECTION
from tests.crds import validate
from tests.helpers import REPO

EXAMPLES = REPO / "examples" / "argo"

NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
POLICY = Policy(interval=timedelta(seconds=30), min_step_looks=2)


def rollout(
    *,
    step: int = 1,
    steps: list[dict[str, Any]] | None = None,
    paused: bool = False,
    pause: bool = True,
    started: timedelta = timedelta(minutes=1),
    generation: int = 3,
    observed: str | None = "3",
    canary: str = "c1",
    stable: str = "s0",
    abort: bool = False,
    marker: str | None = None,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "generation": generation,
            "annotations": {"verdict.dev/analysis": "web"}
            | ({"verdict.dev/paused": marker} if marker else {}),
        },
        "spec": {
            "paused": paused,
            "strategy": {"canary": {"steps": steps or [{"setWeight": 5}, {"pause": {}}]}},
        },
        "status": {
            "currentStepIndex": step,
            "currentPodHash": canary,
            "stableRS": stable,
            "observedGeneration": observed,
            "abort": abort,
            **status,
        },
    }
    if pause:
        body["status"]["pauseConditions"] = [
            {"reason": "CanaryPauseStep", "startTime": (NOW - started).isoformat()}
        ]
    return body


def action(verdict: Verdict | None, obj: dict[str, Any], looks: int = 2) -> Action:
    return decide(verdict, rollout_view(obj), now=NOW, step_looks=looks, policy=POLICY).action


def test_pass_at_a_pause_step_promotes_after_enough_looks_at_that_step() -> None:
    assert action(Verdict.PASS, rollout(), looks=2) is Action.PROMOTE
    assert action(Verdict.PASS, rollout(), looks=1) is Action.NONE


def test_fail_aborts_at_once_paused_or_not() -> None:
    assert action(Verdict.FAIL, rollout()) is Action.ABORT
    assert action(Verdict.FAIL, rollout(step=0, pause=False), looks=0) is Action.ABORT


def test_inconclusive_stays_paused_and_says_so_past_max_inconclusive() -> None:
    early = decide(Verdict.INCONCLUSIVE, rollout_view(rollout()), now=NOW, step_looks=5,
                   policy=POLICY)  # fmt: skip
    late = decide(
        Verdict.INCONCLUSIVE,
        rollout_view(rollout(started=timedelta(minutes=31))),
        now=NOW,
        step_looks=50,
        policy=POLICY,
    )
    assert (early.action, early.overdue) == (Action.NONE, False)
    assert (late.action, late.overdue) == (Action.NONE, True)
    assert "undecided for 31m" in late.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"generation": 4}, "not trusted"),
        ({"observed": None}, "not trusted"),
        ({"abort": True}, "aborted"),
        ({"stable": "c1"}, "not updating"),
    ],
)
def test_nothing_is_done_when_status_is_not_trusted_or_nothing_updates(
    changes: dict[str, Any], reason: str
) -> None:
    decision = decide(
        Verdict.FAIL, rollout_view(rollout(**changes)), now=NOW, step_looks=9, policy=POLICY
    )
    assert decision.action is Action.NONE and reason in decision.reason


def test_no_verdict_at_an_indefinite_pause_or_between_pauses_is_no_action() -> None:
    assert action(None, rollout()) is Action.NONE  # `pause: {}`: Argo waits for a promote
    assert action(None, rollout(step=0, pause=False)) is Action.NONE
    held = decide(None, rollout_view(rollout()), now=NOW, step_looks=2, policy=POLICY,
                  why="prometheus_unavailable: HTTP 503")  # fmt: skip
    assert held.reason == (
        "no verdict this look: prometheus_unavailable: HTTP 503; stays paused at step 1"
    )


TIMED = [{"setWeight": 5}, {"pause": {"duration": "5m"}}, {"setWeight": 50}]


@pytest.mark.parametrize(
    ("verdict", "elapsed", "expected"),
    [
        (Verdict.INCONCLUSIVE, timedelta(minutes=4, seconds=40), Action.PAUSE),
        (Verdict.INCONCLUSIVE, timedelta(minutes=3), Action.NONE),
        (Verdict.PASS, timedelta(minutes=4, seconds=40), Action.NONE),  # Argo goes on
    ],
)
def test_a_timed_pause_is_paused_within_one_interval_of_its_end_unless_it_passes(
    verdict: Verdict, elapsed: timedelta, expected: Action
) -> None:
    assert action(verdict, rollout(steps=TIMED, started=elapsed)) is expected


def _unstarted(obj: dict[str, Any]) -> dict[str, Any]:
    del obj["status"]["pauseConditions"][0]["startTime"]
    return obj


S = timedelta(seconds=1)
MARGIN = replace(POLICY, margin=10 * S)


@pytest.mark.parametrize(
    ("verdict", "obj", "looks", "policy", "expected"),
    [
        # no verdict this look (Prometheus down, a look over budget): paused at once
        (None, rollout(steps=TIMED, started=10 * S), 0, POLICY, Action.PAUSE),
        (None, rollout(steps=TIMED, started=290 * S), 2, POLICY, Action.PAUSE),
        (None, rollout(steps=TIMED, started=400 * S), 2, POLICY, Action.PAUSE),  # Argo is late
        (None, _unstarted(rollout(steps=TIMED)), 0, POLICY, Action.PAUSE),
        # inconclusive: paused once the next look might come too late
        (Verdict.INCONCLUSIVE, rollout(steps=TIMED, started=265 * S), 3, MARGIN, Action.PAUSE),
        (Verdict.INCONCLUSIVE, rollout(steps=TIMED, started=255 * S), 3, MARGIN, Action.NONE),
        (Verdict.INCONCLUSIVE, _unstarted(rollout(steps=TIMED)), 3, POLICY, Action.PAUSE),
        # a pass counts once the step has had its looks (min_step_looks 2)
        (Verdict.PASS, rollout(steps=TIMED, started=280 * S), 1, POLICY, Action.PAUSE),
        (Verdict.PASS, rollout(steps=TIMED, started=180 * S), 1, POLICY, Action.NONE),
        (Verdict.PASS, rollout(steps=TIMED, started=280 * S), 2, POLICY, Action.NONE),
        # a fail aborts; once paused by Verdict, no verdict keeps it paused (no action)
        (Verdict.FAIL, rollout(steps=TIMED, started=10 * S), 1, POLICY, Action.ABORT),
        (None, rollout(steps=TIMED, paused=True, marker="c1:1"), 2, POLICY, Action.NONE),
        # not at the timed pause yet (a setWeight step): nothing to hold
        (None, rollout(steps=TIMED, step=0, pause=False), 0, POLICY, Action.NONE),
    ],
    ids=[
        "no-verdict-at-start", "no-verdict-near-end", "no-verdict-after-end",
        "no-verdict-no-start-time", "inconclusive-within-interval-and-margin",
        "inconclusive-before", "inconclusive-no-start-time", "pass-too-few-looks-near-end",
        "pass-too-few-looks-early", "pass-near-end", "fail", "no-verdict-paused-by-verdict",
        "no-verdict-before-the-pause",
    ],
)  # fmt: skip
def test_a_timed_pause_never_ends_without_a_pass_at_its_step(
    verdict: Verdict | None,
    obj: dict[str, Any],
    looks: int,
    policy: Policy,
    expected: Action,
) -> None:
    decision = decide(verdict, rollout_view(obj), now=NOW, step_looks=looks, policy=policy,
                      why="prometheus_unavailable: HTTP 503")  # fmt: skip
    assert decision.action is expected, decision.reason


def test_a_rollout_verdict_paused_says_so_while_it_stays_paused() -> None:
    ours = rollout_view(rollout(steps=TIMED, paused=True, started=9 * 60 * S, marker="c1:1"))
    for verdict, says in [
        (None, "no verdict this look: prometheus_unavailable: HTTP 503; stays paused at step 1"),
        (Verdict.INCONCLUSIVE, "undecided at step 1: stays paused"),
    ]:
        decision = decide(verdict, ours, now=NOW, step_looks=2, policy=POLICY,
                          why="prometheus_unavailable: HTTP 503")  # fmt: skip
        assert decision.reason == f"{says} (paused by Verdict until the analysis passes)"


def test_a_pause_for_a_failed_look_says_why_and_when_the_timed_pause_ends() -> None:
    decision = decide(None, rollout_view(rollout(steps=TIMED, started=10 * S)), now=NOW,
                      step_looks=0, policy=POLICY, why="prometheus_unavailable: HTTP 503")  # fmt: skip
    ends = (NOW - 10 * S + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert decision.reason == (
        "no verdict this look: prometheus_unavailable: HTTP 503; the timed pause of step 1 "
        f"ends at {ends}: paused until the analysis passes"
    )
    early = decide(Verdict.PASS, rollout_view(rollout(steps=TIMED, started=280 * S)), now=NOW,
                   step_looks=1, policy=POLICY)  # fmt: skip
    assert "the analysis is a pass after 1 of 2 looks at this step: paused" in early.reason


def test_a_rollout_verdict_paused_is_promoted_on_pass_but_a_manual_pause_is_not() -> None:
    ours = rollout(steps=TIMED, paused=True, started=timedelta(minutes=9), marker="c1:1")
    assert action(Verdict.PASS, ours) is Action.PROMOTE
    assert action(Verdict.INCONCLUSIVE, ours) is Action.NONE
    manual = rollout(steps=TIMED, paused=True, pause=False)
    assert action(Verdict.PASS, manual) is Action.NONE


def test_promote_sends_the_kubectl_plugin_patches() -> None:
    assert promote_patches(rollout()) == [Patch({"status": {"pauseConditions": None}}, "status")]
    assert promote_patches(rollout(paused=True)) == [
        Patch({"status": {"pauseConditions": None}}, "status"),
        Patch({"spec": {"paused": False}}),
    ]
    inconclusive = rollout(controllerPause=True)
    inconclusive["status"]["canary"] = {"currentStepAnalysisRunStatus": {"status": "Inconclusive"}}
    assert promote_patches(inconclusive) == [
        Patch(
            {"status": {"pauseConditions": None, "controllerPause": False, "currentStepIndex": 2}},
            "status",
        )
    ]
    analysis_step = rollout(pause=False, step=1)
    assert promote_patches(analysis_step) == [
        Patch({"status": {"pauseConditions": None, "currentStepIndex": 2}}, "status")
    ]
    blue_green: dict[str, Any] = {
        "metadata": {"name": "web"},
        "spec": {"strategy": {"blueGreen": {"activeService": "web"}}},
        "status": {"pauseConditions": [{"reason": "BlueGreenPause", "startTime": "x"}]},
    }
    assert promote_patches(blue_green) == [Patch({"status": {"pauseConditions": None}}, "status")]


def test_pause_and_abort_send_the_kubectl_plugin_patches() -> None:
    assert pause_patches(rollout()) == [Patch({"spec": {"paused": True}})]
    assert abort_patches(rollout()) == [Patch({"status": {"abort": True}}, "status")]


def test_the_controller_example_rollout_is_valid_and_opts_in() -> None:
    rollout_doc = yaml.safe_load((EXAMPLES / "controller-rollout.yaml").read_text())
    validate(rollout_doc, "rollout-crd.yaml")
    analysis = yaml.safe_load((EXAMPLES / "analysis.yaml").read_text())
    view = rollout_view(rollout_doc)
    assert view.analysis == analysis["name"]
    steps = rollout_doc["spec"]["strategy"]["canary"]["steps"]
    assert [s.get("setWeight") for s in steps if "setWeight" in s] == [5, 10, 50]
    assert {"pause": {}} in steps


def test_the_rbac_rules_cover_the_controller_calls() -> None:
    rules = {(r.api_group, res): set(r.verbs) for r in CONTROLLER + LEADER_ELECTION
             for res in r.resources}  # fmt: skip
    assert rules[("argoproj.io", "rollouts")] >= {"get", "list", "watch", "patch"}
    assert rules[("argoproj.io", "rollouts/status")] >= {"patch"}
    assert rules[("", "events")] >= {"create"}
    assert rules[("coordination.k8s.io", "leases")] >= {"get", "create", "update"}


def test_a_blue_green_rollout_paused_before_its_switch_is_promoted_on_pass() -> None:
    blue_green: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "shop", "generation": 2},
        "spec": {
            "strategy": {"blueGreen": {"activeService": "web", "autoPromotionEnabled": False}}
        },
        "status": {
            "observedGeneration": "2",
            "currentPodHash": "green",
            "stableRS": "blue",
            "pauseConditions": [{"reason": "BlueGreenPause", "startTime": NOW.isoformat()}],
        },
    }
    view = rollout_view(blue_green)
    assert decide(Verdict.PASS, view, now=NOW, step_looks=2, policy=POLICY).action is (
        Action.PROMOTE
    )
    assert decide(Verdict.INCONCLUSIVE, view, now=NOW, step_looks=2, policy=POLICY).action is (
        Action.NONE
    )
    assert decide(Verdict.FAIL, view, now=NOW, step_looks=2, policy=POLICY).action is Action.ABORT


def test_a_metrics_hold_pauses_a_moving_rollout_and_names_a_shared_incident() -> None:
    moving = rollout_view(rollout(step=0, pause=False, steps=[{"setWeight": 5}, {"pause": {"duration": "10m"}}]))
    why = "Hold: incident on both versions: error-rate breach the SLO on the baseline too."
    shared = decide(Verdict.INCONCLUSIVE, moving, now=NOW, step_looks=1, policy=POLICY, why=why, metric_hold="shared")
    assert shared.action is Action.PAUSE and shared.outcome == "shared-incident"
    assert "incident on both versions" in shared.reason
    alone = decide(Verdict.INCONCLUSIVE, moving, now=NOW, step_looks=1, policy=POLICY, why="Hold", metric_hold="canary")
    assert alone.action is Action.PAUSE and alone.outcome is None
    # already at an indefinite pause: nothing to do, still said; a fail still aborts
    at_pause = decide(Verdict.INCONCLUSIVE, rollout_view(rollout()), now=NOW, step_looks=3, policy=POLICY, why=why, metric_hold="shared")
    assert at_pause.action is Action.NONE and at_pause.reason.startswith("held at step 1")
    assert decide(Verdict.FAIL, moving, now=NOW, step_looks=1, policy=POLICY, metric_hold="shared").action is Action.ABORT
    # without a hold the same inconclusive look between pauses does nothing
    assert decide(Verdict.INCONCLUSIVE, moving, now=NOW, step_looks=1, policy=POLICY).action is Action.NONE

"""`verdict promote|abort|pause|resume ROLLOUT`: a person's verbs on an Argo Rollout.

Each runs the real command (a subprocess, the official client) against the Kubernetes API test
server, which validates every Rollout written against the real CRD. The patches expected are the
kubectl plugin's own constants (argo-rollouts `pkg/kubectl-argo-rollouts/cmd/{promote,abort,
pause,retry}`), written here as the plugin spells them; the Rollout after the command must be
the Rollout before with exactly those merge patches applied.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from analyzer.runs.model import RunKey, new_run
from analyzer.runs.store import open_store
from analyzer.verdicts import Verdict
from strategies.argo.decide import Action, Policy, decide, rollout_view
from strategies.kube.permissions import CONTROLLER
from tests.argo_standin import ARGO, PAUSE_STEPS, ArgoStandIn, canary_rollout
from tests.helpers import example_analysis, run_verdict, write_analysis
from tests.hook_server import HookReceiver
from tests.kube_server import KubeServer, merge_patch

NS = "shop"
Patches = list[tuple[str, dict[str, Any]]]

# the plugin's patch constants, verbatim
UNPAUSE = '{"spec":{"paused":false}}'
PAUSE = '{"spec":{"paused":true}}'
CLEAR_PAUSE_CONDITIONS = '{"status":{"pauseConditions":null}}'
CLEAR_WITH_STEP = '{"status":{"pauseConditions":null, "currentStepIndex":%d}}'
CLEAR_CONTROLLER_PAUSE_WITH_STEP = (
    '{"status":{"pauseConditions":null, "controllerPause":false, "currentStepIndex":%d}}'
)
ABORT = '{"status":{"abort":true}}'
RETRY = '{"status":{"abort":false}}'


def at_step_pause(kube: KubeServer) -> None:
    """The Rollout updating, paused by Argo at its first `pause: {}` (step index 1)."""
    kube.put(canary_rollout("checkout", NS, analysis="checkout", steps=PAUSE_STEPS))
    ArgoStandIn(kube).start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")


def paused_by_a_person_mid_steps(obj: dict[str, Any]) -> None:
    obj["spec"]["paused"] = True
    obj["status"].pop("pauseConditions", None)
    obj["status"].update(controllerPause=False, currentStepIndex=2, phase="Paused")


def inconclusive_step_analysis(obj: dict[str, Any]) -> None:
    obj["status"]["pauseConditions"] = [
        {"reason": "InconclusiveAnalysisRun", "startTime": "2026-01-01T00:00:00Z"}
    ]
    obj["status"]["canary"]["currentStepAnalysisRunStatus"] = {
        "name": "checkout-c4n4ry-2-1",
        "status": "Inconclusive",
    }


def aborted(obj: dict[str, Any]) -> None:
    obj["status"].update(abort=True, phase="Degraded")


def paused(obj: dict[str, Any]) -> None:
    obj["spec"]["paused"] = True


CASES: list[tuple[str, str, Callable[[dict[str, Any]], None] | None, Patches]] = [
    ("promote-at-a-step-pause", "promote", None, [("status", json.loads(CLEAR_PAUSE_CONDITIONS))]),
    (
        "promote-what-a-person-paused-mid-steps",
        "promote",
        paused_by_a_person_mid_steps,
        [("status", json.loads(CLEAR_WITH_STEP % 3)), ("main", json.loads(UNPAUSE))],
    ),
    (
        "promote-an-inconclusive-step-analysis",
        "promote",
        inconclusive_step_analysis,
        [("status", json.loads(CLEAR_CONTROLLER_PAUSE_WITH_STEP % 2))],
    ),
    ("abort", "abort", None, [("status", json.loads(ABORT))]),
    ("pause", "pause", None, [("main", json.loads(PAUSE))]),
    ("resume-a-pause", "resume", paused, [("main", json.loads(UNPAUSE))]),
    ("resume-an-abort", "resume", aborted, [("status", json.loads(RETRY))]),
    ("abort-an-aborted-rollout-sends-nothing", "abort", aborted, []),
]


def action_patches(kube: KubeServer) -> Patches:
    """(endpoint, body) of every write to the Rollout but the annotation's."""
    return [
        ("status" if r.path.endswith("/status") else "main", r.body)
        for r in kube.writes(plural="rollouts", name="checkout", method="PATCH")
        if set(r.body) != {"metadata"}
    ]


def verb(kube: KubeServer, tmp_path: Path, *args: str) -> Any:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=NS)
    return run_verdict(
        *args, "--kubeconfig", str(kubeconfig), "--store", f"sqlite:///{tmp_path / 'r.sqlite'}",
        "--output", "json",
    )  # fmt: skip


def allowed(kube: KubeServer) -> bool:
    rules = {(r.api_group, res, v) for r in CONTROLLER for res in r.resources for v in r.verbs}
    return kube.permissions_used() <= rules


@pytest.mark.parametrize(("action", "prepare", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_each_verb_sends_exactly_the_plugins_patches_and_records_who_and_why(
    kube: KubeServer,
    tmp_path: Path,
    action: str,
    prepare: Callable[[dict[str, Any]], None] | None,
    expected: Patches,
) -> None:
    at_step_pause(kube)
    if prepare is not None:
        kube.modify(*ARGO, NS, "checkout", prepare)
    before = kube.get(*ARGO, NS, "checkout")
    kube.requests.clear()
    done = verb(
        kube, tmp_path, action, "checkout", "--reason", "error budget gone", "--by", "alice"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert action_patches(kube) == expected
    assert doc["patches"] == [
        {"subresource": "status" if where == "status" else None, "body": body}
        for where, body in expected
    ]
    assert doc["already"] is (not expected)
    after = kube.get(*ARGO, NS, "checkout")
    plugin = before
    for _where, body in expected:
        plugin = merge_patch(plugin, body)
    assert (after["spec"], after.get("status")) == (plugin["spec"], plugin.get("status"))
    assert not kube.rejected  # every object written is valid against the Rollout CRD
    writes = kube.writes(plural="rollouts", name="checkout", method="PATCH")
    assert set(writes[0].body) == {"metadata"}  # who and why are recorded before acting
    manual = json.loads(after["metadata"]["annotations"]["verdict.dev/manual"])
    assert {k: manual[k] for k in ("action", "by", "reason", "canary")} == {
        "action": action, "by": "alice", "reason": "error budget gone", "canary": "c4n4ry",
    }  # fmt: skip
    events = [
        e for e in kube.objects("", "v1", "events") if e["reason"].startswith("VerdictManual")
    ]
    assert [e["involvedObject"]["name"] for e in events] == ["checkout"]
    assert "alice" in events[0]["message"]
    assert allowed(kube)


def test_an_abort_is_tried_again_through_server_errors_and_conflicts_until_it_lands(
    kube: KubeServer, tmp_path: Path
) -> None:
    at_step_pause(kube)
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 500, times=2)
    kube.fail_next("PATCH", r"/rollouts/checkout/status$", 409)
    done = verb(kube, tmp_path, "abort", "checkout", "--by", "alice")
    assert done.returncode == 0, done.stderr
    statuses = [
        r.status for r in kube.writes(plural="rollouts", name="checkout", method="PATCH")
        if r.path.endswith("/status")
    ]  # fmt: skip
    assert statuses == [500, 500, 409, 200]
    assert kube.get(*ARGO, NS, "checkout")["status"]["abort"] is True


def test_a_missing_rollout_exits_2_and_an_unreachable_api_exits_4(
    kube: KubeServer, tmp_path: Path
) -> None:
    missing = verb(kube, tmp_path, "promote", "nope", "--by", "alice")
    assert missing.returncode == 2
    assert "rollout shop/nope: not found" in missing.stderr
    with KubeServer() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "gone")
    unreachable = run_verdict(
        "pause", "checkout", "-n", NS, "--by", "alice", "--kubeconfig", str(kubeconfig),
        "--deadline", "1",
    )  # fmt: skip
    assert unreachable.returncode == 4
    assert "the Kubernetes API is unreachable" in unreachable.stderr


def test_the_action_lands_in_the_rollouts_run_its_report_and_its_notifications(
    kube: KubeServer, tmp_path: Path, hooks: HookReceiver
) -> None:
    at_step_pause(kube)
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    now = datetime.now(UTC)
    run = store.start(
        new_run(
            RunKey("checkout", NS, "checkout", "c4n4ry"),
            stable_hash="s7ab1e",
            params={},
            started_at=now,
            now=now,
        )
    )
    store.close()
    analysis = example_analysis()
    analysis.update(name="checkout", notifications=[{"type": "webhook", "url": hooks.url}])
    config = write_analysis(tmp_path / "checkout.yaml", analysis)
    done = verb(
        kube, tmp_path, "abort", "checkout", "--by", "alice", "--reason", "pager at 3am",
        "--config", str(config),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run"] == {"id": run.id}
    reported = run_verdict(
        "report", run.id, "--store", f"sqlite:///{tmp_path / 'r.sqlite'}", "--format", "json"
    )
    assert reported.returncode == 0, reported.stderr
    report = json.loads(reported.stdout)
    assert report["headline"] == "aborted"
    assert [(m["action"], m["by"], m["reason"]) for m in report["manualActions"]] == [
        ("abort", "alice", "pager at 3am")
    ]
    markdown = run_verdict(
        "report", run.id, "--store", f"sqlite:///{tmp_path / 'r.sqlite'}", "--format", "md"
    )
    assert "## Manual actions" in markdown.stdout and "pager at 3am" in markdown.stdout
    (hook,) = hooks.wait_for(1)
    assert (hook["decision"], hook["run"]["id"]) == ("aborted", run.id)
    assert hook["reason"] == "aborted by alice: pager at 3am"


def _view(obj: dict[str, Any]) -> Any:
    obj = json.loads(json.dumps(obj))
    obj["metadata"]["generation"] = 1
    obj["status"]["observedGeneration"] = "1"
    return rollout_view(obj)


def test_the_analysis_does_not_promote_what_a_person_paused_until_resumed(
    kube: KubeServer, tmp_path: Path
) -> None:
    at_step_pause(kube)
    assert verb(kube, tmp_path, "pause", "checkout", "--by", "alice").returncode == 0
    policy = Policy(interval=timedelta(seconds=30))
    now = datetime.now(UTC)
    held = _view(kube.get(*ARGO, NS, "checkout"))
    assert held.paused_by == "alice"
    assert decide(Verdict.PASS, held, now=now, step_looks=5, policy=policy).action is Action.NONE
    # a fail still aborts: a person's hold does not disable the abort
    assert decide(Verdict.FAIL, held, now=now, step_looks=5, policy=policy).action is Action.ABORT
    assert verb(kube, tmp_path, "resume", "checkout", "--by", "alice").returncode == 0
    going = _view(kube.get(*ARGO, NS, "checkout"))
    assert going.paused_by is None
    promoted = decide(Verdict.PASS, going, now=now, step_looks=5, policy=policy)
    assert promoted.action is Action.PROMOTE


def test_a_persons_pause_of_an_earlier_update_does_not_hold_the_next_one(
    kube: KubeServer, tmp_path: Path
) -> None:
    at_step_pause(kube)
    assert verb(kube, tmp_path, "pause", "checkout", "--by", "alice").returncode == 0
    assert _view(kube.get(*ARGO, NS, "checkout")).paused_by == "alice"

    def next_update(obj: dict[str, Any]) -> None:
        obj["status"].update(currentPodHash="n3wc4n", stableRS="c4n4ry")

    kube.modify(*ARGO, NS, "checkout", next_update)  # still spec.paused, by someone else now
    view = _view(kube.get(*ARGO, NS, "checkout"))
    assert view.paused and view.paused_by is None

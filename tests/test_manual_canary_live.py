"""People's verbs on a running `verdict canary run`: a real canary process moving an Istio
VirtualService on the Kubernetes API test server, judged on a real Prometheus scraping traffic
that follows the route's weights (as in `test_canary_run_live.py`), and a second process (or an
HTTP call) asking it to abort, promote, pause or resume through the shared run store."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from analyzer.api import PrometheusSources, ServeSettings, create_app
from analyzer.runs.model import Run
from analyzer.runs.store import open_store
from tests.canary_world import install, live_traffic, rollout_file, weights, written_weights
from tests.helpers import run_verdict
from tests.kube_server import KubeServer
from tests.live_exporter import Version
from tests.test_canary_run_live import finish, start, wait_for

pytestmark = pytest.mark.prometheus


def the_run(store: str) -> Run | None:
    runs = open_store(store)
    try:
        found = runs.runs()
    finally:
        runs.close()
    return found[0] if found else None


def progress(store: str) -> dict[str, Any]:
    run = the_run(store)
    return dict(((run.answer or {}) if run else {}).get("rollout") or {})


def looks(store: str) -> int:
    run = the_run(store)
    return run.looks if run is not None else 0


def looked_at_step(store: str, step: int) -> bool:
    p = progress(store)
    steps = p.get("steps") or []
    return (
        bool(steps) and steps[-1]["step"] == step and steps[-1]["end"] is None and looks(store) > 0
    )


def report_of(store: str, run_id: str) -> dict[str, Any]:
    done = run_verdict("report", run_id, "--store", store, "--format", "json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def ask(action: str, *args: str) -> Any:
    return run_verdict("canary", action, *args, "--output", "json")


def test_a_person_aborts_a_running_canary_from_a_second_process(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="120s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        store = f"sqlite:///{tmp_path / 'r.sqlite'}"
        process = start(config, kubeconfig, store)
        wait_for(lambda: weights(kube) == (95, 5), 30, "the first step")
        wait_for(lambda: looked_at_step(store, 1), 60, "a look at the first step")
        asked = ask("abort", "--config", str(config), "--store", store, "--by", "alice",
                    "--reason", "checkout errors in the support queue")  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        request = json.loads(asked.stdout)["request"]
        assert (request["action"], request["by"]) == ("abort", "alice")
        code, doc = finish(process, 60)
    assert (code, doc["decision"]) == (1, "aborted")
    assert doc["reason"] == "aborted by alice: checkout errors in the support queue"
    assert weights(kube) == (100, 0)
    assert written_weights(kube) == [5, 0]
    assert [s["verdict"] for s in doc["steps"]] == ["aborted"]
    report = report_of(store, doc["run"]["id"])
    assert report["headline"] == "aborted"
    assert [(m["action"], m["by"]) for m in report["manualActions"]] == [("abort", "alice")]
    # the run has ended: a request now is refused
    late = ask("pause", "--run", doc["run"]["id"], "--store", store, "--by", "bob")
    assert late.returncode == 2
    assert "is aborted" in late.stderr


def test_a_persons_pause_holds_the_weight_across_looks_and_resume_carries_on(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="6s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        store = f"sqlite:///{tmp_path / 'r.sqlite'}"
        process = start(config, kubeconfig, store)
        wait_for(lambda: looked_at_step(store, 1), 60, "a look at the first step")
        paused = ask("pause", "--config", str(config), "--store", store, "--by", "alice",
                     "--reason", "waiting for the DB migration")  # fmt: skip
        assert paused.returncode == 0, paused.stderr
        wait_for(lambda: bool(progress(store).get("held")), 30, "the pause taken")
        held_at = looks(store)
        # the step lasts 6 s; held, it does not end: 4 more looks (2 s apart) at 5 %
        wait_for(lambda: looks(store) >= held_at + 4, 60, "looks while held")
        assert weights(kube) == (95, 5)
        assert written_weights(kube) == [5]
        assert progress(store)["step"] == 1
        resumed = ask("resume", "--config", str(config), "--store", store, "--by", "alice")
        assert resumed.returncode == 0, resumed.stderr
        code, doc = finish(process, 180)
    assert (code, doc["decision"]) == (0, "promoted"), doc["reason"]
    assert written_weights(kube) == [5, 10, 50, 100]
    first = doc["steps"][0]
    assert first["heldSeconds"] >= 8  # the step's end moved by the time it was held
    report = report_of(store, doc["run"]["id"])
    assert [(m["action"], m["by"], m["reason"]) for m in report["manualActions"]] == [
        ("pause", "alice", "waiting for the DB migration"),
        ("resume", "alice", ""),
    ]
    assert report["headline"] == "promoted"


def test_a_manual_promotion_is_recorded_as_a_persons_decision(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="120s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        store = f"sqlite:///{tmp_path / 'r.sqlite'}"
        process = start(config, kubeconfig, store)
        wait_for(lambda: looked_at_step(store, 1), 60, "a look at the first step")
        run = the_run(store)
        assert run is not None
        asked = ask("promote", "--run", run.id, "--store", store, "--by", "bob",
                    "--reason", "hotfix, verified by hand")  # fmt: skip
        assert asked.returncode == 0, asked.stderr
        code, doc = finish(process, 60)
    assert (code, doc["decision"]) == (0, "promoted")
    reason = "manual promotion by bob: hotfix, verified by hand"
    assert doc["reason"] == reason
    assert written_weights(kube) == [5, 100]
    assert doc["steps"][-1]["verdict"] == reason  # not a pass: a person's decision
    assert progress(store)["promotion"]["basis"] == "manual"
    assert progress(store)["promotion"]["by"] == "bob"


def test_a_tool_aborts_a_running_canary_over_http_with_the_api_token(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="120s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        store = f"sqlite:///{tmp_path / 'r.sqlite'}"
        process = start(config, kubeconfig, store)
        wait_for(lambda: looked_at_step(store, 1), 60, "a look at the first step")
        run = the_run(store)
        assert run is not None
        app = create_app(
            analyses={},
            store=open_store(store),
            sources=PrometheusSources(look_budget=8.0),
            settings=ServeSettings(token="s3cret"),
        )
        body = {"action": "abort", "by": "incident-bot", "reason": "SEV-2 opened"}
        with TestClient(app) as client:
            refused = client.post(f"/api/v1/runs/{run.id}/actions", json=body)
            answer = client.post(
                f"/api/v1/runs/{run.id}/actions", json=body,
                headers={"Authorization": "Bearer s3cret"},
            )  # fmt: skip
            code, doc = finish(process, 60)
            time.sleep(0.1)
            ended = client.post(
                f"/api/v1/runs/{run.id}/actions", json=body,
                headers={"Authorization": "Bearer s3cret"},
            )  # fmt: skip
    assert refused.status_code == 401
    assert answer.status_code == 202, answer.text
    assert answer.json()["request"]["by"] == "incident-bot"
    assert (code, doc["decision"]) == (1, "aborted")
    assert doc["reason"] == "aborted by incident-bot: SEV-2 opened"
    assert weights(kube) == (100, 0)
    assert ended.status_code == 409
    assert ended.json()["error"]["code"] == "run_ended"

"""Notifiers handed to the run service and the canary loop: every way in marks its runs on
Grafana (checked by the stand-in against the documented API) and posts decisions to webhooks,
and a Grafana answering 500 or never answering changes no outcome and delays no look."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from analyzer.api import PrometheusSources, ServeSettings, create_app
from analyzer.demo import run_demo
from analyzer.notify import (
    BackgroundNotifier,
    GrafanaAnnotations,
    GrafanaSettings,
    GrafanaSpec,
    NotificationSpec,
    RetryPolicy,
    Target,
    build_notifier,
)
from analyzer.runs.store import open_store
from analyzer.spec import load_analysis
from tests.conftest import PrometheusServer
from tests.grafana_server import GrafanaStandIn
from tests.helpers import EXAMPLE, run_verdict, write_analysis
from tests.hook_server import HookReceiver
from tests.test_serve_api import Clock, analyses_for, body, minutes

FAST = RetryPolicy(retries=2, backoff=0.01)


def _grafana(state: GrafanaStandIn, timeout: float = 1.0) -> BackgroundNotifier:
    settings = GrafanaSettings(url=state.url, token=state.token, timeout=timeout)
    return BackgroundNotifier([Target("grafana", GrafanaAnnotations(settings))], FAST)


# --- the demo (the canary loop) -------------------------------------------------------------


def test_a_demo_run_marks_each_step_and_its_decision_on_grafana(grafana: GrafanaStandIn) -> None:
    notifier = _grafana(grafana)
    run = run_demo("healthy", 1, notifier=notifier)
    notifier.close(timeout=20)
    assert grafana.violations == []
    steps = grafana.by_tag("verdict", "kind:step")
    assert len(steps) == len(run.result.steps) == 3
    assert all(a["timeEnd"] > a["time"] for a in steps)  # every region was closed by a PATCH
    patches = [r for r in grafana.requests if r.method == "PATCH"]
    assert len(patches) == 3
    (decision,) = grafana.by_tag("verdict", "outcome:promoted")
    assert "timeEnd" not in decision
    assert "namespace:demo" in decision["tags"] and "rollout:checkout-healthy" in decision["tags"]
    assert decision["text"].startswith("Verdict promoted demo/checkout-healthy at 50 %")


@pytest.mark.parametrize("mode", ["error", "hang"])
def test_grafana_failing_or_hanging_changes_no_demo_decision(
    grafana: GrafanaStandIn, mode: str
) -> None:
    plain = run_demo("latency-regression", 3)
    grafana.mode = mode
    notifier = _grafana(grafana, timeout=0.5)
    noisy = run_demo("latency-regression", 3, notifier=notifier)
    grafana.wait_for(1)  # Grafana was asked (and failed, or holds the request)
    notifier.close(timeout=0)
    assert noisy.result.decision == plain.result.decision == "aborted"
    assert noisy.result.reason == plain.result.reason
    assert [(lk.look, lk.report.verdict, lk.report.score) for lk in noisy.result.looks] == [
        (lk.look, lk.report.verdict, lk.report.score) for lk in plain.result.looks
    ]


def test_demo_command_with_grafana_url_and_webhook_in_the_file(
    tmp_path: Path, grafana: GrafanaStandIn
) -> None:
    token = tmp_path / "token"
    token.write_text(grafana.token)
    result = run_verdict(
        "demo",
        "--scenario",
        "error-spike",
        "--output",
        "json",
        "--store",
        f"sqlite:///{tmp_path / 'runs.sqlite'}",
        "--grafana-url",
        grafana.url,
        "--grafana-token-file",
        str(token),
    )
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["decision"] == "aborted"
    assert grafana.violations == []
    (decision,) = grafana.by_tag("verdict", "outcome:aborted")
    assert "error-rate" in decision["text"]
    missing = run_verdict("demo", "--grafana-token-file", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "--grafana-token-file" in missing.stderr


# --- the web provider (the run service) -----------------------------------------------------


def _app(prometheus: PrometheusServer, store: str, clock: Clock, notifiers: dict[str, Any]) -> Any:
    settings = ServeSettings()
    return create_app(
        analyses=analyses_for(prometheus),
        store=open_store(store),
        sources=PrometheusSources(look_budget=settings.look_budget),
        clock=clock,
        settings=settings,
        notifiers=notifiers,
    )


def _looks(app: Any, clock: Clock, scenario: str, start: Any) -> list[dict[str, Any]]:
    results = []
    with TestClient(app) as client:
        for m in (0, 5, 10):
            clock.set(start + minutes(m))
            answer = client.post("/api/v1/verdict", json=body(scenario))
            assert answer.status_code == 200
            results.append(answer.json()["result"])
    return results


@pytest.mark.prometheus
def test_a_web_provider_run_is_a_region_closed_at_its_decision(
    prometheus: PrometheusServer,
    tmp_path: Path,
    grafana: GrafanaStandIn,
    hooks: HookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = prometheus.scenarios["error-regression"].start
    clock = Clock(start)
    hook = NotificationSpec.model_validate(
        {
            "type": "webhook",
            "url": hooks.url,
            "on": ["fail"],
            "reportUrl": "http://verdict:8080/api/v1/runs/{run}/report",
        }
    )
    grafana_spec = {"url": grafana.url, "tokenEnv": "TEST_GRAFANA_TOKEN", "panelId": 3}
    monkeypatch.setenv("TEST_GRAFANA_TOKEN", grafana.token)
    notifier = build_notifier(GrafanaSpec.model_validate(grafana_spec), [hook], policy=FAST)
    app = _app(
        prometheus, f"sqlite:///{tmp_path / 'r.sqlite'}", clock, {"error-regression": notifier}
    )
    results = _looks(app, clock, "error-regression", start)
    notifier.close(timeout=10)
    assert [r["verdict"] for r in results] == ["inconclusive", "fail", "fail"]
    assert grafana.violations == []
    methods = [(r.method, r.path) for r in grafana.requests]
    assert methods == [
        ("POST", "/api/annotations"),  # the run's region opens at its first look
        ("PATCH", "/api/annotations/1"),  # and closes at its decision
        ("POST", "/api/annotations"),  # the decision
    ]
    region = grafana.annotations[1]
    assert region["time"] == int(start.timestamp() * 1000)
    assert region["timeEnd"] == int((start + minutes(5)).timestamp() * 1000)
    assert region["panelId"] == 3 and "kind:run" in region["tags"]
    decision = grafana.annotations[2]
    for tag in ("verdict", "namespace:default", "rollout:web", "outcome:fail"):
        assert tag in decision["tags"]
    (posted,) = hooks.wait_for(1)
    assert posted["decision"] == "fail" and posted["run"]["way"] == "web"
    assert posted["look"] == 2 and posted["figures"]["error-rate"]["verdict"] == "fail"
    assert (
        posted["report"]["url"]
        == f"http://verdict:8080/api/v1/runs/{results[0]['run']['id']}/report"
    )


@pytest.mark.prometheus
@pytest.mark.parametrize("mode", ["error", "hang"])
def test_grafana_failing_or_hanging_changes_no_web_answer(
    prometheus: PrometheusServer, tmp_path: Path, grafana: GrafanaStandIn, mode: str
) -> None:
    start = prometheus.scenarios["error-regression"].start
    clock = Clock(start)
    plain = _looks(
        _app(prometheus, f"sqlite:///{tmp_path / 'a.sqlite'}", clock, {}),
        clock,
        "error-regression",
        start,
    )
    grafana.mode = mode
    notifier = _grafana(grafana, timeout=30)  # a hanging Grafana holds each request 30 s
    app = _app(
        prometheus, f"sqlite:///{tmp_path / 'b.sqlite'}", clock, {"error-regression": notifier}
    )
    noisy = _looks(app, clock, "error-regression", start)
    # every answer came back although Grafana was asked and (when hanging) never answered
    grafana.wait_for(1)
    if mode == "hang":
        assert len(grafana.requests) == 1  # still held: no look waited for it
    notifier.close(timeout=0)

    def outcome(result: dict[str, Any]) -> tuple[Any, ...]:
        return (result["verdict"], result["score"], result["reason"], result["run"]["looks"])

    assert [outcome(r) for r in noisy] == [outcome(r) for r in plain]


def test_the_example_file_accepts_grafana_and_notifications(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["grafana"] = {"url": "http://grafana:3000", "tokenEnv": "GRAFANA_TOKEN", "on": ["aborted"]}
    data["notifications"] = [{"type": "slack", "urlEnv": "SLACK_URL", "on": ["aborted"]}]
    path = write_analysis(tmp_path / "a.yaml", data)
    spec = load_analysis(path)
    assert spec.grafana is not None and spec.grafana.on == ["aborted"]
    data["grafana"]["on"] = ["exploded"]
    write_analysis(path, data)
    result = run_verdict("serve", "--config", str(path), "--port", "1")
    assert result.returncode == 2 and "grafana.on" in result.stderr


# --- controller mode ------------------------------------------------------------------------


@pytest.mark.prometheus
def test_the_controllers_abort_is_a_decision_on_grafana_and_in_the_report(
    prometheus: PrometheusServer, kube: Any, tmp_path: Path, grafana: GrafanaStandIn
) -> None:
    from analyzer.report import load_report
    from tests.test_controller import make_world

    world = make_world(prometheus, kube, tmp_path, "error-regression")
    notifier = _grafana(grafana)
    world.service.notifiers["error-regression"] = notifier
    try:
        world.tick_at(0)
        world.tick_at(5)
    finally:
        world.service.close()
    notifier.close(timeout=10)
    assert world.status()["abort"] is True
    assert grafana.violations == []
    (aborted,) = grafana.by_tag("verdict", "outcome:aborted")
    assert "namespace:shop" in aborted["tags"] and "rollout:checkout" in aborted["tags"]
    assert aborted["text"].startswith("Verdict aborted shop/checkout")
    (run,) = world.store.runs()
    report = load_report(world.store, run.id)
    assert report.headline == "aborted" and report.deciding_look == 2
    assert [d.outcome for d in report.decisions] == ["fail", "aborted"]

"""Every way in judges a run interval by interval, as `verdict analyze` judges the same window:
the same run looked at all at once and look by look gets the same thresholds and verdicts at
every look, and a young stable (no hour of history) gets its latency threshold from the run's
own baseline as soon as it has enough requests, on the web provider's path too.

Real Prometheus (the session's scenarios), the run service as the web provider and the
controller drive it, and `run_analysis` over the same window."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from analyzer.analysis import run_analysis
from analyzer.render import report_json
from analyzer.runs import LookRequest, PrometheusSources, RunService, RunSettings, Telemetry
from analyzer.runs.store import open_store
from analyzer.spec import parse_analysis, plan_analysis
from metrics.prometheus import PrometheusSource
from metrics.source import Window
from tests.conftest import PrometheusServer
from tests.helpers import example_analysis
from tests.test_serve_api import Clock, body

pytestmark = pytest.mark.prometheus

STEP = timedelta(seconds=30)


def _spec(prometheus: PrometheusServer, scenario: str) -> Any:
    s = prometheus.scenarios[scenario]
    data = example_analysis()
    data.update(
        name=scenario,
        prometheus={"url": prometheus.url},
        canary=dict(s.canary_matchers),
        baseline=dict(s.baseline_matchers),
    )
    # the latency comparison: its threshold is the baseline's p99, set from the run's own
    # baseline when there is no hour of history before the run
    data["metrics"][1]["compare"] = {"tolerance": 0.5}  # type: ignore[index]
    return parse_analysis(data, scenario)


def _thresholds(doc: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Per metric: the comparison's latency threshold and the look that chose it."""
    out = {}
    for m in doc["metrics"]:
        for c in m.get("checks", []):
            if c["check"] == "compare" and "threshold" in c["statistic"]:
                out[m["name"]] = (c["statistic"]["threshold"], c["statistic"].get("thresholdChosenAtLook"))
    return out


@pytest.mark.parametrize("scenario", ["young-busy", "fresh-canary", "latency-regression"])
def test_a_run_looked_at_look_by_look_gets_the_thresholds_and_verdicts_of_the_whole_window(
    prometheus: PrometheusServer, tmp_path: Path, scenario: str
) -> None:
    spec = _spec(prometheus, scenario)
    start = prometheus.scenarios[scenario].start
    clock = Clock(start)
    store = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    service = RunService(
        analyses={scenario: spec},
        store=store,
        sources=PrometheusSources(look_budget=30.0),
        clock=clock,
        settings=RunSettings(look_budget=30.0),
        telemetry=Telemetry(store.count),
    )
    request = LookRequest(scenario, "shop", "web", "c4n4ry", "s7ab1e", start=start.isoformat())
    source = PrometheusSource(prometheus.url, timeout=30.0)
    plan = plan_analysis(spec)
    compared = 0
    try:
        for k in range(1, 9):
            # a look a few seconds into interval k+1: it reads the k intervals that have ended
            clock.set(start + STEP * k + timedelta(seconds=7))
            look = service.look(request)
            window = Window(start=start, end=start + STEP * k, step=STEP)
            whole = report_json(run_analysis(plan, source, window, looks=[k]))
            by_look = report_json(look.report)
            assert by_look["verdict"] == whole["verdict"], (k, by_look["reason"], whole["reason"])
            assert [m["verdict"] for m in by_look["metrics"]] == [
                m["verdict"] for m in whole["metrics"]
            ], k
            assert _thresholds(by_look) == _thresholds(whole), k
            compared += bool(_thresholds(whole))
    finally:
        source.close()
        store.close()
    assert compared >= 6  # the latency threshold was set and compared at most looks


def test_a_busy_service_with_a_young_stable_passes_on_the_web_provider_within_60_s(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    """4,000 requests a second, the canary at 5 % (12,000 canary requests a minute), the stable
    started just before the rollout (no history to set the latency threshold from): Argo's
    first measurement comes at the step's start."""
    start = prometheus.scenarios["young-busy"].start
    clock = Clock(start)
    analyses = {"young-busy": _spec(prometheus, "young-busy")}
    with TestClient(_app_for(prometheus, tmp_path, clock, analyses)) as client:
        request = body("young-busy", start=start.isoformat())
        answers: list[tuple[float, dict[str, Any]]] = []
        for seconds in (0, 10, 30, 40, 60):
            clock.set(start + timedelta(seconds=seconds))
            answer = client.post("/api/v1/verdict", json=request)
            assert answer.status_code == 200, answer.text
            answers.append((seconds, answer.json()["result"]))
    verdicts = [(s, r["verdict"]) for s, r in answers]
    assert verdicts[0] == (0, "inconclusive")  # the step has just started: no data yet
    passed = [s for s, r in answers if r["verdict"] == "pass"]
    assert passed and passed[0] <= 60, verdicts
    latency = next(m for m in answers[-1][1]["metrics"] if m["name"] == "latency-p99")
    assert "no threshold yet" not in latency["reason"]


def _app_for(
    prometheus: PrometheusServer, tmp_path: Path, clock: Clock, analyses: dict[str, Any]
) -> Any:
    from analyzer.api import ServeSettings, create_app

    settings = ServeSettings()
    return create_app(
        analyses=analyses,
        store=open_store(f"sqlite:///{tmp_path / 'serve.sqlite'}"),
        sources=PrometheusSources(look_budget=settings.look_budget),
        clock=clock,
        settings=settings,
    )

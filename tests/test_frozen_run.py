"""A run whose canary stops mid-way is "no data" at every look after the freeze, never a pass
(the web provider over a real Prometheus), and what "no data" means to the judge.

`canary-stops`: the canary's series stop 25 minutes into the scenario while the baseline keeps
serving. The run starts 15 minutes in, so its canary stops 10 minutes into the run. The
analysis compares error rates with a wide tolerance: undecided for the first 9 minutes, it
passes the canary's 10 minutes of traffic, and judged as they are, the counts frozen there pass
at every later look, a canary nobody is watching any more.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from analyzer.analysis import Observations, fetch_observations, judge_observations
from analyzer.api import PrometheusSources, ServeSettings, create_app
from analyzer.checks import evaluate_metric
from analyzer.runs.store import open_store
from analyzer.spec import parse_analysis, plan_analysis
from analyzer.verdicts import MetricStatus, Verdict
from metrics.prometheus import PrometheusSource
from metrics.source import RatioSeries, Window
from tests.conftest import PrometheusServer
from tests.test_serve_api import Clock, body, minutes

SCENARIO = "canary-stops"
RUN_STARTS = timedelta(minutes=15)  # into the scenario: the canary stops 10 minutes into the run
FREEZE = timedelta(minutes=10)
TOLERANT = [
    {
        "name": "error-rate",
        "template": "istio-error-rate",
        "compare": {"direction": "increase", "tolerance": 1.0, "margin": 0.00005},
    }
]


def _analysis(prometheus: PrometheusServer) -> dict[str, Any]:
    scenario = prometheus.scenarios[SCENARIO]
    return {
        "name": "frozen",
        "prometheus": {"url": prometheus.url},
        "canary": dict(scenario.canary_matchers),
        "baseline": dict(scenario.baseline_matchers),
        "interval": "30s",
        "metrics": TOLERANT,
    }


def _run_start(prometheus: PrometheusServer) -> datetime:
    return prometheus.scenarios[SCENARIO].start + RUN_STARTS


@pytest.fixture
def looks(prometheus: PrometheusServer, tmp_path: Path) -> Iterator[list[tuple[float, Any]]]:
    """The web provider's answers to looks every 3 minutes of the run, 3 to 24 minutes in."""
    start = _run_start(prometheus)
    clock = Clock(start)
    settings = ServeSettings()
    app = create_app(
        analyses={"frozen": parse_analysis(_analysis(prometheus), "frozen")},
        store=open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}"),
        sources=PrometheusSources(look_budget=settings.look_budget),
        clock=clock,
        settings=settings,
    )
    answers = []
    with TestClient(app) as client:
        for m in range(3, 25, 3):
            clock.set(start + minutes(m))
            answer = client.post("/api/v1/verdict", json=body("frozen", start=start.isoformat()))
            assert answer.status_code == 200, answer.text
            answers.append((float(m), answer.json()["result"]))
    yield answers


@pytest.mark.prometheus
def test_a_canary_frozen_10_minutes_into_a_run_never_passes_after_the_freeze(
    looks: list[tuple[float, Any]],
) -> None:
    after = [(m, r) for m, r in looks if minutes(m) > FREEZE]
    before = [(m, r) for m, r in looks if minutes(m) <= FREEZE]
    assert len(after) >= 4 and before
    for m, result in after:
        assert result["verdict"] != "pass", (m, result)
        (error_rate,) = result["metrics"]
        assert error_rate["verdict"] == "no data", (m, error_rate)
        assert "no canary request in the last" in error_rate["reason"], (m, error_rate)
        assert "frozen counts are no data" in error_rate["reason"]
        assert result["reason"].startswith("No data for error-rate"), result["reason"]
    # while the canary served, nothing was called frozen: the rule does not fire on traffic
    for m, result in before:
        assert "no canary request" not in result["metrics"][0]["reason"], (m, result)
    # the answer's counts are the frozen ones: the canary's stay put, the baseline's go on
    canary = [r["metrics"][0]["canary"]["requests"] for _, r in after]
    baseline = [r["metrics"][0]["baseline"]["requests"] for _, r in after]
    assert len(set(canary)) == 1 and baseline == sorted(baseline) and baseline[-1] > baseline[0]


@pytest.mark.prometheus
def test_judged_as_they_are_the_frozen_counts_would_pass(prometheus: PrometheusServer) -> None:
    # precondition of the test above: the checks alone, fed the run's data at its last look,
    # pass the frozen canary (what the silence rule stops)
    plan = plan_analysis(parse_analysis(_analysis(prometheus), "frozen"))
    (metric,) = plan.metrics
    start = _run_start(prometheus)
    window = Window(start=start, end=start + minutes(24), step=timedelta(seconds=30))
    observations = fetch_observations(plan, PrometheusSource(prometheus.url), window)
    canary, baseline = observations.series[metric.name]
    assert isinstance(canary, RatioSeries) and isinstance(baseline, RatioSeries)
    frozen_from = int(FREEZE / window.step)
    assert canary.total[: frozen_from - 1].min() > 0 and canary.total[frozen_from:].max() == 0
    judged = evaluate_metric(
        metric,
        canary,
        baseline,
        alpha=metric.alpha,
        beta=metric.beta,
        prerun=observations.prerun.get(metric.name),
    )
    assert judged.status is MetricStatus.PASS, judged.reason
    # and the whole judge calls it what it is
    (frozen,) = judge_observations(plan, observations).metrics
    assert frozen.status is MetricStatus.NO_DATA and "no canary request" in frozen.reason


@pytest.mark.prometheus
def test_a_canary_whose_series_all_stopped_keeps_its_counts_when_read_again(
    prometheus: PrometheusServer,
) -> None:
    # one source reads the run at 12 minutes, then (with the read-ahead) at 15, when none of
    # the canary's series is left at the window's end: the series present at the run's start
    # are still known as such, so their counts are not read as increases from zero
    plan = plan_analysis(parse_analysis(_analysis(prometheus), "frozen"))
    start = _run_start(prometheus)
    source = PrometheusSource(prometheus.url)
    one_query_a_look = PrometheusSource(prometheus.url, range_read_from=10**6)
    for m in (12, 15, 18):
        window = Window(start=start, end=start + minutes(m), step=timedelta(seconds=30))
        canary, _ = fetch_observations(plan, source, window).series["error-rate"]
        expected, _ = fetch_observations(plan, one_query_a_look, window).series["error-rate"]
        assert isinstance(canary, RatioSeries) and isinstance(expected, RatioSeries)
        np.testing.assert_allclose(canary.total, expected.total, rtol=1e-9, atol=1e-6)


# --- what the judge makes of missing and frozen data (pure) ---------------------------------


def _observations(
    canary: RatioSeries | None,
    baseline: RatioSeries | None,
    missing: dict[tuple[str, str], str] | None = None,
) -> Observations:
    start = datetime.fromisoformat("2026-01-01T00:00:00+00:00")
    window = Window(start=start, end=start + timedelta(minutes=20), step=timedelta(minutes=1))
    return Observations(
        window=window, series={"error-rate": (canary, baseline)}, missing=missing or {}
    )


def _plan() -> Any:
    return plan_analysis(
        parse_analysis(
            {
                "name": "pure",
                "canary": {"app": "c"},
                "baseline": {"app": "b"},
                "interval": "1m",
                "metrics": [
                    {
                        "name": "error-rate",
                        "template": "istio-error-rate",
                        "slo": {"max": 0.005},
                        "compare": {"tolerance": 0.5, "margin": 0.001},
                    }
                ],
            },
            "pure",
        )
    )


def test_a_frozen_canary_that_is_still_undecided_is_no_data_and_says_why() -> None:
    # 60 requests a minute for 5 minutes, then nothing for 15 while the baseline goes on: too
    # little to decide, and frozen: the answer says the canary stopped, not "more requests"
    canary = RatioSeries(bad=np.zeros(20), total=np.array([60.0] * 5 + [0.0] * 15))
    baseline = RatioSeries(bad=np.full(20, 0.2), total=np.full(20, 1000.0))
    report = judge_observations(_plan(), _observations(canary, baseline))
    (metric,) = report.metrics
    assert metric.status is MetricStatus.NO_DATA
    assert metric.reason.startswith("error-rate: no canary request in the last 15 intervals")
    assert report.verdict is Verdict.INCONCLUSIVE


def test_a_part_that_lost_its_answer_is_no_data_unless_the_data_there_is_shows_a_failure() -> None:
    plan = _plan()
    healthy = RatioSeries(bad=np.ones(20), total=np.full(20, 2000.0))
    failing = RatioSeries(bad=np.full(20, 200.0), total=np.full(20, 2000.0))
    why = "the baseline's bad-request query q answered nothing while its total has 40,000 requests"
    # the baseline lost its errors: a healthy canary cannot be shown no worse than it
    (metric,) = judge_observations(
        plan, _observations(healthy, None, {("error-rate", "baseline"): why})
    ).metrics
    assert metric.status is MetricStatus.NO_DATA and metric.reason == f"error-rate: {why}"
    # a canary at 10 % errors is shown above its SLO whatever the baseline's answer was
    (metric,) = judge_observations(
        plan, _observations(failing, None, {("error-rate", "baseline"): why})
    ).metrics
    assert metric.status is MetricStatus.FAIL
    # without the missing part, the healthy canary passes: the "no data" above is the gap's
    (metric,) = judge_observations(plan, _observations(healthy, healthy)).metrics
    assert metric.status is MetricStatus.PASS

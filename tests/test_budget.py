"""How the false-abort budget is spent: the documented split, end to end in the report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from analyzer.analysis import fetch_observations, judge_observations
from analyzer.budget import CRITICAL_SHARE, metric_alphas
from analyzer.spec import parse_analysis, plan_analysis
from metrics.simulated import SimulatedSource, TrafficModel
from metrics.source import Window
from tests.helpers import example_analysis


def _metrics(*critical: bool):  # type: ignore[no-untyped-def]
    data = example_analysis()
    base = data["metrics"][2]  # type: ignore[index]
    metrics = [dict(base, name=f"m{i}", critical=c) for i, c in enumerate(critical)]  # type: ignore[arg-type]
    return parse_analysis(dict(data, metrics=metrics)).metrics


@pytest.mark.parametrize(
    ("critical", "expected"),
    [
        ((True, False, False), [0.03, 0.01, 0.01]),
        ((True, True, False), [0.015, 0.015, 0.02]),
        ((False, False), [0.025, 0.025]),
        ((True, True), [0.025, 0.025]),
        ((True,), [0.05]),
    ],
)
def test_metric_alphas_are_60_percent_critical_40_percent_the_rest(
    critical: tuple[bool, ...], expected: list[float]
) -> None:
    assert CRITICAL_SHARE == 0.6
    got = metric_alphas(_metrics(*critical), 0.05)
    assert got == pytest.approx(expected)
    assert sum(got) == pytest.approx(0.05)


def test_the_report_carries_the_alpha_each_check_used_and_it_is_the_documented_split() -> None:
    spec = parse_analysis(example_analysis())  # error-rate (critical: slo + compare), p99, success
    start = datetime(2026, 11, 26, 10, tzinfo=UTC)
    window = Window(start, start + timedelta(minutes=5), timedelta(seconds=30))
    source = SimulatedSource(TrafficModel(), lambda _t: 10.0, seed=1)
    report = judge_observations(plan_analysis(spec), fetch_observations(plan_analysis(spec), source, window))
    alpha, beta = spec.alpha, spec.beta
    by_name = {m.name: m for m in report.metrics}
    assert by_name["error-rate"].alpha == pytest.approx(0.6 * alpha)
    assert by_name["latency-p99"].alpha == pytest.approx(0.4 * alpha / 2)
    assert by_name["success-rate"].alpha == pytest.approx(0.4 * alpha / 2)
    checks = {c.check: c.statistic for c in by_name["error-rate"].checks}
    assert checks["trigger"]["alpha"] == pytest.approx(0.1 * 0.6 * alpha)
    assert checks["slo"]["alpha"] == pytest.approx(0.6 * alpha)  # a breach holds at the metric's level
    assert checks["compare"]["alpha"] == pytest.approx(0.9 * 0.6 * alpha)
    for m in report.metrics:
        for c in m.checks:
            assert c.statistic["beta"] == beta
            assert c.statistic["passAt"] == pytest.approx(1 / beta, rel=1e-3)

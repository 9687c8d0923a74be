"""One metric judged over looks: ratio and latency checks, sticky failures, no data, and the
vectorised per-look path agreeing with the readable one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analyzer.checks import evaluate_metric
from analyzer.looks import FAIL, INCONCLUSIVE, NO_DATA, PASS, metric_looks
from analyzer.spec import AnalysisSpec, parse_analysis, plan_metric
from analyzer.verdicts import MetricStatus
from metrics.simulated import SimulatedSource, TrafficModel
from metrics.source import HistogramSeries, RatioSeries, Version, Window
from tests.helpers import example_analysis

CODES = {
    PASS: MetricStatus.PASS,
    FAIL: MetricStatus.FAIL,
    INCONCLUSIVE: MetricStatus.INCONCLUSIVE,
    NO_DATA: MetricStatus.NO_DATA,
}
WINDOW = Window(
    datetime(2026, 11, 26, 10, tzinfo=UTC),
    datetime(2026, 11, 26, 10, 40, tzinfo=UTC),
    timedelta(seconds=30),
)


def spec() -> AnalysisSpec:
    data = example_analysis()
    data["metrics"][1]["compare"] = {"tolerance": 0.5}  # type: ignore[index]
    return parse_analysis(data)


def series(
    model: TrafficModel, seed: int, weight: float = 10.0
) -> dict[str, tuple[object, object]]:
    source = SimulatedSource(model, lambda _t: weight, seed=seed)
    out = {}
    for m in spec().metrics:
        q = m.metric_query
        out[m.name] = (
            source.fetch(q, Version.CANARY, {}, WINDOW),
            source.fetch(q, Version.BASELINE, {}, WINDOW),
        )
    return out


@pytest.mark.parametrize(
    "model",
    [
        TrafficModel(),
        TrafficModel(canary_error_rate=0.01),
        TrafficModel(canary_latency_factor=2.0),
        TrafficModel(requests_per_second=2.0),
    ],
    ids=["healthy", "errors", "latency", "low-traffic"],
)
def test_vectorised_looks_agree_with_readable_checks(model: TrafficModel) -> None:
    s = spec()
    data = series(model, seed=3)
    for m in s.metrics:
        canary, baseline = data[m.name]
        codes = metric_looks(plan_metric(m), canary, baseline, None, alpha=0.05 / 3, beta=0.1).codes  # type: ignore[arg-type]
        for look in range(1, WINDOW.intervals + 1, 7):
            report = evaluate_metric(plan_metric(m), canary, baseline, alpha=0.05 / 3, looks=[look])  # type: ignore[arg-type]
            assert report.status is CODES[int(codes[look - 1])], (m.name, look)


def test_healthy_canary_passes_every_metric() -> None:
    s = spec()
    data = series(TrafficModel(), seed=1, weight=50)
    for m in s.metrics:
        report = evaluate_metric(plan_metric(m), *data[m.name], alpha=0.05 / 3)  # type: ignore[arg-type]
        assert report.status is MetricStatus.PASS, report.reason


def test_error_regression_fails_and_names_the_bound() -> None:
    m = spec().metrics[0]
    canary, baseline = series(TrafficModel(canary_error_rate=0.03), seed=2)[m.name]
    report = evaluate_metric(plan_metric(m), canary, baseline, alpha=0.05 / 3)  # type: ignore[arg-type]
    assert report.status is MetricStatus.FAIL
    assert report.failed_at_look is not None and report.failed_at_look <= 5
    # 3 % is beyond the SLO's 0.5 % and its default rollback trigger's 1 %: the trigger fails it
    assert "above the rollback trigger's 1%" in report.reason and "roll back first" in report.reason


def test_failure_is_sticky_after_the_canary_recovers() -> None:
    m = spec().metrics[0]
    bad = np.array([40.0, 40.0] + [0.0] * 78)
    total = np.full(80, 1000.0)
    canary = RatioSeries(bad=bad, total=total)
    baseline = RatioSeries(bad=np.full(80, 9.0), total=np.full(80, 9000.0))
    report = evaluate_metric(plan_metric(m), canary, baseline, alpha=0.01)
    assert report.status is MetricStatus.FAIL
    assert report.failed_at_look is not None and report.failed_at_look <= 2
    assert "first shown at look" in report.reason


def test_no_canary_series_is_no_data_never_pass() -> None:
    m = spec().metrics[0]
    report = evaluate_metric(plan_metric(m), None, RatioSeries(np.ones(4), np.full(4, 100.0)), alpha=0.01)
    assert report.status is MetricStatus.NO_DATA
    assert "no data is never a pass" in report.reason


def test_zero_canary_requests_is_no_data() -> None:
    m = spec().metrics[0]
    zero = RatioSeries(np.zeros(4), np.zeros(4))
    report = evaluate_metric(plan_metric(m), zero, RatioSeries(np.ones(4), np.full(4, 100.0)), alpha=0.01)
    assert report.status is MetricStatus.NO_DATA


def test_low_traffic_is_inconclusive_with_requests_and_minutes_needed() -> None:
    m = spec().metrics[2]  # success-rate SLO
    canary = RatioSeries(np.zeros(4), np.full(4, 20.0))
    report = evaluate_metric(plan_metric(m), canary, canary, alpha=0.01, interval_seconds=30)
    assert report.status is MetricStatus.INCONCLUSIVE
    assert report.more_requests_needed is not None and report.more_requests_needed > 100
    # 20 canary requests per 30 s interval: 40 a minute
    assert report.more_minutes_needed == pytest.approx(report.more_requests_needed / 40, abs=0.06)
    assert "more canary requests" in report.reason and "min at the current rate" in report.reason
    # and those requests, at the same (zero) error rate, do make it pass
    extra = report.more_requests_needed
    grown = RatioSeries(np.zeros(5), np.array([20.0] * 4 + [float(extra)]))
    assert evaluate_metric(plan_metric(m), grown, grown, alpha=0.01).status is MetricStatus.PASS


def test_latency_slo_between_bucket_bounds_is_conservative() -> None:
    m = parse_analysis(
        dict(
            example_analysis(),
            metrics=[
                {
                    "name": "p99",
                    "template": "istio-latency",
                    "quantile": 0.99,
                    "slo": {"max": "400ms"},
                }
            ],
        )
    ).metrics[0]
    bounds = np.array([0.1, 0.25, 0.5, 1.0, np.inf])
    # 3 % of requests in (250ms, 500ms]: may or may not be slower than 400ms -> never a fail
    counts = np.array([[9000.0, 700.0, 300.0, 0.0, 0.0]] * 10)
    report = evaluate_metric(plan_metric(m), HistogramSeries(bounds, counts), None, alpha=0.01)
    assert report.status is MetricStatus.INCONCLUSIVE
    assert not report.held
    # the same 3 % above 500ms are certainly slower than 400ms -> a breach: the SLO holds
    counts_slow = np.array([[9000.0, 700.0, 0.0, 300.0, 0.0]] * 10)
    report = evaluate_metric(plan_metric(m), HistogramSeries(bounds, counts_slow), None, alpha=0.01)
    assert report.status is MetricStatus.INCONCLUSIVE and report.held
    assert report.reason.startswith("hold: ")
    # 3 % above 1 s, the default rollback trigger: fail
    counts_slower = np.array([[9000.0, 700.0, 0.0, 0.0, 300.0]] * 10)
    report = evaluate_metric(plan_metric(m), HistogramSeries(bounds, counts_slower), None, alpha=0.01)
    assert report.status is MetricStatus.FAIL


def test_mann_whitney_mode_is_selectable() -> None:
    data = example_analysis()
    data["metrics"][0]["test"] = "mann-whitney"  # type: ignore[index]
    data["metrics"][0].pop("slo")  # type: ignore[union-attr]
    m = parse_analysis(data).metrics[0]
    canary, baseline = series(TrafficModel(canary_error_rate=0.05), seed=4)[m.name]
    report = evaluate_metric(plan_metric(m), canary, baseline, alpha=0.05)  # type: ignore[arg-type]
    assert report.status is MetricStatus.FAIL
    assert report.checks[0].check == "mann-whitney"

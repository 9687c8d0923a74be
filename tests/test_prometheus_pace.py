"""A quick Prometheus is read one request at a time, a slow one with threads: the same counts.

A request that comes back in a millisecond or two costs less than handing it to a thread and
back, so a source whose requests are typically quick (`answers_quickly`) does what a read
would ask beside it in the reading thread, and `fetch_observations` fetches one metric after
another. As soon as its requests are slow (far away, loaded, a large fleet's pages), the
threads come back. Seen at the HTTP boundary: how many requests are in the proxy at once.
"""

from __future__ import annotations

import statistics
import threading
import time
from datetime import timedelta

import pytest
from urllib3.util.retry import Retry

from analyzer.analysis import (
    Observations,
    fetch_observations,
    judge_observations,
    run_analysis,
)
from analyzer.render import report_json
from analyzer.spec import AnalysisSpec, parse_analysis, plan_analysis
from metrics.prometheus import PrometheusSource
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import Series, Version, Window
from metrics.transport import Transport
from tests.conftest import PrometheusServer
from tests.helpers import assert_same_arrays, scenario_analysis, series_arrays
from tests.reliability.fault_proxy import Fault, FaultProxy

pytestmark = pytest.mark.prometheus


def _analysis(prometheus: PrometheusServer) -> tuple[AnalysisSpec, Window]:
    scenario = prometheus.scenarios["healthy"]
    spec = parse_analysis(scenario_analysis("healthy", scenario))
    return spec, scenario.window(timedelta(seconds=spec.interval))


def _source_threads() -> set[threading.Thread]:
    names = ("verdict-ask", "verdict-part")
    return {t for t in threading.enumerate() if t.name.startswith(names)}


def _assert_same(got: Observations, expected: Observations) -> None:
    assert got.series.keys() == expected.series.keys()
    assert got.prerun.keys() == expected.prerun.keys()
    pairs = [(got.series[n], expected.series[n]) for n in got.series]
    pairs += [((got.prerun[n], None), (expected.prerun[n], None)) for n in got.prerun]
    for versions, expected_versions in pairs:
        for one, other in zip(versions, expected_versions, strict=True):
            assert_same_arrays(series_arrays(one), series_arrays(other), exact=True)


def _assert_read_alike_one_at_a_time(
    observed: Observations, prometheus: PrometheusServer, spec: AnalysisSpec, window: Window
) -> None:
    """`observed` holds what a quick source, reading one request at a time, reads."""
    quick = PrometheusSource(prometheus.url, quick_seconds=60.0)
    try:
        _assert_same(observed, fetch_observations(plan_analysis(spec), quick, window))
    finally:
        quick.close()


def _assert_threaded_and_read_alike(
    source: PrometheusSource, proxy: FaultProxy, prometheus: PrometheusServer,
    spec: AnalysisSpec, window: Window,
) -> None:
    """`source` (behind `proxy`) reads the analysis with its threads, several requests at
    once, and counts what a quick source reading one request at a time counts."""
    try:
        observed = fetch_observations(plan_analysis(spec), source, window)
        assert not source.answers_quickly()
    finally:
        source.close()
    assert proxy.most_at_once >= 3
    _assert_read_alike_one_at_a_time(observed, prometheus, spec, window)


def test_a_quick_prometheus_is_read_one_request_at_a_time_with_the_same_counts(
    prometheus: PrometheusServer, fault_proxy: FaultProxy
) -> None:
    spec, window = _analysis(prometheus)
    before = _source_threads()
    # every request counts as quick here (the test machine's speed decides nothing)
    quick = PrometheusSource(fault_proxy.url, quick_seconds=60.0)
    try:
        one_at_a_time = fetch_observations(plan_analysis(spec), quick, window)
        assert quick.answers_quickly()
        assert _source_threads() == before, "a quick source starts no threads"
    finally:
        quick.close()
    assert fault_proxy.most_at_once == 1

    threaded_proxy = FaultProxy(upstream=prometheus.url).start()
    # (each request held 50 ms, so that the ones sent side by side are seen side by side)
    threaded_proxy.set(Fault("latency", seconds=0.05))
    threaded = PrometheusSource(threaded_proxy.url, quick_seconds=0)  # threads always
    try:
        with_threads = fetch_observations(plan_analysis(spec), threaded, window)
        assert not threaded.answers_quickly()
    finally:
        threaded.close()
        threaded_proxy.stop()
    assert threaded_proxy.most_at_once >= 3  # the versions, parts and metrics side by side
    _assert_same(one_at_a_time, with_threads)


def test_a_slow_prometheus_gets_the_threads_back(
    prometheus: PrometheusServer, fault_proxy: FaultProxy
) -> None:
    # requests of 60 ms against a quick limit of 30 ms: after the first three answers, the
    # rest of the analysis is asked side by side
    fault_proxy.set(Fault("latency", seconds=0.06))
    spec, window = _analysis(prometheus)
    source = PrometheusSource(fault_proxy.url, quick_seconds=0.03)
    assert source.answers_quickly()  # nothing asked yet
    _assert_threaded_and_read_alike(source, fault_proxy, prometheus, spec, window)


def test_one_look_of_a_ratio_asks_its_total_and_its_part_side_by_side(
    prometheus: PrometheusServer, fault_proxy: FaultProxy
) -> None:
    # the web provider's look: one instant query each for the total and the errors (a part
    # counted from the total's samples only when those are read), asked at once when the
    # requests are slow
    fault_proxy.set(Fault("latency", seconds=0.05))
    scenario = prometheus.scenarios["healthy"]
    window = scenario.window(timedelta(minutes=40))
    assert window.intervals == 1

    def errors(url: str, quick_seconds: float) -> Series | None:
        source = PrometheusSource(url, quick_seconds=quick_seconds)
        try:
            return source.fetch(BUILTIN_TEMPLATES["istio-error-rate"], Version.CANARY,
                                scenario.canary_matchers, window)
        finally:
            source.close()

    series = errors(fault_proxy.url, 0.0)
    assert fault_proxy.most_at_once == 2
    alone = errors(prometheus.url, 60.0)
    assert_same_arrays(series_arrays(series), series_arrays(alone), exact=True)


def test_typical_request_time_is_the_median_of_the_latest(
    prometheus: PrometheusServer, fault_proxy: FaultProxy
) -> None:
    transport = Transport(fault_proxy.url, timeout=5.0, retry=Retry(0), headers={})
    try:
        assert transport.typical_seconds() is None
        fault_proxy.set(Fault("latency", seconds=0.3, times=1))
        took = []
        for _ in range(3):
            began = time.monotonic()
            transport.post_form("/api/v1/query", {"query": "vector(1)"})
            took.append(time.monotonic() - began)
        # one slow request and two quick ones: the median is the slower quick one's time, at
        # most what it took seen from here (their mean is over 0.1 s); the quick ones' own
        # times, not a fixed bound, as a busy test machine slows them
        typical = transport.typical_seconds()
        assert typical is not None and typical <= max(took[1:]) < statistics.mean(took)
        assert transport.typical_seconds(at_least=4) is None  # not judged on too few
        fault_proxy.set(Fault("latency", seconds=0.1))
        for _ in range(16):
            transport.post_form("/api/v1/query", {"query": "vector(1)"})
        typical = transport.typical_seconds()
        assert typical is not None and typical >= 0.1  # only the latest 16 count
    finally:
        transport.close()


@pytest.mark.parametrize(
    "scenario", ["healthy", "error-regression", "latency-regression", "no-canary"]
)
@pytest.mark.parametrize("quick_seconds", [60.0, 0.0])
def test_an_analysis_judges_each_metric_as_it_comes_as_judging_them_all_at_once_would(
    prometheus: PrometheusServer, scenario: str, quick_seconds: float
) -> None:
    # `run_analysis` judges a metric as soon as its fetches are in, while the others are
    # still read: its report is the report of judging everything once it is all in
    data = prometheus.scenarios[scenario]
    spec = parse_analysis(scenario_analysis(scenario, data))
    window = data.window(timedelta(seconds=spec.interval))
    calls: list[tuple[str, set[str]]] = []

    def on_metric(name: str, so_far: Observations) -> None:
        calls.append((name, set(so_far.series) | set(so_far.prerun)))

    sources = [PrometheusSource(prometheus.url, quick_seconds=quick_seconds) for _ in range(3)]
    try:
        as_they_come = run_analysis(plan_analysis(spec), sources[0], window)
        observed = fetch_observations(plan_analysis(spec), sources[1], window, on_metric=on_metric)
        all_at_once = judge_observations(plan_analysis(spec), fetch_observations(plan_analysis(spec), sources[2], window))
    finally:
        for source in sources:
            source.close()
    assert report_json(as_they_come) == report_json(all_at_once)
    assert report_json(judge_observations(plan_analysis(spec), observed)) == report_json(all_at_once)
    # each metric once, with its own series only
    assert sorted(name for name, _ in calls) == sorted(m.name for m in spec.metrics)
    assert all(seen == {name} for name, seen in calls), calls


def test_a_source_with_a_large_counter_reads_with_threads_however_quick_its_answers(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a counter of many series has long pages: the read-ahead that finds one turns the
    # threads back on (here "many" is anything over one series)
    import metrics.prometheus

    monkeypatch.setattr(metrics.prometheus, "_QUICK_SERIES", 1)
    # (each request held 50 ms, so that the ones sent side by side are seen side by side)
    fault_proxy.set(Fault("latency", seconds=0.05))
    spec, window = _analysis(prometheus)
    source = PrometheusSource(fault_proxy.url, quick_seconds=60.0)
    _assert_threaded_and_read_alike(source, fault_proxy, prometheus, spec, window)

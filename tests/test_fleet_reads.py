"""Looks of many runs read together (`metrics.fleet.FleetSource`) give each run exactly the
numbers its own reads give, in a few requests, on every scenario of the real-Prometheus tests."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from analyzer.analysis import Observations, fetch_observations, look_fetches
from analyzer.plan import AnalysisPlan
from analyzer.spec import parse_analysis, plan_analysis
from metrics.fleet import FleetSource
from metrics.prometheus import PrometheusSource
from metrics.source import HistogramSeries, RatioSeries, Window
from tests.conftest import PrometheusServer
from tests.helpers import example_analysis
from tests.local_http import recording_prometheus
from tests.victoria import VictoriaServer, victoria  # noqa: F401  (the fixture)

pytestmark = pytest.mark.prometheus


def _plan() -> AnalysisPlan:
    data = example_analysis()
    data.update(
        name="fleet",
        canary={"destination_service_name": "{{ rollout }}-canary"},
        baseline={"destination_service_name": "{{ rollout }}-stable"},
    )
    return plan_analysis(parse_analysis(data))


def _looks(prometheus: PrometheusServer, intervals: int) -> list[tuple[dict[str, str], Window]]:
    """One run a scenario, each looking `intervals` intervals after its scenario's start."""
    step = timedelta(seconds=30)
    out = []
    for name, scenario in sorted(prometheus.scenarios.items()):
        end = scenario.start + step * intervals
        if end > scenario.end:
            continue
        params = {"rollout": name, "namespace": "ns", "canaryHash": "c", "stableHash": "s"}
        out.append((params, Window(start=scenario.start, end=end, step=step)))
    return out


def _alone(url: str, plan: AnalysisPlan, looks: list[tuple[dict[str, str], Window]]) -> list[Any]:
    """Each look read by a source of its own (the reads before: no batch)."""
    out = []
    for params, window in looks:
        source = PrometheusSource(url)
        try:
            out.append(_observed(plan, source, window, params))
        finally:
            source.close()
    return out


def _observed(plan: AnalysisPlan, source: Any, window: Window, params: dict[str, str]) -> Any:
    try:
        return fetch_observations(plan, source, window, params)
    except Exception as error:  # the same error is the same answer
        return f"{type(error).__name__}: {error}"


def _together(
    fleet: FleetSource, plan: AnalysisPlan, looks: list[tuple[dict[str, str], Window]]
) -> list[Any]:
    """Every look at once, each in a thread of its own, as the run service asks them."""
    out: list[Any] = [None] * len(looks)
    start = threading.Barrier(len(looks))

    def one(i: int) -> None:
        params, window = looks[i]
        start.wait()
        fleet.read_together(look_fetches(plan, window, params))
        out[i] = _observed(plan, fleet, window, params)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(looks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def _same(a: Any, b: Any) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
        return
    assert isinstance(a, Observations) and isinstance(b, Observations)
    assert a.missing == b.missing
    pairs = [(a.series[k], b.series[k]) for k in a.series] + [
        ((a.prerun.get(k),), (b.prerun.get(k),)) for k in set(a.prerun) | set(b.prerun)
    ]
    for left, right in pairs:
        for x, y in zip(left, right, strict=True):
            assert type(x) is type(y)
            if isinstance(x, RatioSeries) and isinstance(y, RatioSeries):
                np.testing.assert_array_equal(x.bad, y.bad)
                np.testing.assert_array_equal(x.total, y.total)
            elif isinstance(x, HistogramSeries) and isinstance(y, HistogramSeries):
                np.testing.assert_array_equal(x.bounds, y.bounds)
                np.testing.assert_array_equal(x.counts, y.counts)


@pytest.mark.parametrize("intervals", [1, 2, 5, 40])
def test_looks_read_together_give_each_run_its_own_numbers(
    prometheus: PrometheusServer, intervals: int
) -> None:
    _read_together_as_alone(prometheus, prometheus.url, intervals)


@pytest.mark.parametrize("intervals", [2, 40])
def test_looks_read_together_on_victoria_metrics_give_each_run_its_own_numbers(
    prometheus: PrometheusServer,
    victoria: VictoriaServer,  # noqa: F811
    intervals: int,
) -> None:
    # VictoriaMetrics takes queries of 16 KiB at most: a batch asks in several short ones
    _read_together_as_alone(prometheus, victoria.url, intervals, short_queries=True)


def _read_together_as_alone(
    prometheus: PrometheusServer, url: str, intervals: int, *, short_queries: bool = False
) -> None:
    """The looks one scenario each, read together through the store at `url`, give what each
    gives read alone, in a few requests."""
    plan = _plan()
    looks = _looks(prometheus, intervals)
    assert len(looks) >= 8
    expected = _alone(url, plan, looks)
    with recording_prometheus(url) as recording:
        inner = PrometheusSource(recording.url)
        fleet = FleetSource(inner, gather=0.3)
        # the source's first raw read is checked against Prometheus' own answer, alone
        _observed(plan, inner, *reversed(_looks(prometheus, 40)[0]))
        before = len(recording.sent)
        got = _together(fleet, plan, looks)
        sent = len(recording.sent) - before
        inner.close()
    for want, have in zip(expected, got, strict=True):
        _same(want, have)
    # the first look comes alone (nothing else arrived before it); the others share a batch
    assert fleet.batches == 1 and fleet.batched_looks == len(looks) - 1
    one_by_one = _sent_one_by_one(url, plan, looks)
    most = one_by_one / 4 if short_queries else one_by_one / len(looks) + 4
    assert sent <= most, f"{sent} requests ({one_by_one} one by one)"


def _sent_one_by_one(
    url: str, plan: AnalysisPlan, looks: list[tuple[dict[str, str], Window]]
) -> int:
    """The requests `looks` take read one after the other by one (checked) source."""
    with recording_prometheus(url) as recording:
        source = PrometheusSource(recording.url)
        before = len(recording.sent)
        for params, window in looks:
            _observed(plan, source, window, params)
        source.close()
        return len(recording.sent) - before

"""A canary whose series stop mid-window is "no data", never a pass (real Prometheus).

`canary-stops`: a healthy canary's series stop 25 minutes into a 40-minute window (pods gone)
while the baseline keeps serving. Its counts since the start freeze; judged as they are, the
first 25 healthy minutes would pass it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metrics.source import RatioSeries, Version
from metrics.stall import MAX_QUIET_INTERVALS, quiet_canary
from tests.conftest import PrometheusServer
from tests.helpers import example_analysis, run_verdict, write_analysis

pytestmark = pytest.mark.prometheus


def _analyze(prometheus: PrometheusServer, tmp_path: Path, name: str) -> tuple[int, dict[str, Any]]:
    scenario = prometheus.scenarios[name]
    data = example_analysis()
    data["canary"] = dict(scenario.canary_matchers)
    data["baseline"] = dict(scenario.baseline_matchers)
    path = write_analysis(tmp_path / f"{name}.yaml", data)
    result = run_verdict(
        "analyze", "--config", str(path), "--prometheus-url", prometheus.url,
        "--start", scenario.start.isoformat(), "--end", scenario.end.isoformat(),
        "--output", "json",
    )
    return result.returncode, json.loads(result.stdout) if result.stdout.strip() else {}


def test_a_canary_whose_series_stop_is_no_data_not_a_pass(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    code, doc = _analyze(prometheus, tmp_path, "canary-stops")
    assert doc["verdict"] != "pass" and code != 0, doc.get("reason")
    statuses = {m["name"]: m["verdict"] for m in doc["metrics"]}
    assert set(statuses.values()) == {"no data"}, statuses
    assert all("no canary request in the last" in m["reason"] for m in doc["metrics"])


def test_missing_scrapes_that_resume_are_not_frozen(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    # the canary's scrapes are missing for 2.5 minutes, then come back: the final look has
    # all the data, and the 5 % error canary fails as it should
    code, doc = _analyze(prometheus, tmp_path, "missing-scrapes")
    assert code == 1 and doc["verdict"] == "fail", doc.get("reason")


def test_quiet_canary_needs_more_than_two_quiet_intervals_and_expected_traffic() -> None:
    busy = RatioSeries(bad=np.zeros(10), total=np.full(10, 100.0))
    quiet = np.array([50.0] * 6 + [0.0] * 4)
    canary = RatioSeries(bad=np.zeros(10), total=quiet)
    assert quiet_canary(canary, busy, 10) is not None
    assert quiet_canary(canary, busy, 6 + MAX_QUIET_INTERVALS) is None  # two quiet intervals
    assert quiet_canary(canary, busy, 6 + MAX_QUIET_INTERVALS + 1) is not None
    # the baseline got nothing either: nobody sends requests, nothing is frozen
    idle = RatioSeries(bad=np.zeros(10), total=np.array([100.0] * 6 + [0.0] * 4))
    assert quiet_canary(canary, idle, 10) is None
    # a canary at 0.1 request an interval: four empty intervals are ordinary
    rare = RatioSeries(bad=np.zeros(10), total=np.array([1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
    assert quiet_canary(rare, busy, 10) is None


def test_the_stopped_canary_counts_are_frozen_in_prometheus(prometheus: PrometheusServer) -> None:
    # precondition of the first test, read through the source: the counts stop at minute 25
    from metrics.prometheus import PrometheusSource
    from metrics.promql import BUILTIN_TEMPLATES

    scenario = prometheus.scenarios["canary-stops"]
    series = PrometheusSource(prometheus.url).fetch(
        BUILTIN_TEMPLATES["istio-error-rate"], Version.CANARY, scenario.canary_matchers,
        scenario.window(),
    )
    assert isinstance(series, RatioSeries)
    assert series.total[:24].min() > 0 and series.total[26:].max() == 0

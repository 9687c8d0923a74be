"""A raw read (each counter's samples read once per window) is checked against Prometheus' own
`increase()`, and a disagreement is logged as a warning. The check compares like with like: a
window that runs past a series' last samples (pods gone, or `--end` omitted on data that ended)
raises no warning on Prometheus 2.x, where the counts agree (real Prometheus, `canary-stops`)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import structlog

from analyzer.analysis import run_analysis
from analyzer.spec import parse_analysis, plan_analysis
from metrics.prometheus import PrometheusSource
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import RatioSeries, Version, Window
from tests.conftest import PrometheusServer
from tests.helpers import example_analysis, run_verdict, write_analysis

pytestmark = pytest.mark.prometheus

SCENARIO = "canary-stops"
WARNING = "raw samples give other counts"


def _analysis(prometheus: PrometheusServer) -> dict[str, object]:
    scenario = prometheus.scenarios[SCENARIO]
    data = example_analysis()
    data.pop("prometheus", None)
    data.update(canary=dict(scenario.canary_matchers), baseline=dict(scenario.baseline_matchers))
    return data


@pytest.mark.parametrize("with_end", [True, False], ids=["end-given", "end-omitted"])
def test_analyze_past_the_last_samples_gives_no_raw_read_warning(
    prometheus: PrometheusServer, tmp_path: Path, with_end: bool
) -> None:
    # the canary's series stop 25 minutes in; without --end the window runs to now, past
    # every series' last sample (the scenarios end 30 minutes before the session started)
    scenario = prometheus.scenarios[SCENARIO]
    path = write_analysis(tmp_path / "stops.yaml", _analysis(prometheus))
    end = ("--end", scenario.end.isoformat()) if with_end else ()
    result = run_verdict(
        "analyze", "--config", str(path), "--prometheus-url", prometheus.url,
        "--start", scenario.start.isoformat(), *end, "--output", "json",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert WARNING not in result.stderr
    assert "one query a look" not in result.stderr
    doc = json.loads(result.stdout)
    assert {m["verdict"] for m in doc["metrics"]} == {"no data"}  # frozen canary, as before
    window = doc["window"]  # the look interval, and the window's length apart
    assert window["intervalSeconds"] == 30
    if with_end:
        assert window["seconds"] == 40 * 60 and window["looks"] == 80


def test_a_canary_loop_over_a_stopped_canary_keeps_reading_raw_samples(
    prometheus: PrometheusServer,
) -> None:
    # one source for every look, as `verdict canary run` has: windows from the run's start,
    # one interval longer at each look, through the canary's stop and past the data's end
    scenario = prometheus.scenarios[SCENARIO]
    plan = plan_analysis(parse_analysis(_analysis(prometheus), "stops.yaml"))
    source = PrometheusSource(prometheus.url)
    step = timedelta(seconds=plan.interval)
    with structlog.testing.capture_logs() as logs:
        for look in range(3, 100, 7):
            window = Window(scenario.start, scenario.start + step * look, step)
            run_analysis(plan, source, window)
    assert not [e for e in logs if WARNING in e["event"]]
    assert not source.raw_reads_disagree


def test_raw_counts_of_a_stopped_canary_equal_one_query_a_look(
    prometheus: PrometheusServer,
) -> None:
    scenario = prometheus.scenarios[SCENARIO]
    window = Window(scenario.start, scenario.end + timedelta(minutes=10), timedelta(seconds=30))
    query = BUILTIN_TEMPLATES["istio-error-rate"]
    raw = PrometheusSource(prometheus.url).fetch(
        query, Version.CANARY, scenario.canary_matchers, window
    )
    instant = PrometheusSource(prometheus.url, range_read_from=10_000).fetch(
        query, Version.CANARY, scenario.canary_matchers, window
    )
    assert isinstance(raw, RatioSeries) and isinstance(instant, RatioSeries)
    assert raw.total[:40].sum() > 0
    np.testing.assert_allclose(raw.total, instant.total)
    np.testing.assert_allclose(raw.bad, instant.bad)

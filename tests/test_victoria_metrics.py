"""Every real-Prometheus scenario (`tests/promdata.py`) judged by `verdict analyze` on a real
VictoriaMetrics holding the same samples: the same verdicts and the same counts as on
Prometheus, no warning, and the raw read (the fast path) used throughout.

VictoriaMetrics' `increase()` does not extrapolate, starts from the sample before its range and
counts a series born in the range from 0; its ranges leave out their start. The raw read asks for
ranges whose start both kinds of store hold, counts the samples with Prometheus' arithmetic, and
checks them, on VictoriaMetrics, against its `increase_prometheus()` (the plain difference of the
same samples): `metrics.prometheus.PrometheusSource._judge`. A store that really lost samples
still makes the check warn, on either store.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from analyzer.analysis import run_analysis
from analyzer.render import report_json
from analyzer.spec import parse_analysis, plan_analysis
from metrics.prometheus import PrometheusSource
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import RatioSeries, Version, Window
from tests.conftest import PrometheusServer
from tests.helpers import run_verdict, scenario_analysis, write_analysis
from tests.store_proxy import StoreProxy
from tests.victoria import VictoriaServer, victoria  # noqa: F401  (the fixture)

pytestmark = pytest.mark.prometheus

SCENARIOS = (
    "healthy", "error-regression", "latency-regression", "low-traffic", "no-canary",
    "counter-reset", "scrape-offset", "nan-sample", "fresh-canary", "missing-scrapes",
    "canary-stops", "young-busy", "shared-incident",
)  # fmt: skip
WARNING = "raw samples give other counts"
# the figures of each version a metric shows (`verdict analyze --output json`)
FIGURES = ("requests", "bad", "rate", "seconds", "quantile")


def test_the_scenarios_tested_here_are_all_the_shared_ones(prometheus: PrometheusServer) -> None:
    assert set(SCENARIOS) == set(prometheus.scenarios)


def _analyze(path: Path, url: str, scenario: Any) -> tuple[int, dict[str, Any], str]:
    result = run_verdict(
        "analyze", "--config", str(path), "--prometheus-url", url,
        "--start", scenario.start.isoformat(), "--end", scenario.end.isoformat(),
        "--output", "json",
    )  # fmt: skip
    return result.returncode, json.loads(result.stdout), result.stderr


def _warnings(stderr: str) -> list[str]:
    lines = (line for line in stderr.splitlines() if line.startswith("{"))
    return [line for line in lines if json.loads(line).get("level") in ("warning", "error")]


def _figures(doc: dict[str, Any]) -> dict[str, Any]:
    return {
        m["name"]: {
            version: {k: m[version][k] for k in FIGURES if k in m[version]}
            for version in ("canary", "baseline")
            if version in m
        }
        for m in doc["metrics"]
    }


@pytest.mark.parametrize("name", SCENARIOS)
def test_victoria_metrics_gives_prometheus_verdicts_and_counts_quietly_on_the_fast_path(
    prometheus: PrometheusServer,
    victoria: VictoriaServer,  # noqa: F811
    tmp_path: Path,
    name: str,
) -> None:
    scenario = prometheus.scenarios[name]
    path = write_analysis(tmp_path / f"{name}.yaml", scenario_analysis(name, scenario))
    on_prometheus = _analyze(path, prometheus.url, scenario)
    with StoreProxy(upstream=victoria.url) as counting:
        on_victoria = _analyze(path, counting.url, scenario)
    code, doc, stderr = on_victoria
    assert code == on_prometheus[0], stderr
    assert doc["verdict"] == on_prometheus[1]["verdict"]
    assert doc["score"] == on_prometheus[1]["score"]
    assert [(m["name"], m["verdict"]) for m in doc["metrics"]] == [
        (m["name"], m["verdict"]) for m in on_prometheus[1]["metrics"]
    ]
    assert doc["window"] == on_prometheus[1]["window"]
    got, expected = _figures(doc), _figures(on_prometheus[1])
    if name == "nan-sample":
        # VictoriaMetrics drops a NaN sample (the broken scrape), which Prometheus keeps and
        # Verdict leaves out with the two intervals it spoils: on VictoriaMetrics the ratio
        # metrics count those intervals, as the latency histogram (no NaN) does on both stores
        every = expected["latency-p99"]["canary"]["requests"]
        for metric in ("error-rate", "success-rate"):
            assert expected[metric]["canary"]["requests"] < every
            assert got[metric]["canary"]["requests"] == every
            del got[metric]["canary"], expected[metric]["canary"]
    assert got == expected
    assert _warnings(stderr) == [], stderr
    # the fast path: each counter's raw samples read once, not one increase() a look (80 a
    # counter and version); a few remain: the check's, the one-look pre-run window's
    asked = counting.queries()
    one_a_look = [q for q in asked if q.startswith("(sum") and "increase(" in q]
    assert len(one_a_look) < 10, one_a_look
    assert any(q.endswith("]") and "increase" not in q for q in asked)  # raw-sample pages


def test_after_the_check_a_short_window_is_also_read_raw_and_counted_as_prometheus_counts(
    prometheus: PrometheusServer,
    victoria: VictoriaServer,  # noqa: F811
) -> None:
    # scrapes off the interval bounds: Prometheus extrapolates, VictoriaMetrics' increase()
    # does not; a window of 2 looks is asked with one instant query a look by default
    scenario = prometheus.scenarios["scrape-offset"]
    query = BUILTIN_TEMPLATES["istio-error-rate"]
    step = timedelta(seconds=30)
    long_window = Window(scenario.start, scenario.end, step)
    later = scenario.start + 20 * step  # not a start the long window's cached looks share
    short = Window(later, later + 2 * step, step)
    matchers = scenario.canary_matchers
    with StoreProxy(upstream=victoria.url) as counting:
        source = PrometheusSource(counting.url)
        with structlog.testing.capture_logs() as logs:
            source.fetch(query, Version.CANARY, matchers, long_window)
        assert source.increase_differs and not source.raw_reads_disagree
        assert not [e for e in logs if e["log_level"] == "warning"]
        before = len(counting.queries())
        on_victoria = source.fetch(query, Version.CANARY, matchers, short)
        asked = counting.queries()[before:]
    assert asked and not [q for q in asked if "increase" in q]
    on_prometheus = PrometheusSource(prometheus.url).fetch(query, Version.CANARY, matchers, short)
    assert isinstance(on_victoria, RatioSeries) and isinstance(on_prometheus, RatioSeries)
    assert on_victoria.total.tolist() == pytest.approx(on_prometheus.total.tolist(), rel=1e-9)
    assert on_victoria.total.sum() != round(on_victoria.total.sum())  # extrapolated, as there


def test_prometheus_increase_agrees_with_the_raw_read_without_the_second_look(
    prometheus: PrometheusServer,
) -> None:
    scenario = prometheus.scenarios["scrape-offset"]
    with StoreProxy(upstream=prometheus.url) as counting:
        source = PrometheusSource(counting.url)
        source.fetch(
            BUILTIN_TEMPLATES["istio-error-rate"], Version.CANARY, scenario.canary_matchers,
            scenario.window(timedelta(seconds=30)),
        )  # fmt: skip
    assert not source.increase_differs and not source.raw_reads_disagree
    assert not [q for q in counting.queries() if "increase_prometheus" in q]


@pytest.mark.parametrize("store", ["prometheus", "victoria-metrics"])
def test_a_store_whose_raw_samples_lost_a_series_still_warns_and_reads_one_query_a_look(
    prometheus: PrometheusServer,
    victoria: VictoriaServer,  # noqa: F811
    store: str,
) -> None:
    # raw-sample answers without the 503 series: the samples read are not the store's
    upstream = prometheus.url if store == "prometheus" else victoria.url
    scenario = prometheus.scenarios["error-regression"]
    plan = plan_analysis(parse_analysis(scenario_analysis("lossy", scenario), "lossy.yaml"))
    window = Window(scenario.start, scenario.end, timedelta(seconds=plan.interval))
    with StoreProxy(upstream=upstream, drop_series=("response_code", "503")) as lossy:
        source = PrometheusSource(lossy.url)
        with structlog.testing.capture_logs() as logs:
            report = run_analysis(plan, source, window)
    assert [e for e in logs if WARNING in e["event"] and e["log_level"] == "warning"]
    assert source.raw_reads_disagree and not source.increase_differs
    # from then on one instant query a look (vectors, which the proxy leaves whole): the errors
    # are all counted and the regression fails, as on the store itself
    direct = run_analysis(plan, PrometheusSource(upstream), window)
    assert str(report.verdict) == str(direct.verdict) == "fail"
    assert _figures(report_json(report)) == _figures(report_json(direct))
    assert _figures(report_json(report))["error-rate"]["canary"]["bad"] > 1000

"""A ratio's part that answers nothing while its total has requests is "no data", never zero
bad requests (real Prometheus, `FaultProxy` emptying only the canary's 5xx query).

The game-day case: the canary of `error-regression` answers 5 % of its requests with a 503, but
its 5xx query comes back empty while its totals answer normally. Read as zero errors, an
error-rate analysis passes it. The total is the part's witness: the total's series with a 5xx
`response_code` had the samples the 5xx query counts, so its empty answer lost data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from fastapi.testclient import TestClient

from analyzer.api import PrometheusSources, ServeSettings, create_app
from analyzer.runs.store import open_store
from analyzer.spec import AnalysisSpec, parse_analysis
from metrics.errors import PartMissing
from metrics.prometheus import PrometheusSource
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import RatioSeries, Version, Window
from tests.canary_world import install, live_traffic, rollout_file, written_weights
from tests.conftest import PrometheusServer
from tests.helpers import run_verdict, scenario_analysis, write_analysis
from tests.kube_server import KubeServer
from tests.live_exporter import Version as Traffic
from tests.reliability.fault_proxy import Fault, FaultProxy
from tests.test_canary_run_live import finish, start
from tests.test_serve_api import Clock, body, minutes

pytestmark = pytest.mark.prometheus

SCENARIO = "error-regression"
CANARY_5XX = 'response_code=~"5..",destination_service_name="error-regression-canary"'
CANARY_NOT_5XX = 'response_code!~"5..",destination_service_name="error-regression-canary"'
LIVE_CANARY_5XX = 'response_code=~"5..",destination_service_name="checkout-canary"'
ERROR_RATE_ONLY = [
    {
        "name": "error-rate",
        "template": "istio-error-rate",
        "slo": {"max": 0.005},
        "compare": {"direction": "increase", "tolerance": 0.5, "margin": 0.001},
        "critical": True,
    }
]


def _error_rate_analysis(prometheus: PrometheusServer, interval: str = "30s") -> dict[str, Any]:
    data = scenario_analysis("errors-only", prometheus.scenarios[SCENARIO])
    data.update(metrics=ERROR_RATE_ONLY, interval=interval)
    return data


def _says_the_part_is_missing(reason: str, version: str = "canary") -> bool:
    return (
        f"the {version}'s bad-request query" in reason
        and 'response_code=~"5.."' in reason
        and "answered nothing while its total has" in reason
        and "no data is never a pass" in reason
    )


def _one_look(prometheus: PrometheusServer, minutes_in: float) -> Window:
    start = prometheus.scenarios[SCENARIO].start
    end = start + minutes(minutes_in)
    return Window(start=start, end=end, step=end - start)


# --- the source ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "part", "match"),
    [("istio-error-rate", "bad", CANARY_5XX), ("istio-success-rate", "good", CANARY_NOT_5XX)],
)
def test_a_part_read_by_its_own_query_that_answers_nothing_is_missing_not_zero(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, template: str, part: str, match: str
) -> None:
    scenario = prometheus.scenarios[SCENARIO]
    window = _one_look(prometheus, 20)  # one look: the part is read beside its total
    fault_proxy.set(Fault("empty", match=match))
    with pytest.raises(PartMissing) as raised:
        PrometheusSource(fault_proxy.url).fetch(
            BUILTIN_TEMPLATES[template], Version.CANARY, scenario.canary_matchers, window
        )
    assert fault_proxy.injected["empty"] >= 1
    requests = prometheus.data[SCENARIO].canary.requests_between(window.start, window.end)
    assert raised.value.part == part
    assert raised.value.requests == pytest.approx(requests, rel=0.01)
    assert raised.value.selector.startswith("istio_requests_total{")
    assert match in raised.value.selector
    # the baseline's part was not touched: it reads as it is
    fault_proxy.clear()
    baseline = PrometheusSource(fault_proxy.url).fetch(
        BUILTIN_TEMPLATES[template], Version.BASELINE, scenario.baseline_matchers, window
    )
    assert isinstance(baseline, RatioSeries) and baseline.total.sum() > 0


def test_a_canary_that_never_answered_a_5xx_reads_zero_errors(
    prometheus: PrometheusServer,
) -> None:
    # Prometheus rightly answers nothing for the 5xx query of a version with no 5xx series at
    # all: no total series has a 5xx code, so the empty answer is zero errors, not missing data
    scenario = prometheus.scenarios["low-traffic"]
    truth = prometheus.data["low-traffic"].canary
    assert truth.errors.sum() == 0 and truth.requests.sum() > 0  # precondition: never a 5xx
    window = Window(start=scenario.start, end=scenario.end, step=scenario.end - scenario.start)
    series = PrometheusSource(prometheus.url).fetch(
        BUILTIN_TEMPLATES["istio-error-rate"], Version.CANARY, scenario.canary_matchers, window
    )
    assert isinstance(series, RatioSeries)
    assert series.total.sum() > 0
    np.testing.assert_array_equal(series.bad, np.zeros_like(series.bad))


# --- the web provider ----------------------------------------------------------------------


@pytest.fixture
def web_provider(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, tmp_path: Path
) -> Iterator[tuple[TestClient, Clock]]:
    # looks of 10-minute intervals: a look at 20 minutes reads its two intervals with one query
    # a counter, the 5xx part by its own
    spec: AnalysisSpec = parse_analysis(_error_rate_analysis(prometheus, "10m"), "errors-only")
    clock = Clock(prometheus.scenarios[SCENARIO].start)
    settings = ServeSettings()
    app = create_app(
        analyses={"errors-only": spec},
        store=open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}"),
        sources=PrometheusSources(look_budget=settings.look_budget, url=fault_proxy.url),
        clock=clock,
        settings=settings,
    )
    with TestClient(app) as client:
        yield client, clock


def test_the_web_provider_answers_no_data_when_only_the_canarys_error_query_is_empty(
    prometheus: PrometheusServer,
    fault_proxy: FaultProxy,
    web_provider: tuple[TestClient, Clock],
) -> None:
    client, clock = web_provider
    start = prometheus.scenarios[SCENARIO].start
    request = body("errors-only", start=start.isoformat())
    fault_proxy.set(Fault("empty", match=CANARY_5XX))
    clock.set(start + minutes(20))
    under = client.post("/api/v1/verdict", json=request)
    assert fault_proxy.injected["empty"] >= 1  # the fault really happened
    assert under.status_code == 200, under.text
    result = under.json()["result"]
    assert result["verdict"] == "inconclusive", result
    (error_rate,) = result["metrics"]
    assert error_rate["verdict"] == "no data"
    assert _says_the_part_is_missing(error_rate["reason"]), error_rate["reason"]
    # the fault gone, the same run sees the errors and fails
    fault_proxy.clear()
    clock.set(start + minutes(30))
    answer = client.post("/api/v1/verdict", json=request)
    assert answer.status_code == 200, answer.text
    after = answer.json()["result"]
    assert after["verdict"] == "fail", after


# --- verdict analyze -----------------------------------------------------------------------


def _analyze(
    prometheus: PrometheusServer, proxy: FaultProxy, tmp_path: Path, interval: str
) -> tuple[int, dict[str, Any]]:
    scenario = prometheus.scenarios[SCENARIO]
    path = write_analysis(
        tmp_path / f"errors-{interval}.yaml", _error_rate_analysis(prometheus, interval)
    )
    result = run_verdict(
        "analyze", "--config", str(path), "--prometheus-url", proxy.url,
        "--start", scenario.start.isoformat(),
        "--end", (scenario.start + timedelta(minutes=20)).isoformat(),
        "--output", "json",
    )  # fmt: skip
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_verdict_analyze_is_inconclusive_not_a_pass_when_only_the_canarys_error_query_is_empty(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    # two looks of 10 minutes: each look's part is read by its own query
    fault_proxy.set(Fault("empty", match=CANARY_5XX))
    code, doc = _analyze(prometheus, fault_proxy, tmp_path, "10m")
    assert fault_proxy.injected["empty"] >= 1
    assert (code, doc["verdict"]) == (3, "inconclusive"), doc
    (error_rate,) = doc["metrics"]
    assert error_rate["verdict"] == "no data"
    assert _says_the_part_is_missing(error_rate["reason"]), error_rate["reason"]
    fault_proxy.clear()
    code, doc = _analyze(prometheus, fault_proxy, tmp_path, "10m")
    assert (code, doc["verdict"]) == (1, "fail"), doc


def test_a_part_counted_from_its_totals_samples_never_asks_the_emptied_query(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    # forty looks: the totals' raw samples are read and the 5xx part is counted from them, so
    # the emptied query is never sent and the errors are seen
    fault_proxy.set(Fault("empty", match=CANARY_5XX))
    code, doc = _analyze(prometheus, fault_proxy, tmp_path, "30s")
    assert not [q for q in fault_proxy.queries if CANARY_5XX in q]
    assert (code, doc["verdict"]) == (1, "fail"), doc


# --- verdict canary run --------------------------------------------------------------------


def test_verdict_canary_run_does_not_promote_when_the_canarys_error_query_is_empty(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Traffic(error_rate=0.05)) as url:
        proxy = FaultProxy(upstream=url).start()
        try:
            proxy.set(Fault("empty", match=LIVE_CANARY_5XX))
            config = rollout_file(tmp_path / "checkout.yaml", proxy.url, stepDuration="6s")
            data = yaml.safe_load(config.read_text())
            # 15-second intervals: every look of the 18-second rollout reads its one or two
            # intervals with one query a counter, the 5xx part by its own
            data.update(metrics=ERROR_RATE_ONLY, interval="15s")
            write_analysis(config, data)
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
            code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
        finally:
            proxy.stop()
    assert proxy.injected["empty"] >= 1
    assert doc["decision"] != "promoted" and code != 0, doc["reason"]
    assert 100 not in written_weights(kube)
    (error_rate,) = doc["final"]["metrics"]
    assert error_rate["verdict"] == "no data"
    assert error_rate["reason"].startswith("error-rate: the canary's bad-request query")
    assert "answered nothing while its total has" in error_rate["reason"]

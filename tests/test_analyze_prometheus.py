"""`verdict analyze` end to end against a real Prometheus over generated scenarios."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PrometheusServer
from tests.helpers import example_analysis, run_verdict, write_analysis

pytestmark = pytest.mark.prometheus


def _config(
    prometheus: PrometheusServer, tmp_path: Path, scenario_name: str, edit: Any = None
) -> Path:
    """The embedded analysis, pointed at one scenario's canary and baseline (then `edit`ed)."""
    scenario = prometheus.scenarios[scenario_name]
    data = example_analysis()
    data["canary"] = dict(scenario.canary_matchers)
    data["baseline"] = dict(scenario.baseline_matchers)
    if edit is not None:
        edit(data)
    return write_analysis(tmp_path / f"{scenario_name}.yaml", data)


def _window(prometheus: PrometheusServer, scenario_name: str) -> list[str]:
    scenario = prometheus.scenarios[scenario_name]
    return ["--start", scenario.start.isoformat(), "--end", scenario.end.isoformat()]


def _analyze(
    prometheus: PrometheusServer,
    tmp_path: Path,
    scenario_name: str,
    *extra: str,
    url: str | None = None,
    edit: Any = None,
) -> tuple[int, dict[str, Any], str]:
    path = _config(prometheus, tmp_path, scenario_name, edit)
    result = run_verdict(
        "analyze",
        "--config",
        str(path),
        "--prometheus-url",
        url or prometheus.url,
        *_window(prometheus, scenario_name),
        "--output",
        "json",
        *extra,
    )
    doc = json.loads(result.stdout) if result.stdout.strip() else {}
    return result.returncode, doc, result.stderr


def _metric(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in doc["metrics"] if m["name"] == name)


def test_healthy_canary_passes(prometheus: PrometheusServer, tmp_path: Path) -> None:
    code, doc, err = _analyze(prometheus, tmp_path, "healthy")
    assert code == 0, (err, doc.get("reason"))
    assert doc["verdict"] == "pass" and doc["score"] == 100
    assert doc["window"]["looks"] == 80
    error_rate = _metric(doc, "error-rate")
    assert error_rate["canary"]["requests"] == pytest.approx(48000, rel=0.05)
    assert error_rate["baseline"]["requests"] == pytest.approx(144000, rel=0.05)
    assert {c["check"] for c in error_rate["checks"]} == {"slo", "trigger", "compare"}
    latency = _metric(doc, "latency-p99")
    assert 0.15 < latency["canary"]["seconds"] < 0.5


def test_error_regression_fails_on_the_critical_metric(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    code, doc, _ = _analyze(prometheus, tmp_path, "error-regression")
    assert code == 1
    assert doc["verdict"] == "fail"
    assert doc["reason"].startswith("Critical metric error-rate failed")
    m = _metric(doc, "error-rate")
    assert m["verdict"] == "fail" and m["failedAtLook"] <= 3
    assert m["canary"]["rate"] == pytest.approx(0.05, rel=0.2)
    # the statistic that decided it is in the answer
    slo = next(c for c in m["checks"] if c["check"] == "slo")
    assert slo["statistic"]["eFail"] >= slo["statistic"]["failAt"]
    assert slo["statistic"]["rate"] > slo["statistic"]["max"] == 0.005


def test_latency_regression_fails_on_p99(prometheus: PrometheusServer, tmp_path: Path) -> None:
    code, doc, _ = _analyze(prometheus, tmp_path, "latency-regression")
    assert code == 1
    m = _metric(doc, "latency-p99")
    assert m["verdict"] == "fail"
    assert m["canary"]["seconds"] > 0.5
    assert _metric(doc, "error-rate")["verdict"] != "fail"


def test_low_traffic_is_inconclusive_and_says_how_much_more(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    code, doc, _ = _analyze(prometheus, tmp_path, "low-traffic")
    assert code == 3
    assert doc["verdict"] == "inconclusive"
    assert "keep watching" in doc["reason"]
    assert "more canary requests" in _metric(doc, "success-rate")["reason"]
    assert _metric(doc, "success-rate")["moreRequestsNeeded"] > 0


def test_canary_without_series_is_no_data_never_pass(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    code, doc, _ = _analyze(prometheus, tmp_path, "no-canary")
    assert code == 3
    assert all(m["verdict"] == "no data" for m in doc["metrics"])
    assert doc["reason"].startswith("No data for error-rate, latency-p99, success-rate")


def test_counter_reset_mid_window_is_still_a_healthy_pass(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    code, doc, _ = _analyze(prometheus, tmp_path, "counter-reset")
    assert code == 0, json.dumps(_metric(doc, "error-rate"), indent=1)
    requests = _metric(doc, "error-rate")["canary"]["requests"]
    assert requests == pytest.approx(48000, rel=0.05)  # no negative or doubled counts
    compare = next(c for c in _metric(doc, "error-rate")["checks"] if c["check"] == "compare")
    assert compare["statistic"]["prerunBaselineRate"] == pytest.approx(0.0002, rel=0.5)


def test_text_output_is_a_table(prometheus: PrometheusServer, tmp_path: Path) -> None:
    path = _config(prometheus, tmp_path, "error-regression")
    result = run_verdict(
        "analyze",
        "-c",
        str(path),
        "--prometheus-url",
        prometheus.url,
        *_window(prometheus, "error-regression"),
        "--output",
        "text",
    )
    assert result.returncode == 1
    assert "verdict FAIL" in result.stdout and "error-rate (critical)" in result.stdout


def test_environment_variable_sets_the_url(prometheus: PrometheusServer, tmp_path: Path) -> None:
    def unreachable_in_file(data: dict[str, Any]) -> None:
        data["prometheus"] = {"url": "http://127.0.0.1:1"}

    path = _config(prometheus, tmp_path, "healthy", unreachable_in_file)
    result = run_verdict(
        "analyze",
        "-c",
        str(path),
        *_window(prometheus, "healthy"),
        "--output",
        "json",
        env={"VERDICT_PROMETHEUS_URL": prometheus.url},
    )
    assert result.returncode == 0, result.stderr


def test_injected_label_value_matches_nothing(prometheus: PrometheusServer, tmp_path: Path) -> None:
    def inject(data: dict[str, Any]) -> None:
        data["canary"] = {"destination_service_name": 'healthy-canary"} or vector(1) #'}

    code, doc, _ = _analyze(prometheus, tmp_path, "healthy", edit=inject)
    assert code == 3
    assert all(m["verdict"] == "no data" for m in doc["metrics"])


def test_unreachable_prometheus_exits_4(
    prometheus: PrometheusServer, tmp_path: Path, unreachable_url: str
) -> None:
    code, doc, err = _analyze(prometheus, tmp_path, "healthy", url=unreachable_url)
    assert code == 4 and doc == {}
    assert "is unreachable: connection refused" in err


def test_slow_prometheus_timeout_is_honoured(
    prometheus: PrometheusServer, tmp_path: Path, slow_prometheus: Any
) -> None:
    started = time.monotonic()
    code, _, err = _analyze(
        prometheus, tmp_path, "healthy", "--timeout", "0.5", url=slow_prometheus.url
    )
    elapsed = time.monotonic() - started
    assert code == 4
    assert "did not answer within 0.5 s" in err
    # three attempts of 0.5 s plus backoff and interpreter start, far below the 3 s delay x 3
    assert elapsed < 8.5


def test_param_placeholders_select_the_canary(prometheus: PrometheusServer, tmp_path: Path) -> None:
    def templated(data: dict[str, Any]) -> None:
        data["canary"] = {"destination_service_name": "{{ service }}-canary"}

    code, _, err = _analyze(
        prometheus, tmp_path, "healthy", "--param", "service=error-regression", edit=templated
    )
    assert code == 1, err
    code, _, err = _analyze(prometheus, tmp_path, "healthy", edit=templated)
    assert code == 2 and "needs values for service" in err


def test_an_slo_breach_both_versions_share_holds_and_says_incident_on_both_versions(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    # both versions at 0.8 % errors: beyond the 0.5 % SLO, under the default 1 % rollback trigger
    code, doc, _ = _analyze(prometheus, tmp_path, "shared-incident")
    assert code == 3, doc.get("reason")
    assert doc["verdict"] == "inconclusive"
    assert doc["reason"].startswith("Hold: incident on both versions")
    m = _metric(doc, "error-rate")
    assert m["verdict"] == "inconclusive" and m["held"] and m["sharedIncident"]
    assert "incident on both versions" in m["reason"]
    slo = next(c for c in m["checks"] if c["check"] == "slo")
    assert slo["outcome"] == "hold" and slo["statistic"]["eFail"] >= slo["statistic"]["failAt"]
    trigger = next(c for c in m["checks"] if c["check"] == "trigger")
    assert trigger["outcome"] != "fail" and trigger["statistic"]["max"] == 0.01

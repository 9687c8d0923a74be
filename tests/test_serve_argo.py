"""Verdict as Argo Rollouts sees it: the shipped ClusterAnalysisTemplate validates against the
real CRD schema, and its metric, run against `verdict serve` over real Prometheus data, gives
the measurement and metric phases a rollout needs (tests/argo_client.py evaluates them as Argo
does)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from analyzer.api import ServeSettings
from tests.argo_client import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    SUCCESSFUL,
    Limits,
    Measurement,
    WebMetric,
    evaluate,
    metric_phase,
)
from tests.conftest import PrometheusServer
from tests.crds import validate
from tests.helpers import REPO
from tests.test_serve_api import Clock, make_app, minutes, serving

EXAMPLES = REPO / "examples" / "argo"
TEMPLATE = EXAMPLES / "cluster-analysis-template.yaml"
ROLLOUT = EXAMPLES / "rollout.yaml"
TOKEN = "argo-test-token"


def _validate(document: dict[str, Any], crd_file: str) -> None:
    validate(document, crd_file)


def test_the_cluster_analysis_template_is_valid_for_the_crd() -> None:
    template = yaml.safe_load(TEMPLATE.read_text())
    _validate(template, "cluster-analysis-template-crd.yaml")
    assert template["kind"] == "ClusterAnalysisTemplate"


def test_the_strict_schema_catches_typos_and_accepts_int_or_string() -> None:
    template = yaml.safe_load(TEMPLATE.read_text())
    as_strings = copy.deepcopy(template)
    as_strings["spec"]["metrics"][0]["count"] = "{{ args.count }}"
    _validate(as_strings, "cluster-analysis-template-crd.yaml")
    typo = copy.deepcopy(template)
    typo["spec"]["metrics"][0]["failureLimt"] = 0
    with pytest.raises(AssertionError, match="failureLimt"):
        _validate(typo, "cluster-analysis-template-crd.yaml")


def test_the_example_rollout_is_valid_and_passes_every_template_arg() -> None:
    rollout = yaml.safe_load(ROLLOUT.read_text())
    _validate(rollout, "rollout-crd.yaml")
    template = yaml.safe_load(TEMPLATE.read_text())
    required = {
        a["name"] for a in template["spec"]["args"] if "value" not in a and "valueFrom" not in a
    }
    steps = [
        s["analysis"] for s in rollout["spec"]["strategy"]["canary"]["steps"] if "analysis" in s
    ]
    assert steps
    for step in steps:
        assert step["templates"] == [{"templateName": "verdict", "clusterScope": True}]
        given = {a["name"]: a for a in step["args"]}
        assert required <= set(given)
        assert given["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
        assert given["stable-hash"]["valueFrom"] == {"podTemplateHashValue": "Stable"}
        assert given["rollout"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_the_template_limits_stop_at_the_first_pass_or_fail_and_pause_when_undecided() -> None:
    limits = Limits.from_template_metric(yaml.safe_load(TEMPLATE.read_text())["spec"]["metrics"][0])
    assert metric_phase([INCONCLUSIVE, INCONCLUSIVE, SUCCESSFUL], limits) == SUCCESSFUL
    assert metric_phase([INCONCLUSIVE, FAILED], limits) == FAILED
    assert metric_phase([INCONCLUSIVE] * (limits.count - 1), limits) == "Running"
    assert metric_phase([INCONCLUSIVE] * limits.count, limits) == INCONCLUSIVE  # paused
    errors = limits.consecutive_error_limit
    assert metric_phase([INCONCLUSIVE] + [ERROR] * errors, limits) == "Running"
    assert metric_phase([INCONCLUSIVE] + [ERROR] * (errors + 1), limits) == ERROR
    assert metric_phase([ERROR] * errors + [INCONCLUSIVE] + [ERROR] * errors, limits) == "Running"


def _metric(base_url: str, scenario: str) -> WebMetric:
    """The template's metric with args filled in as Argo would for the scenario's rollout."""
    template = yaml.safe_load(TEMPLATE.read_text())
    args = {a["name"]: a.get("value") for a in template["spec"]["args"]}
    args.update(
        {
            "verdict-url": base_url,
            "namespace": "default",
            "rollout": scenario,
            "canary-hash": "7d9f8c6b5",
            "stable-hash": "5c4b3a291",
            "api-token": TOKEN,
        }
    )
    text = yaml.safe_dump(template["spec"]["metrics"][0])
    text = re.sub(r"\{\{\s*args\.([a-z-]+)\s*\}\}", lambda m: str(args[m.group(1)]), text)
    return WebMetric.from_template_metric(yaml.safe_load(text))


@pytest.fixture
def verdict_url(prometheus: PrometheusServer, tmp_path: Path) -> Iterator[tuple[str, Clock]]:
    clock = Clock(prometheus.scenarios["healthy"].start)
    app = make_app(
        prometheus,
        f"sqlite:///{tmp_path / 'runs.sqlite'}",
        clock,
        settings=ServeSettings(token=TOKEN),
    )
    with serving(app) as url:
        yield url, clock


def _measure(
    metric: WebMetric, clock: Clock, start: datetime, at: list[float]
) -> list[Measurement]:
    out = []
    with httpx.Client() as client:
        for m in at:
            clock.set(start + minutes(m))
            out.append(metric.measure(client))
    return out


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("scenario", "phases", "metric"),
    [
        ("healthy", [INCONCLUSIVE, INCONCLUSIVE, SUCCESSFUL], SUCCESSFUL),
        ("error-regression", [INCONCLUSIVE, FAILED], FAILED),
        ("low-traffic", [INCONCLUSIVE, INCONCLUSIVE, INCONCLUSIVE], "Running"),
    ],
)
def test_measurement_phases_over_real_data(
    prometheus: PrometheusServer,
    verdict_url: tuple[str, Clock],
    scenario: str,
    phases: list[str],
    metric: str,
) -> None:
    url, clock = verdict_url
    web = _metric(url, scenario)
    limits = Limits.from_template_metric(yaml.safe_load(TEMPLATE.read_text())["spec"]["metrics"][0])
    start = prometheus.scenarios[scenario].start
    # the first call starts the run, then one look a minute... here every 5 or 10 minutes
    measurements = _measure(web, clock, start, [0, 5, 20][: len(phases)])
    assert [m.phase for m in measurements] == phases, [m.message for m in measurements]
    assert metric_phase([m.phase for m in measurements], limits) == metric
    assert all(m.value is not None and len(m.value) < 2048 for m in measurements)


@pytest.mark.prometheus
def test_prometheus_down_is_an_error_measurement_never_failed(
    prometheus: PrometheusServer, tmp_path: Path, unreachable_url: str
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    app = make_app(
        prometheus,
        f"sqlite:///{tmp_path / 'runs.sqlite'}",
        clock,
        settings=ServeSettings(token=TOKEN),
        prometheus_url=unreachable_url,
    )
    with serving(app) as url:
        web = _metric(url, "healthy")
        first = web.measure()  # starts the run: no data to ask for yet
        clock.set(prometheus.scenarios["healthy"].start + minutes(20))
        second = web.measure()
    assert first.phase == INCONCLUSIVE
    assert second.phase == ERROR and "503" in second.message


@pytest.mark.prometheus
def test_a_wrong_token_is_an_error_measurement(verdict_url: tuple[str, Clock]) -> None:
    url, _ = verdict_url
    web = _metric(url, "healthy")
    wrong = WebMetric(**{**web.__dict__, "headers": {"Authorization": "Bearer nope"}})
    assert wrong.measure().phase == ERROR


def test_the_argo_evaluator_follows_the_decision_table() -> None:
    pass_body = b'{"result": {"verdict": "pass"}}'
    conditions = {
        "json_path": "{$.result}",
        "success_condition": 'result.verdict == "pass"',
        "failure_condition": 'result.verdict == "fail"',
    }
    assert evaluate(200, pass_body, **conditions).phase == SUCCESSFUL
    assert evaluate(200, pass_body, **conditions).value == '{"verdict":"pass"}'
    assert evaluate(200, b'{"result": {"verdict": "fail"}}', **conditions).phase == FAILED
    assert evaluate(200, b'{"result": {"verdict": "x"}}', **conditions).phase == INCONCLUSIVE
    assert evaluate(503, b'{"error": {}}', **conditions).phase == ERROR
    assert evaluate(200, b'{"other": 1}', **conditions).phase == ERROR  # no JSONPath match
    only_success = {"json_path": "{$.result}", "success_condition": conditions["success_condition"]}
    assert evaluate(200, b'{"result": {"verdict": "x"}}', **only_success).phase == FAILED
    assert evaluate(200, b"{}").phase == SUCCESSFUL  # no conditions at all

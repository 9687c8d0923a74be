"""The Grafana dashboard the chart ships (charts/verdict/dashboards/verdict.json): valid for the
current dashboard model, its queries are PromQL a real Prometheus accepts over metrics Verdict
exports, and its annotation queries find the annotations Verdict writes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import requests

from analyzer.notify import (
    BackgroundNotifier,
    EventKind,
    GrafanaAnnotations,
    GrafanaSettings,
    RetryPolicy,
    RunEvent,
    RunInfo,
    Target,
)
from analyzer.runs import Telemetry
from strategies.argo import ControllerTelemetry
from tests.conftest import PrometheusServer
from tests.grafana_server import GrafanaStandIn
from tests.helpers import REPO

DASHBOARD = REPO / "charts" / "verdict" / "dashboards" / "verdict.json"
SCHEMA = REPO / "tests" / "data" / "grafana" / "dashboard.jsonschema.json"


def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def expressions() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_the_dashboard_is_valid_for_the_current_dashboard_model() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [
        f"{e.json_path}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(dashboard())
    ]
    assert errors == []
    data = dashboard()
    assert (
        data["schemaVersion"]
        == schema["definitions"]["Dashboard"]["properties"]["schemaVersion"]["default"]
    )
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_reads_a_metric_verdict_exports() -> None:
    telemetry = Telemetry(lambda: 0)
    ControllerTelemetry(telemetry.registry)  # serve's one /metrics holds both
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    exported = {
        family.name + suffix
        for family in telemetry.registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }
    used = {n for e in expressions() for n in re.findall(r"verdict_[a-z_]+", e)}
    assert used  # the dashboard shows Verdict's own metrics
    assert used <= exported, used - exported


@pytest.mark.prometheus
def test_every_query_is_promql_prometheus_accepts(prometheus: PrometheusServer) -> None:
    for expr in expressions():
        query = expr.replace("$__rate_interval", "1m").replace("$analysis", ".*")
        answer = requests.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=10)
        assert answer.status_code == 200 and answer.json()["status"] == "success", (
            expr,
            answer.text,
        )


def test_the_annotation_queries_find_what_verdict_writes(grafana: GrafanaStandIn) -> None:
    queries = {
        a["name"]: a["target"]["tags"]
        for a in dashboard()["annotations"]["list"]
        if a.get("target", {}).get("type") == "tags"
    }
    assert set(queries) == {"Verdict decisions", "Verdict steps", "Verdict runs (web provider)"}
    for query in dashboard()["annotations"]["list"]:
        assert query["datasource"] == {"type": "grafana", "uid": "-- Grafana --"}
    run = RunInfo("r1", "checkout", "shop", "checkout", "canary")
    web = RunInfo("w1", "checkout", "shop", "checkout", "web")
    t0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    notifier = BackgroundNotifier(
        [Target("grafana", GrafanaAnnotations(GrafanaSettings(grafana.url, grafana.token)))],
        RetryPolicy(retries=0),
    )
    for event in (
        RunEvent(EventKind.STARTED, run, t0, step=1, weight=5),
        RunEvent(EventKind.DECISION, run, t0, step=1, weight=5, outcome="aborted", reason="x"),
        RunEvent(EventKind.STARTED, web, t0),
    ):
        notifier.post(event)
    notifier.close(timeout=10)
    assert grafana.violations == []
    found = {name: [a["id"] for a in grafana.by_tag(*tags)] for name, tags in queries.items()}
    assert found == {
        "Verdict steps": [1],
        "Verdict decisions": [2],
        "Verdict runs (web provider)": [3],
    }

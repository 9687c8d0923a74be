"""Hostile input: a PromQL-injection corpus through every placeholder value, property tests of
the analysis-file parser (hypothesis), and the whole API fuzzed from its OpenAPI document
(schemathesis), with more examples than the quick fuzz test in tests/test_serve_fuzz.py."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from analyzer.api import PrometheusSources, ServeSettings
from analyzer.spec import AnalysisSpec, SpecError, load_analysis, parse_analysis
from tests.conftest import PrometheusServer
from tests.helpers import example_analysis
from tests.reliability.fault_proxy import FaultProxy
from tests.test_serve_api import Clock, body, make_app, minutes
from tests.test_serve_fuzz import errors_are_json

INJECTIONS = [
    '"',
    "\\",
    '\\"',
    '"}',
    'x"} or vector(1) #',
    'x"} or on() vector(1)',
    '"} or up{job=~".+',
    'x\\"} or vector(1) #',
    ".*",
    ".+",
    '{__name__=~".+"}',
    "') or 1==1 --",
    "`",
    "$(id)",
    "{{ namespace }}",
    "{{selector}}",
    "${HOME}",
    "%22%7D%20or%20vector(1)",
    "healthy",  # a real service name (placeholder + "-canary" must still be literal)
    "🙂 ünïcödé",
    "a" * 253,
    " ",
    "x}[5m]) or vector(1) #",
    "\u202etxt",
]
REFUSED = ["a\nb", "\x1b[31m", "\x00", "a" * 254]


@pytest.fixture
def app_client(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, tmp_path: Path
) -> tuple[TestClient, Clock]:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(20))
    settings = ServeSettings(look_budget=8.0)
    app = make_app(
        prometheus,
        f"sqlite:///{tmp_path / 'r.sqlite'}",
        clock,
        settings=settings,
        sources=PrometheusSources(look_budget=settings.look_budget, url=fault_proxy.url),
    )
    return TestClient(app), clock


@pytest.mark.prometheus
def test_promql_injection_through_placeholder_values_stays_a_label_value(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, app_client: tuple[TestClient, Clock]
) -> None:
    """Each value fills `{{ service }}` of the templated analysis. The queries Prometheus gets
    are accepted (no rejected query, no 500), and the escaped value matches no series: the
    canary has no data, so the answer is never a pass."""
    client, _ = app_client
    start = prometheus.scenarios["healthy"].start.isoformat()
    with client:
        for i, value in enumerate(INJECTIONS):
            request = body("templated", f"inj{i:03d}", start=start, service=value)
            answer = client.post("/api/v1/verdict", json=request)
            assert answer.status_code == 200, (value, answer.text)
            result = answer.json()["result"]
            if value == "healthy":  # the literal value selects the real series, and only it
                assert result["verdict"] == "pass", result
                continue
            assert result["verdict"] != "pass", (value, result)
            assert all(not m["canary"].get("requests") for m in result["metrics"]), result
            get = client.get("/api/v1/verdict", params={**request, "canaryHash": f"g{i:03d}"})
            assert get.status_code == 200, (value, get.text)
        for value in REFUSED:
            answer = client.post("/api/v1/verdict", json=body("templated", service=value))
            assert answer.status_code == 422, (value, answer.text)
    assert len(fault_proxy.queries) > len(INJECTIONS), "the looks asked Prometheus"


# --- the analysis-file parser -------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
_KEYS = [
    "name",
    "prometheus",
    "canary",
    "baseline",
    "interval",
    "alpha",
    "metrics",
    "scoring",
    "steps",
]


def _valid() -> dict[str, Any]:
    data = example_analysis()
    data["prometheus"] = {"url": "http://127.0.0.1:9090"}
    return data


@settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(key=st.sampled_from(_KEYS), value=_json)
def test_any_value_for_any_key_is_a_spec_or_a_spec_error(key: str, value: Any) -> None:
    data = _valid()
    data[key] = value
    try:
        spec = parse_analysis(data, "fuzz.yaml")
    except SpecError as error:
        assert str(error).startswith("fuzz.yaml"), error
        return
    assert isinstance(spec, AnalysisSpec)


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(
    metric_key=st.sampled_from(
        ["name", "template", "slo", "compare", "critical", "quantile", "query", "weight"]
    ),
    value=_json,
)
def test_any_value_inside_a_metric_is_a_spec_or_a_spec_error(metric_key: str, value: Any) -> None:
    data = _valid()
    data["metrics"][0][metric_key] = value
    with contextlib.suppress(SpecError):
        parse_analysis(data, "fuzz.yaml")


@settings(
    max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
@given(
    raw=st.binary(max_size=400)
    | st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_any_file_content_is_a_spec_or_a_spec_error(raw: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "a.yaml"
    path.write_bytes(raw)
    try:
        load_analysis(path)
    except SpecError as error:
        assert str(path) in str(error)


def test_yaml_alias_bombs_are_refused_quickly(tmp_path: Path) -> None:
    levels = ['a0: &a0 ["x","x","x","x","x","x","x","x","x"]']
    levels += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\nname: *a8\n")
    with pytest.raises(SpecError):
        load_analysis(path)


def test_a_valid_file_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(_valid()))
    assert load_analysis(path).name == "checkout"
    assert json.dumps(load_analysis(path).model_dump(mode="json"))


# --- the API from its OpenAPI document ----------------------------------------------------


@pytest.fixture
def hostile_schema(prometheus: PrometheusServer, tmp_path: Path) -> Any:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(20))
    app = make_app(prometheus, f"sqlite:///{tmp_path / 'runs.sqlite'}", clock)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("hostile_schema")


@pytest.mark.prometheus
@schema.parametrize()
@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_every_endpoint_under_hostile_input_never_answers_500(case: Any) -> None:
    response = case.call()
    case.validate_response(response, checks=[not_a_server_error, errors_are_json])

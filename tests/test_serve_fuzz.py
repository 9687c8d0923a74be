"""Fuzz the HTTP API from its own OpenAPI document (schemathesis, bounded and deterministic):
no answer is a server error, every error answer is a JSON `{"error": {code, message}}`, and
every answer's status, content type and body are the documented ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import PrometheusServer
from tests.test_serve_api import Clock, make_app, minutes

pytestmark = pytest.mark.prometheus

_API_PATHS = ("/api/", "/readyz")


@pytest.fixture
def api_schema(prometheus: PrometheusServer, tmp_path: Path) -> Any:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(20))
    app = make_app(prometheus, f"sqlite:///{tmp_path / 'runs.sqlite'}", clock)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


def errors_are_json(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx/5xx of the API is `{"error": {"code": str, "message": str, ...}}`."""
    if response.status_code < 400:
        return None
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), (
        response.headers
    )
    document = json.loads(response.content)
    error = document.get("error")
    assert isinstance(error, dict), document
    assert isinstance(error.get("code"), str) and error["code"], document
    assert isinstance(error.get("message"), str) and error["message"], document
    return None


@schema.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_never_fails_and_always_answers_json_errors(case: Any) -> None:
    response = case.call()
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            errors_are_json,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )

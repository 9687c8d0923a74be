"""Hostile bodies never reach the store and never answer 500: size, key count, lone surrogates,
extreme dates are refused with 413/422 JSON errors, and a stored run stays readable."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from analyzer.runs.store import open_store
from tests.conftest import PrometheusServer
from tests.test_serve_api import Clock, body, make_app, minutes, serving

pytestmark = pytest.mark.prometheus


@pytest.fixture
def client(prometheus: PrometheusServer, tmp_path: Path) -> Iterator[TestClient]:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    with TestClient(make_app(prometheus, f"sqlite:///{tmp_path / 'r.sqlite'}", clock)) as c:
        yield c


def _error(answer: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == code and error["message"], error
    return dict(error)


def test_a_10_mb_body_answers_413_and_nothing_is_stored(client: TestClient) -> None:
    extras = {f"k{i}": "v" * 200 for i in range(48_000)}
    answer = client.post("/api/v1/verdict", json=body("healthy", **extras))
    _error(answer, 413, "body_too_large")
    assert client.get("/api/v1/runs").json()["runs"] == []


def test_a_chunked_body_over_the_cap_answers_413(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    app = make_app(prometheus, f"sqlite:///{tmp_path / 'r.sqlite'}", clock)

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        yield b'{"analysis":"healthy","pad":"'
        for _ in range(64):
            yield b"x" * 1024
        yield b'"}'

    with serving(app) as url:
        answer = httpx.post(f"{url}/api/v1/verdict", content=chunks(), timeout=10)
    _error(answer, 413, "body_too_large")


def test_too_many_extra_keys_answer_422(client: TestClient) -> None:
    extras = {f"k{i}": "v" for i in range(100)}
    _error(client.post("/api/v1/verdict", json=body("healthy", **extras)), 422, "too_many_fields")
    query = {**body("healthy"), **extras}
    _error(client.get("/api/v1/verdict", params=query), 422, "too_many_fields")


@pytest.mark.parametrize(
    "document",
    [
        '{"analysis":"healthy","namespace":"default","rollout":"web","canaryHash":"abc123",'
        '"stableHash":"def456","service":"\\ud800"}',
        '{"analysis":"healthy","namespace":"default","rollout":"web","canaryHash":"abc123",'
        '"stableHash":"def456","\\udfff":"x"}',
        '{"analysis":"\\ud800","namespace":"default","rollout":"web","canaryHash":"abc123",'
        '"stableHash":"def456"}',
    ],
)
def test_a_lone_surrogate_is_refused_and_runs_stay_readable(
    client: TestClient, document: str
) -> None:
    answer = client.post(
        "/api/v1/verdict", content=document, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] in ("invalid_field", "invalid_body")
    assert client.get("/api/v1/runs").status_code == 200


def test_a_run_stored_with_a_surrogate_is_still_served_as_valid_json(
    client: TestClient, tmp_path: Path
) -> None:
    """A store written before the check (or by hand) must not turn into a 500 forever."""
    first = client.post("/api/v1/verdict", json=body("healthy")).json()["result"]
    store = open_store(f"sqlite:///{tmp_path / 'r.sqlite'}")
    store.update(
        first["run"]["id"], lambda run: replace(run, params={**run.params, "service": "x\ud800"})
    )
    answer = client.get(f"/api/v1/runs/{first['run']['id']}")
    assert answer.status_code == 200
    assert json.loads(answer.content)["params"]["service"] == "x\ud800"


@pytest.mark.parametrize(
    "start",
    [
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "9999-12-31T23:59:59Z",
        "1900-01-01T00:00:00Z",
        "2026-02-30T10:00:00Z",
    ],
)
def test_extreme_start_dates_answer_422(client: TestClient, start: str) -> None:
    error = _error(
        client.post("/api/v1/verdict", json=body("healthy", start=start)), 422, "invalid_start"
    )
    assert error["field"] == "start"

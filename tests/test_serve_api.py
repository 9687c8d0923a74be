"""`verdict serve`'s HTTP API against a real Prometheus over the generated scenarios.

The scenarios lie in the past, so the app gets a clock the test moves: looks at the scenario's
start + 5 min, + 10 min, ... fall inside its data. The helpers here (`Clock`, `analyses_for`,
`make_app`, `serving`) are shared by the other `test_serve_*` modules.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
import yaml
from fastapi import FastAPI
from fastapi.testclient import TestClient

from analyzer import logs
from analyzer.api import PrometheusSources, ServeSettings, create_app
from analyzer.clock import parse_time as parse_start
from analyzer.runs import RunKey, metric_to_dict
from analyzer.runs.store import open_store
from analyzer.spec import AnalysisSpec, parse_analysis
from analyzer.verdicts import MetricReport, MetricStatus
from metrics.prometheus import PrometheusSource
from metrics.source import MetricQuery, Series, Version, Window
from tests.conftest import PrometheusServer, free_port
from tests.helpers import REPO, example_analysis

pytestmark = pytest.mark.prometheus

SCENARIOS = ("healthy", "error-regression", "low-traffic", "latency-regression")
ARGO_ANALYSIS = REPO / "examples" / "argo" / "analysis.yaml"


class Clock:
    """A clock the test sets (thread-safe)."""

    def __init__(self, now: datetime) -> None:
        self._now = now
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, now: datetime) -> None:
        with self._lock:
            self._now = now


def analyses_for(prometheus: PrometheusServer) -> dict[str, AnalysisSpec]:
    """One analysis per scenario (named after it), `templated` (canary/baseline services from a
    `{{ service }}` placeholder) and `checkout` (examples/argo/analysis.yaml)."""
    out: dict[str, AnalysisSpec] = {}
    for name in SCENARIOS:
        scenario = prometheus.scenarios[name]
        data = example_analysis()
        data.update(
            name=name,
            prometheus={"url": prometheus.url},
            canary=dict(scenario.canary_matchers),
            baseline=dict(scenario.baseline_matchers),
        )
        out[name] = parse_analysis(data, name)
    templated = example_analysis()
    templated.update(
        name="templated",
        prometheus={"url": prometheus.url},
        canary={"destination_service_name": "{{ service }}-canary"},
        baseline={"destination_service_name": "{{ service }}-stable"},
    )
    out["templated"] = parse_analysis(templated, "templated")
    argo = yaml.safe_load(ARGO_ANALYSIS.read_text())
    argo["prometheus"] = {"url": prometheus.url}
    out["checkout"] = parse_analysis(argo, str(ARGO_ANALYSIS))
    return out


def make_app(
    prometheus: PrometheusServer,
    store_url: str,
    clock: Clock,
    *,
    settings: ServeSettings | None = None,
    prometheus_url: str | None = None,
    sources: Callable[[AnalysisSpec], Any] | None = None,
) -> FastAPI:
    settings = settings or ServeSettings()
    return create_app(
        analyses=analyses_for(prometheus),
        store=open_store(store_url),
        sources=sources or PrometheusSources(look_budget=settings.look_budget, url=prometheus_url),
        clock=clock,
        settings=settings,
    )


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Run `app` under uvicorn on a free loopback port in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def body(analysis: str, canary: str = "abc123", **extra: str) -> dict[str, str]:
    return {
        "analysis": analysis,
        "namespace": "default",
        "rollout": "web",
        "canaryHash": canary,
        "stableHash": "def456",
        **extra,
    }


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'runs.sqlite'}"


def _looks(
    client: TestClient | httpx.Client,
    clock: Clock,
    start: datetime,
    request: dict[str, str],
    at_minutes: list[float],
) -> list[httpx.Response]:
    answers = []
    for m in at_minutes:
        clock.set(start + minutes(m))
        answers.append(client.post("/api/v1/verdict", json=request))
    return answers


# --- verdicts over real data --------------------------------------------------------------


def test_healthy_canary_passes_as_evidence_accumulates(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start)
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        answers = _looks(client, clock, start, body("healthy"), [0, 5, 10, 20])
    results = [a.json()["result"] for a in answers]
    assert [a.status_code for a in answers] == [200] * 4
    assert results[0]["verdict"] == "inconclusive" and "no data yet" in results[0]["reason"]
    assert results[-1]["verdict"] == "pass" and results[-1]["score"] == 100
    assert [r["run"]["looks"] for r in results] == [1, 2, 3, 4]
    assert {r["run"]["id"] for r in results} == {results[0]["run"]["id"]}
    assert results[-1]["run"]["startedAt"] == start.isoformat().replace("+00:00", "Z")
    error_rate = results[-1]["metrics"][0]
    assert error_rate["name"] == "error-rate"
    assert error_rate["canary"]["requests"] == pytest.approx(20 * 60 * 20, rel=0.05)  # 20 min
    for answer in answers:
        assert len(answer.content) < 2048, answer.content  # Argo keeps it in every measurement


def test_regressed_canary_fails_at_the_first_look_with_data(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["error-regression"].start
    clock = Clock(start)
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        answers = _looks(client, clock, start, body("error-regression"), [0, 5, 10])
    results = [a.json()["result"] for a in answers]
    assert [r["verdict"] for r in results] == ["inconclusive", "fail", "fail"]
    assert results[1]["reason"].startswith("Critical metric error-rate failed")
    failed = results[2]["metrics"][0]
    assert failed["verdict"] == "fail" and failed["failedAtLook"] == 2
    assert all(len(a.content) < 2048 for a in answers)


def test_a_metric_that_failed_at_an_earlier_look_stays_failed(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(5))
    app = make_app(prometheus, store_url, clock)
    with TestClient(app) as client:
        first = client.post("/api/v1/verdict", json=body("healthy", start=start.isoformat()))
        run_id = first.json()["result"]["run"]["id"]
        # the run remembers that latency failed at look 1 (as if an early spike had shown it)
        store = open_store(store_url)
        spike = MetricReport(
            "latency-p99", "histogram", MetricStatus.FAIL, "p99 above 500ms", False, 1.0,
            {}, {}, [], 0.0167, failed_at_look=1,
        )  # fmt: skip
        store.update(run_id, lambda r: replace(r, failed={"latency-p99": metric_to_dict(spike)}))
        clock.set(start + minutes(30))
        later = client.post("/api/v1/verdict", json=body("healthy")).json()["result"]
    assert later["verdict"] == "fail" and later["run"]["looks"] == 2
    latency = next(m for m in later["metrics"] if m["name"] == "latency-p99")
    assert latency["verdict"] == "fail" and latency["failedAtLook"] == 1
    assert next(m for m in later["metrics"] if m["name"] == "error-rate")["verdict"] == "pass"


def test_a_given_start_makes_the_first_call_a_real_look(
    prometheus: PrometheusServer, store_url: str
) -> None:
    scenario = prometheus.scenarios["healthy"]
    clock = Clock(scenario.start + minutes(30))
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        answer = client.post(
            "/api/v1/verdict",
            json=body("healthy", start=scenario.start.isoformat().replace("+00:00", "Z")),
        )
    result = answer.json()["result"]
    assert result["verdict"] == "pass" and result["run"]["looks"] == 1
    assert result["run"]["startedAt"] == scenario.start.isoformat().replace("+00:00", "Z")


def test_extra_fields_and_query_parameters_fill_placeholders(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(20))
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        regressed = client.post(
            "/api/v1/verdict",
            json=body("templated", "r1", service="error-regression", start=start.isoformat()),
        )
        healthy = client.get(
            "/api/v1/verdict",
            params=body("templated", "h1", service="healthy", start=start.isoformat()),
        )
        missing = client.post("/api/v1/verdict", json=body("templated", "m1"))
    assert regressed.json()["result"]["verdict"] == "fail"
    assert healthy.json()["result"]["verdict"] == "pass"
    assert missing.status_code == 422
    assert missing.json()["error"]["field"] == "service"
    assert "service" in missing.json()["error"]["message"]


def test_the_argo_example_analysis_selects_by_namespace_and_rollout(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(20))
    request = body("checkout", start=start.isoformat()) | {"namespace": "default"}
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        healthy = client.post("/api/v1/verdict", json=request | {"rollout": "healthy"})
        regressed = client.post("/api/v1/verdict", json=request | {"rollout": "error-regression"})
    assert healthy.json()["result"]["verdict"] == "pass"
    assert regressed.json()["result"]["verdict"] == "fail"


# --- a restarted server continues its runs -----------------------------------------------


def test_a_restarted_server_continues_the_same_run(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start)
    with serving(make_app(prometheus, store_url, clock)) as url, httpx.Client(base_url=url) as c:
        before = [a.json()["result"] for a in _looks(c, clock, start, body("healthy"), [0, 5])]
    with serving(make_app(prometheus, store_url, clock)) as url, httpx.Client(base_url=url) as c:
        after = [a.json()["result"] for a in _looks(c, clock, start, body("healthy"), [10, 20])]
    assert [r["run"]["looks"] for r in before + after] == [1, 2, 3, 4]
    assert len({r["run"]["id"] for r in before + after}) == 1
    assert len({r["run"]["startedAt"] for r in before + after}) == 1
    assert after[-1]["verdict"] == "pass"


# --- cannot judge right now: 503, and the look does not count ---------------------------


def test_prometheus_down_answers_503_and_counts_no_look(
    prometheus: PrometheusServer, store_url: str, unreachable_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(20))
    request = body("healthy", start=start.isoformat())
    down = make_app(prometheus, store_url, clock, prometheus_url=unreachable_url)
    with TestClient(down) as client:
        answer = client.post("/api/v1/verdict", json=request)
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert error["code"] == "prometheus_unavailable"
    assert "connection refused" in error["message"]
    run = open_store(store_url).find(RunKey("healthy", "default", "web", "abc123"))
    assert run is not None and run.looks == 0
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        back = client.post("/api/v1/verdict", json=request).json()["result"]
    assert back["run"]["looks"] == 1 and back["verdict"] == "pass"


def test_slow_prometheus_answers_503_within_the_look_budget(
    prometheus: PrometheusServer, store_url: str, slow_prometheus: Any
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(10))
    settings = ServeSettings(look_budget=1.0)
    app = make_app(
        prometheus, store_url, clock, settings=settings, prometheus_url=slow_prometheus.url
    )
    with TestClient(app) as client:
        began = time.monotonic()
        answer = client.post("/api/v1/verdict", json=body("healthy", start=start.isoformat()))
        elapsed = time.monotonic() - began
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "prometheus_unavailable"
    assert "did not answer within 0.25 s" in answer.json()["error"]["message"]
    assert elapsed < 1.5


class _SlowSource:
    """The real Prometheus source, 0.7 s slower per fetch (a loaded server)."""

    def __init__(self, inner: PrometheusSource) -> None:
        self.inner = inner

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        time.sleep(0.7)
        return self.inner.fetch(query, version, matchers, window)

    def check(self) -> None:
        self.inner.check()


def test_the_look_budget_is_a_deadline_for_the_whole_look(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(10))
    slow = _SlowSource(PrometheusSource(prometheus.url, timeout=1.0))
    settings = ServeSettings(look_budget=1.0)
    app = make_app(prometheus, store_url, clock, settings=settings, sources=lambda spec: slow)
    with TestClient(app) as client:
        began = time.monotonic()
        answer = client.post("/api/v1/verdict", json=body("healthy", start=start.isoformat()))
        elapsed = time.monotonic() - began
    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "look_budget_exceeded"
    assert elapsed < 1.4  # six fetches of 0.7 s, three at a time, would take 1.4 s or more
    run = open_store(store_url).find(RunKey("healthy", "default", "web", "abc123"))
    assert run is not None and run.looks == 0


def test_a_read_only_store_answers_503(prometheus: PrometheusServer, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(10))
    with TestClient(make_app(prometheus, f"sqlite:///{path}", clock)) as client:
        assert client.post("/api/v1/verdict", json=body("healthy")).status_code == 200
    with TestClient(make_app(prometheus, f"sqlite:///{path}?mode=ro", clock)) as client:
        existing = client.post("/api/v1/verdict", json=body("healthy"))
        new = client.post("/api/v1/verdict", json=body("healthy", "other1"))
    for answer in (existing, new):
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "store_unavailable"
        assert "read-only" in answer.json()["error"]["message"]


def test_a_full_store_answers_503(prometheus: PrometheusServer, tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(10))
    with TestClient(make_app(prometheus, f"sqlite:///{path}?max_page_count=8", clock)) as client:
        answers = []
        for i in range(200):  # first calls only (no data yet): every call stores a new run
            answers.append(client.post("/api/v1/verdict", json=body("healthy", f"c{i}")))
            if answers[-1].status_code != 200:
                break
    full = answers[-1]
    assert len(answers) > 1 and full.status_code == 503
    assert full.json()["error"]["code"] == "store_unavailable"
    assert "full" in full.json()["error"]["message"]


# --- concurrency --------------------------------------------------------------------------


def test_concurrent_calls_for_one_run_each_count_one_look(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(20))
    calls = 8
    request = body("healthy", start=start.isoformat())
    barrier = threading.Barrier(calls)
    answers: list[httpx.Response] = []
    with serving(make_app(prometheus, store_url, clock)) as url:

        def call() -> None:
            with httpx.Client(base_url=url, timeout=30) as client:
                barrier.wait()
                answers.append(client.post("/api/v1/verdict", json=request))

        threads = [threading.Thread(target=call) for _ in range(calls)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert [a.status_code for a in answers] == [200] * calls
    looks = sorted(a.json()["result"]["run"]["looks"] for a in answers)
    assert looks == list(range(1, calls + 1))  # each call one look: none lost, none doubled
    run = open_store(store_url).find(RunKey("healthy", "default", "web", "abc123"))
    assert run is not None and run.looks == calls


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send", "status", "code", "field"),
    [
        (lambda c: c.post("/api/v1/verdict", json=body("nope")), 404, "unknown_analysis", "analysis"),
        (
            lambda c: c.post("/api/v1/verdict", json={k: v for k, v in body("healthy").items() if k != "canaryHash"}),
            422, "missing_field", "canaryHash",
        ),
        (lambda c: c.post("/api/v1/verdict", json=body("healthy", start="yesterday")), 422, "invalid_start", "start"),
        (lambda c: c.post("/api/v1/verdict", json=body("healthy", start="2026-11-26T10:00:00")), 422, "invalid_start", "start"),
        (lambda c: c.post("/api/v1/verdict", json=body("healthy", start="2999-01-01T00:00:00Z")), 422, "invalid_start", "start"),
        (lambda c: c.post("/api/v1/verdict", json=body("healthy") | {"namespace": "Not A Namespace"}), 422, "invalid_field", "namespace"),
        (lambda c: c.post("/api/v1/verdict", json=body("healthy") | {"step": 3}), 422, "invalid_field", "step"),
        (lambda c: c.post("/api/v1/verdict", json=body("healthy") | {"bad-key": "x"}), 422, "invalid_field", "bad-key"),
        (lambda c: c.post("/api/v1/verdict", json=[1, 2]), 422, "invalid_body", None),
        (lambda c: c.post("/api/v1/verdict"), 422, "missing_body", None),
        (lambda c: c.post("/api/v1/verdict", content=b"{oops", headers={"content-type": "application/json"}), 400, "bad_json", None),
        (lambda c: c.get("/api/v1/verdict", params={"analysis": "healthy"}), 422, "missing_field", "namespace"),
        (lambda c: c.get("/api/v1/nothing"), 404, "not_found", None),
        (lambda c: c.delete("/api/v1/verdict"), 405, "method_not_allowed", None),
        (lambda c: c.get("/api/v1/runs/nope"), 404, "unknown_run", "run_id"),
    ],
)  # fmt: skip
def test_bad_input_answers_a_json_error_naming_the_field(
    prometheus: PrometheusServer,
    store_url: str,
    send: Callable[[TestClient], httpx.Response],
    status: int,
    code: str,
    field: str | None,
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        answer = send(client)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"] == code and error["message"]
    assert error.get("field") == field


# --- auth, health, metrics, logs, expiry, documents --------------------------------------


def test_bearer_token_is_required_when_configured_except_for_health(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(10))
    app = make_app(prometheus, store_url, clock, settings=ServeSettings(token="s3cret-token"))
    with TestClient(app) as client:
        none = client.post("/api/v1/verdict", json=body("healthy"))
        wrong = client.post(
            "/api/v1/verdict", json=body("healthy"), headers={"Authorization": "Bearer nope"}
        )
        right = client.post(
            "/api/v1/verdict",
            json=body("healthy"),
            headers={"Authorization": "Bearer s3cret-token"},
        )
        metrics = client.get("/metrics")
        health = client.get("/healthz")
        ready = client.get("/readyz")
    for answer in (none, wrong, metrics):
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 200
    assert health.status_code == 200 and ready.status_code == 200


def test_without_a_token_no_authorization_is_needed(
    prometheus: PrometheusServer, store_url: str
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        assert client.post("/api/v1/verdict", json=body("healthy")).status_code == 200
        assert client.get("/metrics").status_code == 200


def test_readiness_names_the_dependency_that_is_down(
    prometheus: PrometheusServer, store_url: str, unreachable_url: str, tmp_path: Path
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start)
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    down = make_app(prometheus, store_url, clock, prometheus_url=unreachable_url)
    with TestClient(down) as client:
        no_prometheus = client.get("/readyz")
        alive = client.get("/healthz")
    assert alive.status_code == 200
    assert no_prometheus.status_code == 503
    assert "connection refused" in no_prometheus.json()["error"]["message"]
    assert no_prometheus.json()["checks"]["store"] == "ok"
    broken_store = f"sqlite:///{tmp_path}/missing/dir/runs.sqlite"
    with TestClient(make_app(prometheus, broken_store, clock)) as client:
        no_store = client.get("/readyz")
    assert no_store.status_code == 503
    assert no_store.json()["error"]["message"].startswith("not ready: store:")


def test_metrics_count_looks_verdicts_errors_and_runs(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["error-regression"].start
    clock = Clock(start + minutes(10))
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        client.post("/api/v1/verdict", json=body("error-regression", start=start.isoformat()))
        client.post("/api/v1/verdict", json=body("nope"))
        text = client.get("/metrics").text
    assert 'verdict_looks_total{analysis="error-regression"} 1.0' in text
    assert 'verdict_verdicts_total{analysis="error-regression",verdict="fail"} 1.0' in text
    assert 'verdict_look_errors_total{analysis="(unknown)",code="unknown_analysis"} 1.0' in text
    assert "verdict_prometheus_query_duration_seconds_bucket" in text
    assert "verdict_look_duration_seconds_count 1.0" in text
    assert "verdict_active_runs 1.0" in text


def test_every_log_line_of_a_look_carries_the_run_id(
    prometheus: PrometheusServer, store_url: str, unreachable_url: str
) -> None:
    scenario = prometheus.scenarios["healthy"]
    clock = Clock(scenario.start + minutes(15))
    request = body("healthy", start=scenario.start.isoformat())
    stream = io.StringIO()
    logs.configure(json=True, level="debug")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    try:
        with TestClient(make_app(prometheus, store_url, clock)) as client:
            answer = client.post("/api/v1/verdict", json=request)
        down = make_app(prometheus, store_url, clock, prometheus_url=unreachable_url)
        with TestClient(down) as client:
            client.post("/api/v1/verdict", json=request)
    finally:
        structlog.reset_defaults()
    run_id = answer.json()["result"]["run"]["id"]
    lines = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    # "look judged" is logged in the worker thread that asks Prometheus
    assert {"look judged", "look answered", "prometheus unavailable"} <= set(events), events
    for line in lines:
        assert line["run"] == run_id, line
        assert line["analysis"] == "healthy" and line["rollout"] == "web"


def test_runs_expire_after_the_ttl_since_their_last_look(
    prometheus: PrometheusServer, store_url: str
) -> None:
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start)
    settings = ServeSettings(run_ttl=timedelta(minutes=20), cleanup_every=timedelta(0))
    with TestClient(make_app(prometheus, store_url, clock, settings=settings)) as client:
        first = client.post("/api/v1/verdict", json=body("healthy", "old1")).json()["result"]
        clock.set(start + minutes(30))
        client.post("/api/v1/verdict", json=body("healthy", "new1"))
        again = client.post("/api/v1/verdict", json=body("healthy", "old1")).json()["result"]
    assert open_store(store_url).get(first["run"]["id"]) is None
    assert again["run"]["id"] != first["run"]["id"] and again["run"]["looks"] == 1


def test_runs_can_be_listed_and_shown(prometheus: PrometheusServer, store_url: str) -> None:
    start = prometheus.scenarios["error-regression"].start
    clock = Clock(start + minutes(10))
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        result = client.post(
            "/api/v1/verdict", json=body("error-regression", start=start.isoformat())
        ).json()["result"]
        listed = client.get("/api/v1/runs").json()["runs"]
        shown = client.get(f"/api/v1/runs/{result['run']['id']}").json()
    assert [r["id"] for r in listed] == [result["run"]["id"]]
    assert shown["looks"] == 1 and shown["verdict"] == "fail"
    assert shown["failedMetrics"]["error-rate"]["failedAtLook"] == 1
    assert shown["lastAnswer"] == result
    assert shown["params"]["canaryHash"] == "abc123"


def test_openapi_document_lists_the_analyses_and_json_errors(
    prometheus: PrometheusServer, store_url: str
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start)
    with TestClient(make_app(prometheus, store_url, clock)) as client:
        document = client.get("/openapi.json").json()
    request = document["components"]["schemas"]["VerdictRequest"]
    assert "healthy" in request["properties"]["analysis"]["enum"]
    assert request["additionalProperties"] == {"type": "string"}
    post = document["paths"]["/api/v1/verdict"]["post"]
    assert {"200", "400", "401", "404", "422", "503"} <= set(post["responses"])
    assert post["responses"]["503"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-26T10:00:00Z", "2026-11-26T10:00:00+00:00"),
        ("2026-11-26T10:00:00.250+01:00", "2026-11-26T09:00:00.250000+00:00"),
        ("2026-11-26T10:00:00 01:00", "2026-11-26T09:00:00+00:00"),  # `+` unencoded in a URL
        ("2026-11-26t10:00:00z", "2026-11-26T10:00:00+00:00"),
    ],
)
def test_start_times_are_rfc_3339(text: str, expected: str) -> None:
    assert parse_start(text).isoformat() == expected


@pytest.mark.parametrize("text", ["2026-11-26T10:00:00", "2026-11-26", "1764151200", "soon"])
def test_start_times_without_a_zone_or_a_time_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_start(text)

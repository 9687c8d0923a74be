"""PagerDuty (Events API v2) against a stand-in that holds every event to the documented contract
(a JSON schema written from PagerDuty's docs): an abort triggers, a promotion resolves, one
alert per run, 400 not retried, 429 retried, and the routing key never in a log; then the same
through real runs (the demo's canary loop, controller mode, `verdict serve`)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import structlog

from analyzer.notify import (
    OUTCOMES,
    RESOLVES,
    TRIGGERS,
    BackgroundNotifier,
    EventKind,
    Figure,
    NotificationSpec,
    NotifyConfigError,
    PagerDuty,
    PagerDutySettings,
    RetryPolicy,
    RunEvent,
    RunInfo,
    Target,
    build_notifier,
)
from analyzer.notify.config import PAGERDUTY_URL
from tests.conftest import PrometheusServer
from tests.hook_server import HookReceiver
from tests.local_http import StateServer, serving

KEY = "e93facc04764012d7bfb002500d5d1a6"  # 32 characters, as PagerDuty's integration keys
RUN = RunInfo(id="r123", analysis="checkout", namespace="shop", rollout="checkout", way="demo")
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
FIGURES = (
    Figure("error-rate", "fail", 0.051, 0.004, "rate", critical=True),
    Figure("latency-p99", "pass", 0.250, 0.240, "seconds"),
)
FAST = RetryPolicy(retries=2, backoff=0.01)

# --- the stand-in ------------------------------------------------------------------------------

_TEXT = {"type": "string", "minLength": 1}
EVENT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "PagerDuty Events API v2 alert event (POST /v2/enqueue)",
    "type": "object",
    "required": ["routing_key", "event_action"],
    "additionalProperties": False,
    "properties": {
        "routing_key": {"type": "string", "minLength": 32, "maxLength": 32},
        "event_action": {"enum": ["trigger", "acknowledge", "resolve"]},
        "dedup_key": {"type": "string", "minLength": 1, "maxLength": 255},
        "payload": {
            "type": "object",
            "required": ["summary", "source", "severity"],
            "additionalProperties": False,
            "properties": {
                "summary": {"type": "string", "minLength": 1, "maxLength": 1024},
                "source": _TEXT,
                "severity": {"enum": ["critical", "error", "warning", "info"]},
                "timestamp": {"type": "string", "format": "date-time"},
                "component": _TEXT,
                "group": _TEXT,
                "class": _TEXT,
                "custom_details": {"type": "object"},
            },
        },
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["src"],
                "additionalProperties": False,
                "properties": {
                    "src": {"type": "string", "pattern": "^https://"},
                    "href": _TEXT,
                    "alt": _TEXT,
                },
            },
        },
        "links": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["href"],
                "additionalProperties": False,
                "properties": {"href": _TEXT, "text": _TEXT},
            },
        },
        "client": _TEXT,
        "client_url": _TEXT,
    },
    "allOf": [
        {  # a trigger describes the problem
            "if": {"properties": {"event_action": {"const": "trigger"}}},
            "then": {"required": ["payload"]},
        },
        {  # an acknowledge or a resolve names the alert it is about
            "if": {"properties": {"event_action": {"enum": ["acknowledge", "resolve"]}}},
            "then": {"required": ["dedup_key"]},
        },
    ],
}
"""An alert event as PagerDuty's Events API v2 documents it (developer.pagerduty.com, "Send an
Alert Event"): required fields, the enums, the 32-character routing key, the 1024-character
summary, the 255-character dedup key, ISO 8601 timestamps."""


def _iso_8601(value: object) -> bool:
    if not isinstance(value, str) or "T" not in value:
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}")
    datetime.fromisoformat(value.replace("Z", "+00:00"))
    return True


_FORMATS = jsonschema.FormatChecker()
_FORMATS.checks("date-time", raises=ValueError)(_iso_8601)

_VALIDATOR = jsonschema.Draft202012Validator(EVENT_SCHEMA, format_checker=_FORMATS)
jsonschema.Draft202012Validator.check_schema(EVENT_SCHEMA)


@dataclass
class PagerDutyStandIn:
    """PagerDuty's events endpoint: every POST is checked against `EVENT_SCHEMA`; a valid event
    is answered 202 and kept in `events`, an invalid one 400 (what it broke in `violations`).
    `answers` are statuses to give first (429, 500), one per request, whatever it holds; with
    `echo`, error answers repeat the request (as some proxies do)."""

    answers: list[int] = field(default_factory=list)
    echo: bool = False
    requests: list[Any] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests to PagerDuty, got {len(self.requests)}")

    def answer(self, raw: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        try:
            event = json.loads(raw)
        except ValueError:
            event = None
        with self.lock:
            self.requests.append(event)
            problems = [] if content_type.startswith("application/json") else ["not JSON"]
            if event is None:
                problems.append("the body is not JSON")
            else:
                problems += [
                    f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}"
                    for e in _VALIDATOR.iter_errors(event)
                ]
            if problems:
                self.violations += problems
                return 400, self._error(
                    {"status": "invalid event", "message": "Event object is invalid"},
                    problems,
                    raw,
                )
            if self.answers:
                status = self.answers.pop(0)
                message = "Requests for this service are arriving too quickly"
                if status >= 500:
                    message = "Internal Server Error"
                return status, self._error({"status": "error", "message": message}, [], raw)
            self.events.append(event)
            return 202, {
                "status": "success",
                "message": "Event processed",
                "dedup_key": event.get("dedup_key") or "generated-by-pagerduty",
            }

    def _error(self, head: dict[str, Any], errors: list[str], raw: bytes) -> dict[str, Any]:
        return (
            {"request": raw.decode(), **head, "errors": errors}
            if self.echo
            else {**head, "errors": errors}
        )


class _Handler(BaseHTTPRequestHandler):
    server: StateServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        state: PagerDutyStandIn = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v2/enqueue":
            status, body = 404, {"status": "not found", "message": self.path}
        else:
            status, body = state.answer(raw, self.headers.get("Content-Type", ""))
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def pagerduty() -> Iterator[PagerDutyStandIn]:
    state = PagerDutyStandIn()
    with serving(_Handler, state) as url:
        state.url = f"{url}/v2/enqueue"
        yield state


def pager(state: PagerDutyStandIn, key: str = KEY, **settings: Any) -> BackgroundNotifier:
    notifier = PagerDuty(PagerDutySettings(key, url=state.url, timeout=2.0, **settings))
    return BackgroundNotifier([Target("pagerduty", notifier)], FAST)


def decision(outcome: str, *, run: RunInfo = RUN, reason: str = "") -> RunEvent:
    return RunEvent(
        EventKind.DECISION,
        run,
        T0 + timedelta(minutes=3),
        step=1,
        weight=5,
        look=6,
        verdict="fail" if outcome in TRIGGERS else "pass",
        outcome=outcome,
        reason=reason or "Critical metric error-rate failed",
        figures=FIGURES,
    )


def _no_key_in(entries: list[Any]) -> None:
    text = json.dumps(entries, default=str)
    assert KEY not in text and KEY[:16] not in text, text


# --- the contract ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "broken"),
    [
        ({"routing_key": KEY, "event_action": "trigger"}, "'payload' is a required property"),
        ({"routing_key": KEY, "event_action": "resolve"}, "'dedup_key' is a required property"),
        ({"routing_key": KEY[:20], "event_action": "resolve", "dedup_key": "d"}, "is too short"),
        ({"routing_key": KEY, "event_action": "escalate", "dedup_key": "d"}, "is not one of"),
        (
            {
                "routing_key": KEY,
                "event_action": "trigger",
                "payload": {"summary": "x" * 1025, "source": "s", "severity": "error"},
            },
            "is too long",
        ),
        (
            {
                "routing_key": KEY,
                "event_action": "trigger",
                "payload": {"summary": "x", "source": "s", "severity": "fatal"},
            },
            "is not one of",
        ),
        (
            {
                "routing_key": KEY,
                "event_action": "trigger",
                "payload": {"summary": "x", "source": "s", "severity": "info", "timestamp": "now"},
            },
            "is not a 'date-time'",
        ),
    ],
)
def test_the_stand_in_refuses_what_pagerduty_documents_as_invalid(
    pagerduty: PagerDutyStandIn, event: dict[str, Any], broken: str
) -> None:
    answer = httpx.post(pagerduty.url, json=event, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["status"] == "invalid event"
    assert any(broken in v for v in pagerduty.violations), pagerduty.violations


def test_an_abort_triggers_an_alert_with_the_documented_fields(
    pagerduty: PagerDutyStandIn,
) -> None:
    notifier = pager(pagerduty, report_url="https://verdict.example/api/v1/runs/{run}/report")
    started = RunEvent(EventKind.STARTED, RUN, T0, step=1, weight=5)
    look = RunEvent(EventKind.LOOK, RUN, T0 + timedelta(minutes=1), step=1, weight=5, look=1)
    for event in (started, look, decision("aborted")):
        notifier.post(event)
    notifier.close(timeout=10)
    (sent,) = pagerduty.wait_for(1)  # steps and looks are not sent
    assert pagerduty.violations == []
    assert sent["routing_key"] == KEY
    assert sent["event_action"] == "trigger"
    assert sent["dedup_key"] == "verdict-r123"
    payload = sent["payload"]
    assert payload["summary"].startswith("Verdict aborted shop/checkout at 5 %")
    assert "error-rate fail: canary 5.1 % vs baseline 0.4 %" in payload["summary"]
    assert payload["source"] == "shop/checkout"
    assert payload["severity"] == "error"
    assert payload["timestamp"] == "2026-11-26T10:03:00Z"
    assert (payload["component"], payload["group"]) == ("checkout", "shop")
    assert payload["class"] == "rollout aborted"
    details = payload["custom_details"]
    assert details["decision"] == "aborted" and details["run"]["id"] == "r123"
    assert details["figures"]["error-rate"]["canary"] == 0.051
    report = "https://verdict.example/api/v1/runs/r123/report"
    assert sent["links"] == [{"href": report, "text": "Verdict report of run r123"}]
    assert sent["client"] == "Verdict" and sent["client_url"] == report


def test_a_promotion_resolves_the_runs_alert(pagerduty: PagerDutyStandIn) -> None:
    notifier = pager(pagerduty)
    notifier.post(decision("aborted"))
    notifier.post(decision("promoted"))  # the same run, promoted after all
    notifier.close(timeout=10)
    trigger, resolve = pagerduty.wait_for(2)
    assert pagerduty.violations == []
    assert resolve == {"routing_key": KEY, "dedup_key": "verdict-r123", "event_action": "resolve"}
    assert trigger["dedup_key"] == resolve["dedup_key"]


def test_a_long_summary_is_cut_to_pagerdutys_1024_characters(
    pagerduty: PagerDutyStandIn,
) -> None:
    notifier = pager(pagerduty)
    notifier.post(decision("aborted", reason="the canary failed " * 200))
    notifier.close(timeout=10)
    (sent,) = pagerduty.wait_for(1)
    assert pagerduty.violations == []
    assert len(sent["payload"]["summary"]) == 1024 and sent["payload"]["summary"].endswith("…")


@pytest.mark.parametrize(
    ("outcome", "chosen", "severity"),
    [
        ("aborted", None, "error"),
        ("fail", None, "error"),
        ("paused", None, "warning"),
        ("abort-failed", None, "critical"),
        ("aborted", "critical", "critical"),
        ("paused", "info", "info"),
        ("abort-failed", "info", "critical"),  # the canary still takes traffic: always critical
    ],
)
def test_severity_per_outcome_or_as_chosen(
    pagerduty: PagerDutyStandIn, outcome: str, chosen: str | None, severity: str
) -> None:
    notifier = pager(pagerduty, severity=chosen)
    notifier.post(decision(outcome))
    notifier.close(timeout=10)
    (sent,) = pagerduty.wait_for(1)
    assert pagerduty.violations == []
    assert sent["event_action"] == "trigger" and sent["payload"]["severity"] == severity


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_rate_limited_or_failing_pagerduty_gets_the_event_again(
    pagerduty: PagerDutyStandIn, status: int
) -> None:
    pagerduty.answers = [status]  # once; then 202
    notifier = pager(pagerduty)
    with structlog.testing.capture_logs() as logs:
        notifier.post(decision("aborted"))
        notifier.close(timeout=10)
    first, second = pagerduty.wait_for(2)
    assert first == second and pagerduty.events == [second]
    (warning,) = [e for e in logs if e["event"] == "notification failed; will retry"]
    assert f"HTTP {status}" in warning["error"] and warning["target"] == "pagerduty"


def test_an_invalid_event_is_refused_once_and_the_key_is_never_logged(
    pagerduty: PagerDutyStandIn,
) -> None:
    wrong = "0123456789abcdef-not-32"  # a key of the wrong length: PagerDuty answers 400
    pagerduty.echo = True  # and the answer repeats the request, key and all
    notifier = pager(pagerduty, key=wrong)
    with structlog.testing.capture_logs() as logs:
        notifier.post(decision("aborted"))
        notifier.close(timeout=10)
    assert len(pagerduty.wait_for(1)) == 1
    time.sleep(0.1)
    assert len(pagerduty.requests) == 1  # 400: not retried
    (dropped,) = [e for e in logs if e["event"] == "notification failed; dropped"]
    assert "HTTP 400" in dropped["error"] and "***" in dropped["error"]
    text = json.dumps(logs, default=str)
    assert wrong not in text and wrong[:8] not in text, text


def test_the_routing_key_is_masked_even_where_the_answer_was_cut(
    pagerduty: PagerDutyStandIn,
) -> None:
    # an error text is kept to its first 200 characters: a key across that cut leaves its start
    notifier = PagerDuty(PagerDutySettings(KEY, url=pagerduty.url))
    for cut in (4, 10, 31):
        message = notifier._masked(f"PagerDuty: HTTP 429 {'x' * 150} {KEY[:cut]}")
        assert message.endswith(" ***") and KEY[:cut] not in message
    assert repr(PagerDutySettings(KEY)).count(KEY) == 0


# --- configuration and routes --------------------------------------------------------------------


def test_the_routing_key_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_file = tmp_path / "routing-key"
    key_file.write_text(KEY + "\n")
    spec = NotificationSpec.model_validate({"type": "pagerduty", "routingKeyFile": str(key_file)})
    assert spec.routing_key() == KEY and spec.target_url() == PAGERDUTY_URL
    assert spec.secrets() == [KEY]
    monkeypatch.setenv("PD_KEY", KEY)
    from_env = NotificationSpec.model_validate(
        {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": "http://pd.local/v2/enqueue"}
    )
    assert from_env.routing_key() == KEY and from_env.target_url() == "http://pd.local/v2/enqueue"
    missing = NotificationSpec.model_validate({"type": "pagerduty", "routingKeyEnv": "NO_SUCH"})
    with pytest.raises(NotifyConfigError, match=r"routingKeyEnv: \$NO_SUCH is not set"):
        build_notifier(None, [missing])
    unreadable = {"type": "pagerduty", "routingKeyFile": str(tmp_path / "nope")}
    with pytest.raises(NotifyConfigError, match="routingKeyFile: cannot read"):
        NotificationSpec.model_validate(unreadable).routing_key()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "pagerduty"}, "exactly one of routingKeyFile or routingKeyEnv"),
        (
            {"type": "pagerduty", "routingKeyFile": "/k", "routingKeyEnv": "K"},
            "exactly one of routingKeyFile or routingKeyEnv",
        ),
        ({"type": "pagerduty", "routingKeyEnv": "K", "urlEnv": "U"}, "not urlFile or urlEnv"),
        ({"type": "pagerduty", "routingKeyEnv": "K", "headers": {"A": "b"}}, "headers"),
        ({"type": "pagerduty", "routingKeyEnv": "K", "url": "events.pagerduty.com"}, "events URL"),
        ({"type": "pagerduty", "routingKeyEnv": "K", "severity": "fatal"}, "severity"),
        ({"type": "pagerduty", "routingKeyEnv": "K", "on": ["exploded"]}, "unknown outcome"),
        ({"type": "slack", "url": "http://x", "routingKeyEnv": "K"}, "for type: pagerduty"),
        ({"type": "webhook", "url": "http://x", "severity": "error"}, "for type: pagerduty"),
    ],
)
def test_bad_pagerduty_settings_are_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NotificationSpec.model_validate(data)


def test_filters_can_name_every_outcome_a_run_can_end_in() -> None:
    from strategies.argo.controller import _OUTCOMES as CONTROLLER_OUTCOMES
    from strategies.record import ABORTED, INTERRUPTED, PAUSED, PROMOTED

    canary_loop = {PROMOTED, ABORTED, PAUSED, INTERRUPTED}
    controller = {*CONTROLLER_OUTCOMES.values(), "abort-failed"}
    web_provider = {"pass", "fail"}
    assert canary_loop | controller | web_provider <= set(OUTCOMES)
    assert set(TRIGGERS) | set(RESOLVES) <= set(OUTCOMES)
    for outcome in OUTCOMES:
        spec = {"type": "webhook", "url": "http://x", "on": [outcome]}
        assert NotificationSpec.model_validate(spec).on == [outcome]


def test_aborts_page_and_everything_goes_to_slack(
    pagerduty: PagerDutyStandIn, hooks: HookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_KEY", KEY)
    specs = [
        {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": pagerduty.url, "on": ["aborted"]},
        {"type": "slack", "url": hooks.url},
    ]
    notifier = build_notifier(
        None, [NotificationSpec.model_validate(s) for s in specs], policy=FAST
    )
    outcomes = ["paused", "aborted", "abort-failed", "interrupted", "fail", "promoted"]
    runs = [RunInfo(f"r{i}", "checkout", "shop", "checkout") for i in range(len(outcomes))]
    for outcome, run in zip(outcomes, runs, strict=True):
        notifier.post(decision(outcome, run=run))
    notifier.close(timeout=10)
    slack = hooks.wait_for(len(outcomes))
    assert [m["text"].split("*")[1] for m in slack] == [o.upper() for o in outcomes]
    sent = pagerduty.wait_for(3)
    time.sleep(0.1)
    assert pagerduty.violations == []
    assert [(e["event_action"], e["dedup_key"]) for e in pagerduty.requests] == [
        ("trigger", "verdict-r1"),  # aborted
        ("trigger", "verdict-r2"),  # an abort that did not land: who hears of aborts hears of it
        ("resolve", "verdict-r5"),  # promoted: always resolves, whatever `on:` says
    ]
    assert sent[1]["payload"]["severity"] == "critical"


def test_without_on_every_failing_outcome_pages(
    pagerduty: PagerDutyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_KEY", KEY)
    spec = {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": pagerduty.url}
    notifier = build_notifier(None, [NotificationSpec.model_validate(spec)], policy=FAST)
    for i, outcome in enumerate(OUTCOMES):
        notifier.post(decision(outcome, run=RunInfo(f"r{i}", "checkout", "shop", "checkout")))
    notifier.close(timeout=10)
    pagerduty.wait_for(len(TRIGGERS) + len(RESOLVES))
    time.sleep(0.1)
    actions = {OUTCOMES[int(e["dedup_key"][9:])]: e["event_action"] for e in pagerduty.requests}
    assert actions == {
        **dict.fromkeys(TRIGGERS, "trigger"),
        **dict.fromkeys(RESOLVES, "resolve"),
    }  # paused and interrupted do not page unless `on:` names them


# --- through real runs ---------------------------------------------------------------------------


def _notifier(state: PagerDutyStandIn, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("PD_KEY", KEY)
    spec = {"type": "pagerduty", "routingKeyEnv": "PD_KEY", "url": state.url}
    return build_notifier(None, [NotificationSpec.model_validate(spec)], policy=FAST)


def test_an_aborted_demo_run_triggers_and_a_promoted_one_resolves(
    pagerduty: PagerDutyStandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.demo import run_demo
    from analyzer.runs.store import open_store

    store = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    notifier = _notifier(pagerduty, monkeypatch)
    try:
        with structlog.testing.capture_logs() as logs:
            aborted = run_demo("error-spike", 1, store=store, notifier=notifier)
            promoted = run_demo("healthy", 1, store=store, notifier=notifier)
            notifier.close(timeout=10)
    finally:
        store.close()
    assert (aborted.result.decision, promoted.result.decision) == ("aborted", "promoted")
    assert aborted.run is not None and promoted.run is not None
    trigger, resolve = pagerduty.wait_for(2)
    assert pagerduty.violations == []
    assert (trigger["event_action"], trigger["dedup_key"]) == (
        "trigger",
        f"verdict-{aborted.run.id}",
    )
    assert trigger["payload"]["summary"].startswith("Verdict aborted demo/checkout-error-spike")
    assert trigger["payload"]["custom_details"]["run"]["way"] == "demo"
    assert (resolve["event_action"], resolve["dedup_key"]) == (
        "resolve",
        f"verdict-{promoted.run.id}",
    )
    _no_key_in(logs)


@pytest.mark.prometheus
def test_one_controller_run_pages_once_under_one_dedup_key(
    prometheus: PrometheusServer,
    kube: Any,
    tmp_path: Path,
    pagerduty: PagerDutyStandIn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.test_controller import make_world

    world = make_world(prometheus, kube, tmp_path, "error-regression")
    notifier = _notifier(pagerduty, monkeypatch)
    world.service.notifiers["error-regression"] = notifier
    with structlog.testing.capture_logs() as logs:
        try:
            world.tick_at(0)
            world.tick_at(5)
        finally:
            world.service.close()
        notifier.close(timeout=10)
    assert world.status()["abort"] is True
    (run,) = world.store.runs()
    events = pagerduty.wait_for(2)
    assert pagerduty.violations == []
    # the run's fail (the analysis) and then its abort (the controller): one alert
    assert [(e["event_action"], e["payload"]["class"]) for e in events] == [
        ("trigger", "rollout fail"),
        ("trigger", "rollout aborted"),
    ]
    assert {e["dedup_key"] for e in events} == {f"verdict-{run.id}"}
    assert events[1]["payload"]["custom_details"]["run"]["way"] == "controller"
    _no_key_in(logs)


@pytest.mark.prometheus
def test_verdict_serve_pages_a_failing_run_resolves_a_passing_one_and_never_logs_the_key(
    prometheus: PrometheusServer, tmp_path: Path, pagerduty: PagerDutyStandIn, hooks: HookReceiver
) -> None:
    from tests.helpers import scenario_analysis, write_analysis
    from tests.test_serve_cli import _serve

    key_file = tmp_path / "pagerduty-key"
    key_file.write_text(KEY + "\n")
    folder = tmp_path / "analyses"
    folder.mkdir()
    for name in ("healthy", "error-regression"):
        data = scenario_analysis(name, prometheus.scenarios[name])
        data["notifications"] = [
            {
                "type": "pagerduty",
                "routingKeyFile": str(key_file),
                "url": pagerduty.url,
                "on": ["aborted", "fail"],
            },
            {"type": "slack", "url": hooks.url},  # everything (a decision) to Slack
        ]
        write_analysis(folder / f"{name}.yaml", data)
    pagerduty.answers = [429]  # rate-limited once: retried after the queue's backoff
    pagerduty.echo = True  # and that answer repeats the request, routing key and all
    answers: dict[str, dict[str, Any]] = {}
    with _serve(
        "--config", str(folder), "--store", f"sqlite:///{tmp_path / 'runs.sqlite'}",
        env={"VERDICT_PROMETHEUS_URL": prometheus.url},
    ) as (url, log):  # fmt: skip
        for name in ("error-regression", "healthy"):
            request = {
                "analysis": name,
                "namespace": "shop",
                "rollout": name,
                "canaryHash": "7d9f8c6b5",
                "stableHash": "5c4b3a291",
                "start": prometheus.scenarios[name].start.isoformat(),
            }
            answer = httpx.post(f"{url}/api/v1/verdict", json=request, timeout=20)
            assert answer.status_code == 200, answer.text
            answers[name] = answer.json()["result"]
        pagerduty.wait_for(3)
        hooks.wait_for(2)
        logged = log.read_text()
    assert answers["error-regression"]["verdict"] == "fail"
    assert answers["healthy"]["verdict"] == "pass"
    assert pagerduty.violations == []
    by_action = {e["event_action"]: e for e in pagerduty.events}
    assert (
        by_action["trigger"]["dedup_key"] == f"verdict-{answers['error-regression']['run']['id']}"
    )
    assert by_action["trigger"]["payload"]["class"] == "rollout fail"
    assert by_action["resolve"]["dedup_key"] == f"verdict-{answers['healthy']['run']['id']}"
    assert sorted(m["text"].split("*")[1] for m in hooks.bodies) == ["FAIL", "PASS"]
    assert "notification failed; will retry" in logged and "HTTP 429" in logged
    assert KEY not in logged and KEY[:16] not in logged, logged

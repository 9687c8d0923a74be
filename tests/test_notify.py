"""Notifiers at the HTTP boundary: Grafana annotations against the documented API (a stand-in
that validates every request), webhook and Slack payloads, outcome filters, and the rule that a
notifier never blocks or changes anything."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from analyzer.notify import (
    BackgroundNotifier,
    EventKind,
    Figure,
    GrafanaAnnotations,
    GrafanaOverride,
    GrafanaSettings,
    GrafanaSpec,
    NopNotifier,
    NotificationSpec,
    NotifyConfigError,
    RetryPolicy,
    RunEvent,
    RunInfo,
    Slack,
    SlackSettings,
    Target,
    Webhook,
    WebhookSettings,
    build_notifier,
    event_from_json,
    event_json,
)
from analyzer.notify.background import drain_all
from tests.grafana_server import GrafanaStandIn
from tests.hook_server import HookReceiver

RUN = RunInfo(id="r123", analysis="checkout", namespace="shop", rollout="checkout", way="demo")
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
FIGURES = (
    Figure("error-rate", "fail", 0.051, 0.004, "rate", critical=True),
    Figure("latency-p99", "pass", 0.250, 0.240, "seconds"),
)
FAST = RetryPolicy(retries=2, backoff=0.01)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def step_events(outcome: str = "aborted") -> list[RunEvent]:
    end = T0 + timedelta(minutes=3)
    return [
        RunEvent(EventKind.STARTED, RUN, T0, step=1, weight=5),
        RunEvent(EventKind.LOOK, RUN, T0 + timedelta(minutes=1), step=1, weight=5, look=1),
        RunEvent(EventKind.ENDED, RUN, end, step=1, weight=5, verdict="fail", started=T0, look=6),
        RunEvent(
            EventKind.DECISION,
            RUN,
            end,
            step=1,
            weight=5,
            look=6,
            verdict="fail",
            outcome=outcome,
            reason="Critical metric error-rate failed",
            figures=FIGURES,
        ),
    ]


def grafana_notifier(
    state: GrafanaStandIn, policy: RetryPolicy = FAST, **settings: object
) -> BackgroundNotifier:
    grafana = GrafanaAnnotations(
        GrafanaSettings(url=state.url, token=state.token, timeout=1.0, **settings)  # type: ignore[arg-type]
    )
    return BackgroundNotifier([Target("grafana", grafana)], policy)


# --- Grafana -----------------------------------------------------------------------------


def test_a_step_is_a_region_closed_by_patch_and_a_decision_a_tagged_point(
    grafana: GrafanaStandIn,
) -> None:
    notifier = grafana_notifier(grafana, dashboard_uid="verdict", panel_id=4, tags=("team-a",))
    for event in step_events():
        notifier.post(event)
    notifier.close(timeout=10)

    requests = grafana.wait_for(3)
    assert grafana.violations == []
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/api/annotations"),
        ("PATCH", "/api/annotations/1"),
        ("POST", "/api/annotations"),
    ]
    assert all(r.headers["Authorization"] == f"Bearer {grafana.token}" for r in requests)
    opened, closed, decision = (r.body for r in requests)
    assert opened["time"] == _ms(T0) and "timeEnd" not in opened
    assert opened["dashboardUID"] == "verdict" and opened["panelId"] == 4
    assert closed["timeEnd"] == _ms(T0 + timedelta(minutes=3)) and closed["time"] == _ms(T0)
    region = grafana.annotations[1]
    assert region["timeEnd"] - region["time"] == 180_000  # a region, 3 minutes long
    assert "outcome:fail" in closed["tags"]
    for tag in ("verdict", "namespace:shop", "rollout:checkout", "outcome:aborted", "team-a"):
        assert tag in decision["tags"]
    assert decision["time"] == _ms(T0 + timedelta(minutes=3)) and "timeEnd" not in decision
    assert "aborted" in decision["text"] and "error-rate" in decision["text"]
    assert "5.1 %" in decision["text"]  # the deciding figure, in one line
    assert "\n" not in decision["text"]
    # a dashboard panel finds the decisions by tag
    assert [a["id"] for a in grafana.by_tag("verdict", "outcome:aborted")] == [2]


def test_a_region_whose_start_was_lost_is_written_whole_at_its_end(
    grafana: GrafanaStandIn,
) -> None:
    notifier = grafana_notifier(grafana)
    notifier.post(step_events()[2])  # ended, never opened here (e.g. a restart in between)
    notifier.close(timeout=10)
    (request,) = grafana.wait_for(1)
    assert grafana.violations == []
    assert request.method == "POST"
    assert request.body["time"] == _ms(T0)
    assert request.body["timeEnd"] == _ms(T0 + timedelta(minutes=3))


def test_a_web_provider_run_is_one_region(grafana: GrafanaStandIn) -> None:
    web = RunInfo(id="w1", analysis="checkout", namespace="shop", rollout="checkout", way="web")
    notifier = grafana_notifier(grafana)
    notifier.post(RunEvent(EventKind.STARTED, web, T0))
    notifier.post(
        RunEvent(EventKind.ENDED, web, T0 + timedelta(minutes=2), verdict="pass", started=T0)
    )
    notifier.close(timeout=10)
    requests = grafana.wait_for(2)
    assert grafana.violations == []
    assert [(r.method, r.path) for r in requests] == [
        ("POST", "/api/annotations"),
        ("PATCH", "/api/annotations/1"),
    ]
    assert "kind:run" in requests[0].body["tags"]


def test_grafana_answering_500_is_retried_a_bounded_number_of_times(
    grafana: GrafanaStandIn,
) -> None:
    grafana.mode = "error"
    notifier = grafana_notifier(grafana, RetryPolicy(retries=2, backoff=0.01))
    notifier.post(step_events()[3])
    notifier.close(timeout=10)
    assert len(grafana.requests) == 3  # one try and two retries, then dropped


def test_a_refused_token_is_not_retried(grafana: GrafanaStandIn) -> None:
    notifier = BackgroundNotifier(
        [Target("grafana", GrafanaAnnotations(GrafanaSettings(url=grafana.url, token="wrong")))],
        FAST,
    )
    notifier.post(step_events()[3])
    notifier.close(timeout=10)
    assert len(grafana.requests) == 1


def test_posting_never_waits_for_a_grafana_that_does_not_answer(
    grafana: GrafanaStandIn,
) -> None:
    grafana.mode = "hang"
    notifier = grafana_notifier(grafana)
    notifier.post(step_events()[0])
    grafana.wait_for(1)  # the first request is being held by Grafana now
    for event in step_events() * 25:  # 100 more events while it hangs
        notifier.post(event)
    notifier.close(timeout=0)
    # every post returned although Grafana never answered; the worker is still stuck on the
    # first request, and nothing else reached Grafana
    assert len(grafana.requests) == 1


def test_draining_fifteen_hung_notifiers_takes_one_bound_in_all_and_logs_what_was_dropped(
    grafana: GrafanaStandIn, hooks: HookReceiver
) -> None:
    grafana.mode = "hang"  # holds every request (up to 60 s)
    settings = GrafanaSettings(url=grafana.url, token=grafana.token, timeout=30)
    notifiers: dict[str, object] = {
        f"checkout-{i:02d}": BackgroundNotifier([Target("grafana", GrafanaAnnotations(settings))])
        for i in range(1, 16)
    }
    answering = BackgroundNotifier([Target("webhook", Webhook(WebhookSettings(hooks.url)))])
    notifiers["answering"] = answering
    notifiers["off"] = NopNotifier()
    for notifier in notifiers.values():
        for event in step_events():  # started, ended, decision (a look is never posted)
            notifier.post(event)  # type: ignore[attr-defined]
    grafana.wait_for(15)  # each hung worker holds its first request
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        drain_all(notifiers, timeout=1.0)
    took = time.monotonic() - started
    assert took < 1.5, f"drained in {took:.1f} s"
    assert len(hooks.wait_for(1)) == 1  # a target that answers still gets what was queued
    dropped = [e for e in logs if e["event"] == "notifications dropped at shutdown"]
    assert sorted(e["analysis"] for e in dropped) == [f"checkout-{i:02d}" for i in range(1, 16)]
    assert {(e["target"], e["queued"], e["in_flight"]) for e in dropped} == {("grafana", 2, 1)}


# --- webhook and Slack -------------------------------------------------------------------


def test_the_webhook_gets_one_json_document_per_decision(hooks: HookReceiver) -> None:
    hook = Webhook(
        WebhookSettings(
            hooks.url,
            headers={"X-Team": "checkout"},
            report_url="https://verdict.example/api/v1/runs/{run}/report",
        )
    )
    notifier = BackgroundNotifier([Target("webhook", hook)], FAST)
    for event in step_events():
        notifier.post(event)
    notifier.close(timeout=10)
    (body,) = hooks.wait_for(1)
    assert hooks.headers[0]["X-Team"] == "checkout"
    assert body["kind"] == "decision"
    assert body["decision"] == "aborted"
    assert body["run"] == {
        "id": "r123",
        "analysis": "checkout",
        "namespace": "shop",
        "rollout": "checkout",
        "way": "demo",
    }
    assert body["step"] == 1 and body["weight"] == 5 and body["look"] == 6
    assert body["reason"] == "Critical metric error-rate failed"
    assert body["figures"]["error-rate"] == {
        "verdict": "fail",
        "canary": 0.051,
        "baseline": 0.004,
        "unit": "rate",
        "critical": True,
    }
    assert body["report"] == {
        "id": "r123",
        "url": "https://verdict.example/api/v1/runs/r123/report",
        "command": "verdict report r123",
    }
    assert body["time"] == "2026-11-26T10:03:00Z"


def test_slack_gets_a_readable_message(hooks: HookReceiver) -> None:
    notifier = BackgroundNotifier([Target("slack", Slack(SlackSettings(hooks.url)))], FAST)
    notifier.post(step_events()[3])
    notifier.close(timeout=10)
    (message,) = hooks.wait_for(1)
    assert "ABORTED" in message["text"] and "shop/checkout" in message["text"]
    texts = [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]
    assert any("Critical metric error-rate failed" in t for t in texts)
    assert any("error-rate fail: canary 5.1 % vs baseline 0.4 %" in t for t in texts)
    context = message["blocks"][-1]
    assert context["type"] == "context" and "verdict report r123" in context["elements"][0]["text"]
    for block in message["blocks"]:  # Slack's limits for a section's text
        if block["type"] == "section":
            assert block["text"]["type"] == "mrkdwn" and 0 < len(block["text"]["text"]) <= 3000


def test_filters_send_only_the_chosen_outcomes(hooks: HookReceiver) -> None:
    notifier = build_notifier(
        None,
        [NotificationSpec.model_validate({"type": "webhook", "url": hooks.url, "on": ["aborted"]})],
        policy=FAST,
    )
    promoted, aborted = step_events("promoted")[3], step_events("aborted")[3]
    for event in (promoted, aborted, promoted):
        notifier.post(event)
    notifier.close(timeout=10)
    time.sleep(0.1)
    assert [b["decision"] for b in hooks.bodies] == ["aborted"]


def test_a_webhook_that_fails_does_not_stop_the_others(hooks: HookReceiver) -> None:
    broken = Webhook(WebhookSettings("http://127.0.0.1:9/nothing", timeout=0.5))
    good = Webhook(WebhookSettings(hooks.url))
    notifier = BackgroundNotifier([Target("broken", broken), Target("good", good)], FAST)
    notifier.post(step_events()[3])
    notifier.close(timeout=10)
    assert len(hooks.wait_for(1)) == 1


# --- configuration -----------------------------------------------------------------------


def test_no_configuration_means_the_nop_notifier() -> None:
    assert isinstance(build_notifier(None, []), NopNotifier)


def test_grafana_token_comes_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grafana: GrafanaStandIn
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(grafana.token + "\n")
    spec = GrafanaSpec.model_validate({"url": grafana.url, "tokenFile": str(token_file)})
    assert spec.token() == grafana.token
    monkeypatch.setenv("GRAFANA_TOKEN", "from-env")
    assert (
        GrafanaSpec.model_validate({"url": grafana.url, "tokenEnv": "GRAFANA_TOKEN"}).token()
        == "from-env"
    )
    with pytest.raises(NotifyConfigError, match="tokenFile"):
        GrafanaSpec.model_validate({"url": grafana.url, "tokenFile": str(tmp_path / "no")}).token()
    # the command line's --grafana-url / --grafana-token-file win over the file
    notifier = build_notifier(
        GrafanaSpec.model_validate({"url": "http://elsewhere:3000", "tags": ["t"]}),
        override=GrafanaOverride(url=grafana.url, token_file=str(token_file)),
        policy=FAST,
    )
    notifier.post(step_events()[3])
    notifier.close(timeout=10)
    (request,) = grafana.wait_for(1)
    assert grafana.violations == [] and "t" in request.body["tags"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "slack", "on": ["aborted"]}, "exactly one of url"),
        ({"type": "webhook", "url": "http://x", "on": ["exploded"]}, "unknown outcome"),
        ({"type": "pager", "url": "http://x"}, "type"),
    ],
)
def test_bad_notification_settings_are_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NotificationSpec.model_validate(data)


def test_events_round_trip_through_json() -> None:
    for event in step_events():
        assert event_from_json(event_json(event)) == event

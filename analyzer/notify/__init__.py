"""Notifiers: tell people about a run's events (Grafana annotations, webhooks, Slack,
PagerDuty).

One protocol (`Notifier.post(event)`), one module per backend, a factory, a no-op, and a
`BackgroundNotifier` that the run service and the strategies are handed: it never blocks,
delays or changes a decision. Never handed to the judge.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analyzer.notify.background import BackgroundNotifier, RetryPolicy, Target
    from analyzer.notify.base import NopNotifier, Notifier
    from analyzer.notify.config import GrafanaSpec, NotificationSpec
    from analyzer.notify.errors import NotifyConfigError, NotifyError
    from analyzer.notify.events import (
        OUTCOMES,
        EventKind,
        Figure,
        RunEvent,
        RunInfo,
        event_from_json,
        event_json,
        figures_of,
    )
    from analyzer.notify.factory import GrafanaOverride, build_notifier
    from analyzer.notify.grafana import GrafanaAnnotations, GrafanaSettings
    from analyzer.notify.pagerduty import (
        RESOLVES,
        TRIGGERS,
        PagerDuty,
        PagerDutySettings,
        dedup_key,
        pagerduty_event,
    )
    from analyzer.notify.slack import Slack, SlackSettings, slack_message
    from analyzer.notify.webhook import Webhook, WebhookSettings, webhook_body

# Each name and the module that defines it: loaded on first use, so reading an analysis file
# (which only needs `config`) does not import the HTTP clients of every backend.
_HOME: dict[str, str] = {
    "BackgroundNotifier": "analyzer.notify.background",
    "EventKind": "analyzer.notify.events",
    "Figure": "analyzer.notify.events",
    "GrafanaAnnotations": "analyzer.notify.grafana",
    "GrafanaOverride": "analyzer.notify.factory",
    "GrafanaSettings": "analyzer.notify.grafana",
    "GrafanaSpec": "analyzer.notify.config",
    "NopNotifier": "analyzer.notify.base",
    "NotificationSpec": "analyzer.notify.config",
    "Notifier": "analyzer.notify.base",
    "NotifyConfigError": "analyzer.notify.errors",
    "NotifyError": "analyzer.notify.errors",
    "OUTCOMES": "analyzer.notify.events",
    "PagerDuty": "analyzer.notify.pagerduty",
    "PagerDutySettings": "analyzer.notify.pagerduty",
    "RESOLVES": "analyzer.notify.pagerduty",
    "RetryPolicy": "analyzer.notify.background",
    "RunEvent": "analyzer.notify.events",
    "RunInfo": "analyzer.notify.events",
    "Slack": "analyzer.notify.slack",
    "SlackSettings": "analyzer.notify.slack",
    "TRIGGERS": "analyzer.notify.pagerduty",
    "Target": "analyzer.notify.background",
    "Webhook": "analyzer.notify.webhook",
    "WebhookSettings": "analyzer.notify.webhook",
    "build_notifier": "analyzer.notify.factory",
    "dedup_key": "analyzer.notify.pagerduty",
    "event_from_json": "analyzer.notify.events",
    "event_json": "analyzer.notify.events",
    "figures_of": "analyzer.notify.events",
    "pagerduty_event": "analyzer.notify.pagerduty",
    "slack_message": "analyzer.notify.slack",
    "webhook_body": "analyzer.notify.webhook",
}


__all__ = [
    "OUTCOMES",
    "RESOLVES",
    "TRIGGERS",
    "BackgroundNotifier",
    "EventKind",
    "Figure",
    "GrafanaAnnotations",
    "GrafanaOverride",
    "GrafanaSettings",
    "GrafanaSpec",
    "NopNotifier",
    "NotificationSpec",
    "Notifier",
    "NotifyConfigError",
    "NotifyError",
    "PagerDuty",
    "PagerDutySettings",
    "RetryPolicy",
    "RunEvent",
    "RunInfo",
    "Slack",
    "SlackSettings",
    "Target",
    "Webhook",
    "WebhookSettings",
    "build_notifier",
    "dedup_key",
    "event_from_json",
    "event_json",
    "figures_of",
    "pagerduty_event",
    "slack_message",
    "webhook_body",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

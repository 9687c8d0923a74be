"""Notifiers: tell people about a run's events (Grafana annotations, webhooks, Slack).

One protocol (`Notifier.post(event)`), one module per backend, a factory, a no-op, and a
`BackgroundNotifier` that the run service and the strategies are handed: it never blocks,
delays or changes a decision. Never handed to the judge.
"""

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
from analyzer.notify.slack import Slack, SlackSettings, slack_message
from analyzer.notify.webhook import Webhook, WebhookSettings, webhook_body

__all__ = [
    "OUTCOMES",
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
    "RetryPolicy",
    "RunEvent",
    "RunInfo",
    "Slack",
    "SlackSettings",
    "Target",
    "Webhook",
    "WebhookSettings",
    "build_notifier",
    "event_from_json",
    "event_json",
    "figures_of",
    "slack_message",
    "webhook_body",
]

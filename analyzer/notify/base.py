"""The `Notifier` protocol and the no-op notifier."""

from __future__ import annotations

from typing import Protocol

from analyzer.notify.events import RunEvent


class Notifier(Protocol):
    """Tells someone about a run's event.

    `post` of a backend (Grafana, webhook, Slack) sends at once and raises `NotifyError` when it
    cannot; callers that must never wait (the run service, the strategies) are handed a
    `BackgroundNotifier`, whose `post` only queues the event and returns.
    """

    def post(self, event: RunEvent) -> None: ...


class NopNotifier:
    """Notifications off."""

    def post(self, event: RunEvent) -> None:
        return None

    def close(self, timeout: float = 0.0) -> None:
        return None

"""A generic webhook: each decision POSTed as a JSON document.

Body: `{"kind": "decision", "run": {id, analysis, namespace, rollout, way}, "step", "weight",
"look", "decision", "verdict", "reason", "summary", "time", "figures": {metric: {verdict,
canary, baseline, unit, critical}}, "report": {"id", "url", "command"}}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from analyzer.notify.events import EventKind, RunEvent, event_json
from analyzer.notify.http import send_json


@dataclass(frozen=True)
class WebhookSettings:
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    report_url: str | None = None
    """A link to the run's report, with `{run}` for the run id (e.g. a `verdict serve` URL)."""
    timeout: float = 5.0


def report_link(run_id: str, template: str | None) -> dict[str, Any]:
    return {
        "id": run_id,
        "url": template.replace("{run}", run_id) if template else None,
        "command": f"verdict report {run_id}",
    }


def webhook_body(event: RunEvent, report_url: str | None) -> dict[str, Any]:
    doc = event_json(event)
    doc.pop("metrics", None)
    doc.pop("outcome", None)
    return {
        **doc,
        "decision": event.outcome,
        "summary": event.summary(),
        "report": report_link(event.run.id, report_url),
    }


class Webhook:
    """A `Notifier` that POSTs every decision to a URL (other events are not sent)."""

    def __init__(self, settings: WebhookSettings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.Client(
            timeout=settings.timeout, headers={"User-Agent": "verdict", **settings.headers}
        )

    def close(self) -> None:
        self._client.close()

    def post(self, event: RunEvent) -> None:
        if event.kind is not EventKind.DECISION:
            return
        send_json(
            self._client,
            "POST",
            self.settings.url,
            webhook_body(event, self.settings.report_url),
            what="webhook",
        )

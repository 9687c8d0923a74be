"""A generic webhook: each decision POSTed as a JSON document.

Body: `{"kind": "decision", "run": {id, analysis, namespace, rollout, way}, "step", "weight",
"look", "decision", "verdict", "reason", "summary", "time", "figures": {metric: {verdict,
canary, baseline, unit, critical}}, "report": {"id", "url", "command"}}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from analyzer.notify.events import RunEvent, event_json
from analyzer.notify.http import DecisionPoster


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


class Webhook(DecisionPoster):
    """A `Notifier` that POSTs every decision to a URL (`webhook_body`)."""

    what = "webhook"

    def __init__(self, settings: WebhookSettings, *, client: httpx.Client | None = None) -> None:
        super().__init__(
            settings.url, timeout=settings.timeout, headers=settings.headers, client=client
        )
        self.settings = settings

    def body(self, event: RunEvent) -> dict[str, Any]:
        return webhook_body(event, self.settings.report_url)

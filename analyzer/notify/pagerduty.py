"""PagerDuty (Events API v2): a failing decision pages, a promotion resolves the page.

Each decision is one alert event, `POST`ed as JSON to the events URL (default
`https://events.pagerduty.com/v2/enqueue`):

* an outcome routed to PagerDuty (the notification's `on:`; without one, every failing outcome:
  `TRIGGERS`) is a `trigger`, with `payload` {`summary` (the event's one line, at most 1024
  characters), `source` (namespace/rollout), `severity`, `timestamp`, `component` (the rollout),
  `group` (the namespace), `class` (`rollout <outcome>`), `custom_details` (the webhook's
  document)} and, with `reportUrl`, a link to the run's report;
* `promoted` and `pass` (`RESOLVES`) are a `resolve`, whatever `on:` says: the rollout
  recovered or went through. PagerDuty drops a resolve for an alert it does not have.

`dedup_key` is `verdict-<run id>`: every trigger of one run lands on one alert (the controller's
`fail` then `aborted`), and the run's resolve closes it. PagerDuty answers 202; 400 (an invalid
event) is not retried, 429 (rate-limited), 5xx and network errors are (the background queue's
retries). The routing key is a secret: it is never logged, and any text PagerDuty (or a proxy)
sends back is masked before it reaches a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from analyzer.notify.config import PAGERDUTY_URL
from analyzer.notify.errors import NotifyError
from analyzer.notify.events import EventKind, RunEvent, format_time
from analyzer.notify.http import send_json
from analyzer.notify.webhook import report_link, webhook_body
from analyzer.redaction import MASK, Redactor

TRIGGERS = (
    "aborted",
    "abort-failed",
    "fail",
    "rolled-back",
    "switched-back",
    "image-pull",
    "crash-loop",
    "config-error",
    "readiness",
    "restarts",
    "sync-failed",
    "degraded",
    "rollback-not-recovered",
)
"""The outcomes that page when a `pagerduty` notification has no `on:`: every failing one."""
RESOLVES = ("promoted", "pass")
"""The outcomes that resolve the run's alert (always sent, whatever `on:` says)."""

SUMMARY_LIMIT = 1024
"""PagerDuty's limit on `payload.summary`, in characters."""
_DEDUP_LIMIT = 255
_SEVERITY = {
    "abort-failed": "critical",
    "rollback-not-recovered": "critical",
    "paused": "warning",
    "interrupted": "warning",
    "pending": "warning",
    "out-of-sync": "warning",
    "shared-incident": "warning",
}
"""Each outcome's severity when the notification names none (else `error`)."""


@dataclass(frozen=True)
class PagerDutySettings:
    routing_key: str = field(repr=False)
    """The integration key of an Events API v2 integration (a secret)."""
    url: str = PAGERDUTY_URL
    severity: str | None = None
    """The severity of every trigger (None: `error`, `warning` for a pause or an interruption);
    an abort that did not land (`abort-failed`) is always `critical`."""
    report_url: str | None = None
    timeout: float = 5.0


def dedup_key(run_id: str) -> str:
    """The alert of a run: every event of one run carries the same key."""
    return f"verdict-{run_id}"[:_DEDUP_LIMIT]


def pagerduty_event(event: RunEvent, settings: PagerDutySettings) -> dict[str, Any] | None:
    """The Events API v2 body for `event`, or None when it is not a decision (steps and looks
    are not sent)."""
    if event.kind is not EventKind.DECISION or not event.outcome:
        return None
    head = {"routing_key": settings.routing_key, "dedup_key": dedup_key(event.run.id)}
    if event.outcome in RESOLVES:
        return {**head, "event_action": "resolve"}
    link = report_link(event.run.id, settings.report_url)
    body: dict[str, Any] = {
        **head,
        "event_action": "trigger",
        "payload": {
            "summary": _clip(event.summary(), SUMMARY_LIMIT),
            "source": f"{event.run.namespace}/{event.run.rollout}",
            "severity": _severity(event.outcome, settings.severity),
            "timestamp": format_time(event.time),
            "component": event.run.rollout,
            "group": event.run.namespace,
            "class": f"rollout {event.outcome}",
            "custom_details": webhook_body(event, settings.report_url),
        },
        "client": "Verdict",
    }
    if link["url"]:
        body["client_url"] = link["url"]
        body["links"] = [{"href": link["url"], "text": f"Verdict report of run {event.run.id}"}]
    return body


def _severity(outcome: str, chosen: str | None) -> str:
    if outcome == "abort-failed":
        return "critical"  # the canary still takes traffic: someone has to act now
    return chosen or _SEVERITY.get(outcome, "error")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PagerDuty:
    """A `Notifier` that sends each decision to PagerDuty's Events API v2 (module docstring)."""

    what = "PagerDuty"

    def __init__(self, settings: PagerDutySettings, *, client: httpx.Client | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.Client(
            timeout=settings.timeout, headers={"User-Agent": "verdict"}
        )
        self._mask = Redactor.with_secrets([settings.routing_key])

    def close(self) -> None:
        self._client.close()

    def post(self, event: RunEvent) -> None:
        body = pagerduty_event(event, self.settings)
        if body is None:
            return
        try:
            send_json(self._client, "POST", self.settings.url, body, what=self.what)
        except NotifyError as error:  # an answer may echo the event: never log the key
            raise NotifyError(self._masked(str(error)), retry=error.retry) from None

    def _masked(self, message: str) -> str:
        """`message` without the routing key: in whole, and the start of it that is left where
        the answer's text was cut (`send_json` keeps its first 200 characters)."""
        message = self._mask.text(message)
        key = self.settings.routing_key
        for length in range(len(key) - 1, 3, -1):
            if message.endswith(key[:length]):
                return message[:-length] + MASK
        return message

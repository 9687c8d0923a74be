"""Slack incoming webhooks: each decision as a readable message (text plus Block Kit blocks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from analyzer.notify.events import RunEvent
from analyzer.notify.http import DecisionPoster
from analyzer.notify.webhook import report_link

_ICON = {
    "promoted": ":white_check_mark:",
    "pass": ":white_check_mark:",
    "aborted": ":x:",
    "abort-failed": ":rotating_light:",
    "fail": ":x:",
    "rolled-back": ":leftwards_arrow_with_hook:",
    "switched-back": ":leftwards_arrow_with_hook:",
    "paused": ":double_vertical_bar:",
    "image-pull": ":x:",
    "crash-loop": ":x:",
    "config-error": ":x:",
    "readiness": ":x:",
    "restarts": ":x:",
    "sync-failed": ":x:",
    "degraded": ":x:",
    "pending": ":hourglass_flowing_sand:",
    "out-of-sync": ":hourglass_flowing_sand:",
    "shared-incident": ":hourglass_flowing_sand:",
    "rollback-verified": ":white_check_mark:",
    "rollback-not-recovered": ":rotating_light:",
}


@dataclass(frozen=True)
class SlackSettings:
    url: str
    report_url: str | None = None
    timeout: float = 5.0


def slack_message(event: RunEvent, report_url: str | None) -> dict[str, Any]:
    """The message: a headline, the reason, and each metric's canary and baseline figures."""
    icon = _ICON.get(event.outcome or "", ":information_source:")
    where = f"{event.run.namespace}/{event.run.rollout}"
    at = f" at {event.weight} % canary weight" if event.weight is not None else ""
    headline = (
        f"{icon} *{(event.outcome or '').upper()}* `{where}`{at} (analysis {event.run.analysis})"
    )
    figures = [f"• {f.text()}" + (" (critical)" if f.critical else "") for f in event.figures]
    link = report_link(event.run.id, report_url)
    footer = f"run `{event.run.id}`" + (
        f" · <{link['url']}|report>" if link["url"] else f" · `{link['command']}`"
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _escape(event.reason) or "-"}},
    ]
    if figures:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _escape("\n".join(figures))}}
        )
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    return {"text": f"{headline}: {_escape(event.reason)}", "blocks": blocks}


def _escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Slack(DecisionPoster):
    """A `Notifier` that posts every decision to a Slack incoming webhook (`slack_message`)."""

    what = "Slack webhook"

    def __init__(self, settings: SlackSettings, *, client: httpx.Client | None = None) -> None:
        super().__init__(settings.url, timeout=settings.timeout, client=client)
        self.settings = settings

    def body(self, event: RunEvent) -> dict[str, Any]:
        return slack_message(event, self.settings.report_url)

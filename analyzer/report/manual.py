"""People's actions in a run's report: who promoted, aborted, paused or resumed it, and why.

Every way that takes a person's action records it as a decision event of the run whose `extra`
holds `manual: {action, by, reason, at}` (the canary loop when it takes a request, `verdict
promote|abort|pause|resume` on an Argo Rollout); the report lists them in order, apart from the
analysis' own decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from analyzer.notify.events import format_time, parse_time


@dataclass(frozen=True)
class ManualAction:
    action: str
    """promote, abort, pause or resume."""
    by: str
    reason: str
    asked: datetime | None
    """When the person asked."""
    time: datetime
    """When it was acted on."""
    outcome: str
    step: int | None
    weight: int | None

    def text(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"{self.action} by {self.by}{why}"


def manual_actions(events: Sequence[Mapping[str, Any]]) -> tuple[ManualAction, ...]:
    """The people's actions among a run's stored events, in order."""
    found = []
    for event in events:
        manual = (event.get("extra") or {}).get("manual")
        if event.get("kind") != "decision" or not isinstance(manual, Mapping):
            continue
        try:
            time = parse_time(str(event["time"]))
        except (KeyError, ValueError):
            continue
        found.append(
            ManualAction(
                action=str(manual.get("action") or "?"),
                by=str(manual.get("by") or "someone"),
                reason=str(manual.get("reason") or ""),
                asked=_time(manual.get("at")),
                time=time,
                outcome=str(event.get("outcome") or ""),
                step=_int(event.get("step")),
                weight=_int(event.get("weight")),
            )
        )
    return tuple(found)


def manual_json(actions: Sequence[ManualAction]) -> list[dict[str, Any]]:
    return [
        {
            "action": a.action,
            "by": a.by,
            "reason": a.reason,
            "askedAt": None if a.asked is None else format_time(a.asked),
            "time": format_time(a.time),
            "outcome": a.outcome,
            "step": a.step,
            "weight": a.weight,
        }
        for a in actions
    ]


def manual_html(actions: Sequence[ManualAction]) -> list[str]:
    """The report's "Manual actions" table (nothing when there are none)."""
    if not actions:
        return []
    rows = [
        '<h2>Manual actions</h2><table id="manual-actions"><tr><th>time</th><th>action</th>'
        "<th>by</th><th>reason</th><th>canary weight</th></tr>"
    ]
    for a in actions:
        weight = "-" if a.weight is None else f"{a.weight} %"
        rows.append(
            f"<tr><td>{format_time(a.time)}</td><td>{escape(a.action)}</td><td>{escape(a.by)}</td>"
            f"<td>{escape(a.reason or '-')}</td><td>{weight}</td></tr>"
        )
    rows.append("</table>")
    return rows


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def _int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value

"""People's requests to a running standalone rollout: promote, abort, pause, resume.

A person (`verdict canary promote|abort|pause|resume`, or `POST /api/v1/runs/{id}/actions`)
does not move traffic: the request is written into the run's progress in the run store
(`answer.rollout.request`: action, who, why, when, and an id), and the running loop of
`verdict canary run` (canary, blue/green or rolling: `STANDALONE`), which owns the route, the
Service or the Deployment, reads it at each look and acts through its own paths (an abort is its
abort: traffic back on stable, the selector back on blue, the Deployment rolled back; retried
until it lands). What the loop took is kept beside it (`answer.rollout.manual`, one entry per
request, with the time it was taken), so a request is acted on once, across restarts too.

One request waits at a time: a newer one replaces a request not yet taken. Only a standalone run
still running takes requests; an ended run (promoted, aborted, paused for a person, interrupted)
refuses them (`RunEnded`), as does a run that is not a standalone one (`NotActionable`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from analyzer.clock import format_time, parse_time
from analyzer.runs.errors import BadInput, RunError
from analyzer.runs.model import Run
from analyzer.runs.store import RunNotFound, RunStore

ACTIONS = ("promote", "abort", "pause", "resume")
"""What a person may ask of a running canary."""
STANDALONE = ("canary", "blueGreen", "rolling")
"""The strategies of `verdict canary run` whose running loop takes people's requests (the
progress' `strategy`)."""
REQUEST_KEY = "request"
"""The key of the waiting request in the run's progress (`answer.rollout`)."""
TAKEN_KEY = "manual"
"""The key of the requests the loop took, in order, in the run's progress."""
HELD_KEY = "held"
"""Set in the run's progress while a person's pause holds the canary at its weight."""
MAX_BY = 253
MAX_REASON = 1000
_RUNNING = "running"


class UnknownRun(RunError):
    """No run with this id in the store."""

    code = "unknown_run"


class RunEnded(RunError):
    """The run has ended (or is not running): nothing is there to act on the request."""

    code = "run_ended"


class NotActionable(RunError):
    """The run is not one a person's request can steer (not a standalone canary)."""

    code = "not_a_canary_run"


@dataclass(frozen=True)
class ActionRequest:
    """A person's request to a running canary."""

    id: str
    action: str
    by: str
    reason: str
    at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "id": self.id,
            "action": self.action,
            "by": self.by,
            "reason": self.reason,
            "at": format_time(self.at),
        }

    def describe(self) -> str:
        """What the request says in words: `abort by alice: the error budget is gone`."""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.action} by {self.by}{why}"


def new_request(action: str, by: str, reason: str, *, now: datetime) -> ActionRequest:
    """A request; raises `BadInput` for an unknown action or an empty `by`."""
    if action not in ACTIONS:
        raise BadInput(f"action: one of {', '.join(ACTIONS)}, got {action!r}", field="action")
    who = " ".join(by.split())
    if not who:
        raise BadInput("by: say who asks (a name)", field="by")
    return ActionRequest(
        id=uuid.uuid4().hex[:16],
        action=action,
        by=who[:MAX_BY],
        reason=" ".join(reason.split())[:MAX_REASON],
        at=now,
    )


def request_from(data: object) -> ActionRequest | None:
    """The request stored as `data` (`ActionRequest.as_dict`), or None when it is not one."""
    if not isinstance(data, Mapping):
        return None
    try:
        action, at = str(data["action"]), parse_time(str(data["at"]))
    except (KeyError, ValueError):
        return None
    if action not in ACTIONS or not data.get("id"):
        return None
    return ActionRequest(
        id=str(data["id"]),
        action=action,
        by=str(data.get("by") or "someone"),
        reason=str(data.get("reason") or ""),
        at=at,
    )


def progress_of(run: Run) -> dict[str, Any] | None:
    """A standalone run's progress (`answer.rollout`), or None for a run without one."""
    found = (run.answer or {}).get("rollout")
    return dict(found) if isinstance(found, dict) else None


def waiting_request(progress: Mapping[str, Any]) -> ActionRequest | None:
    """The request in `progress` the loop has not taken yet, if any."""
    request = request_from(progress.get(REQUEST_KEY))
    if request is None:
        return None
    taken = progress.get(TAKEN_KEY) or []
    if any(isinstance(t, Mapping) and t.get("id") == request.id for t in taken):
        return None
    return request


def with_stored_request(progress: dict[str, Any], stored: Run) -> dict[str, Any]:
    """`progress` as the loop writes it, keeping the request a person wrote in the store since
    the loop last read it (the loop never writes `request` itself)."""
    found = progress_of(stored) or {}
    if REQUEST_KEY not in found:
        return progress
    return {**progress, REQUEST_KEY: found[REQUEST_KEY]}


def request_action(
    store: RunStore, run_id: str, action: str, by: str, reason: str, *, now: datetime
) -> ActionRequest:
    """Record a person's request in a running canary's progress (atomic, in the store's
    transaction). Raises `BadInput`, `UnknownRun`, `NotActionable`, `RunEnded`, and the store's
    `StoreUnavailable`."""
    request = new_request(action, by, reason, now=now)

    def change(current: Run) -> Run:
        progress = progress_of(current)
        if progress is None or progress.get("strategy") not in STANDALONE:
            raise NotActionable(
                f"run {current.id} is not a `verdict canary run`: people's requests steer "
                "standalone rollouts (canary, blue/green, rolling); act on an Argo Rollout "
                f"with `verdict {action} ROLLOUT`",
                field="run_id",
            )
        state = str(progress.get("state") or "")
        if state != _RUNNING:
            raise RunEnded(
                f"run {current.id} is {state or 'not running'}"
                + (f" ({progress['reason']})" if progress.get("reason") else "")
                + f": no running loop is there to {action} it",
                field="run_id",
            )
        answer = dict(current.answer or {})
        answer["rollout"] = {**progress, REQUEST_KEY: request.as_dict()}
        return replace(current, answer=answer)

    try:
        store.update(run_id, change)
    except RunNotFound:
        raise UnknownRun(f"no run with id {run_id!r}", field="run_id") from None
    return request


def running_canary(runs: list[Run], *, analysis: str, namespace: str, rollout: str) -> Run | None:
    """The most recently updated standalone run (canary, blue/green, rolling) still running
    among `runs` for this analysis and workload (`rollout`: the VirtualService's name, the
    active Service's, or the Deployment's)."""
    for run in sorted(runs, key=lambda r: r.updated_at, reverse=True):
        key = run.key
        if (key.analysis, key.namespace, key.rollout) != (analysis, namespace, rollout):
            continue
        progress = progress_of(run) or {}
        if progress.get("strategy") in STANDALONE and progress.get("state") == _RUNNING:
            return run
    return None

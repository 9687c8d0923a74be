"""People's requests in the standalone canary loop (`analyzer.runs.requests`), read at each look.

`take_request` reads the run's stored progress and returns the request the loop has not taken
yet, marking it taken in the loop's progress (written with the loop's next save). The loop then:

* abort → `ManualAbort`: the loop's own abort path (traffic back on stable, retried until it
  lands), reason "aborted by <who>: <why>";
* promote → `ManualPromote`: 100 % to the canary as a **manual promotion**, recorded as such (the
  step's verdict, the progress' `promotion` and the decision say "manual promotion by <who>"):
  a person's decision, not a pass of the analysis;
* pause → `hold`: the canary stays at its weight and no step ends; looks go on, and a fail still
  aborts;
* resume → `release`: the step goes on, its end moved by the time it was held.

Each is recorded as a decision event of the run (`manual_event`: who, why, when), which the
report lists and the notifiers post.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from analyzer.clock import format_time, parse_time
from analyzer.notify import EventKind, RunEvent, RunInfo
from analyzer.runs.requests import (
    HELD_KEY,
    REQUEST_KEY,
    TAKEN_KEY,
    ActionRequest,
    progress_of,
    waiting_request,
)
from analyzer.runs.store import RunStore, StoreUnavailable

_log = structlog.get_logger()

OUTCOMES = {"abort": "aborted", "promote": "promoted", "pause": "paused", "resume": "resumed"}
"""The decision outcome a person's action is recorded with."""
_DONE = {"abort": "aborted", "promote": "manual promotion", "pause": "paused", "resume": "resumed"}


class ManualAbort(Exception):
    """A person asked the running canary to abort."""

    def __init__(self, request: ActionRequest) -> None:
        super().__init__(manual_reason(request))
        self.request = request


class ManualPromote(Exception):
    """A person asked the running canary to promote."""

    def __init__(self, request: ActionRequest) -> None:
        super().__init__(manual_reason(request))
        self.request = request


def manual_reason(request: ActionRequest) -> str:
    """`aborted by alice: the error budget is gone`, `manual promotion by bob`, ..."""
    why = f": {request.reason}" if request.reason else ""
    return f"{_DONE[request.action]} by {request.by}{why}"


def take_request(
    store: RunStore, run_id: str, progress: dict[str, Any], now: datetime
) -> ActionRequest | None:
    """The request waiting in the stored run and not taken yet by this loop (`progress` is the
    loop's own), marked taken in `progress`; None when there is none or the store cannot say
    (the next look asks again)."""
    try:
        run = store.get(run_id)
    except StoreUnavailable as error:
        _log.warning("people's requests not read this look", run=run_id, error=str(error))
        return None
    if run is None:
        return None
    stored = progress_of(run) or {}
    request = waiting_request({**progress, REQUEST_KEY: stored.get(REQUEST_KEY)})
    if request is None:
        return None
    taken = progress.setdefault(TAKEN_KEY, [])
    taken.append({**request.as_dict(), "takenAt": format_time(now)})
    return request


def held(progress: Mapping[str, Any]) -> bool:
    """Whether a person's pause holds the canary at its weight."""
    return bool(progress.get(HELD_KEY))


def hold(progress: dict[str, Any], request: ActionRequest, now: datetime, weight: int) -> bool:
    """Hold the canary at `weight`; False when it was held already."""
    if held(progress):
        return False
    progress[HELD_KEY] = {**request.as_dict(), "since": format_time(now), "weight": weight}
    return True


def release(progress: dict[str, Any], now: datetime) -> float | None:
    """End a hold: the seconds it lasted (added to the open step's `heldSeconds`, which moves
    the step's end), or None when nothing was held."""
    found = progress.pop(HELD_KEY, None)
    if not isinstance(found, Mapping):
        return None
    try:
        since = parse_time(str(found.get("since")))
    except ValueError:
        since = now
    seconds = max(0.0, (now - since).total_seconds())
    steps = progress.get("steps") or []
    if steps and steps[-1].get("end") is None:
        steps[-1]["heldSeconds"] = float(steps[-1].get("heldSeconds") or 0.0) + seconds
    return seconds


def held_seconds(progress: Mapping[str, Any]) -> float:
    """The seconds the open step was held by people's pauses that have ended."""
    steps = progress.get("steps") or []
    if not steps or steps[-1].get("end") is not None:
        return 0.0
    value = steps[-1].get("heldSeconds") or 0.0
    return float(value) if isinstance(value, int | float) else 0.0


def manual_event(
    run: RunInfo,
    request: ActionRequest,
    *,
    time: datetime,
    step: int | None,
    weight: int | None,
    note: str = "",
) -> RunEvent:
    """The decision event of a person's action (`extra.manual`: who, why, when asked)."""
    reason = manual_reason(request) + (f" ({note})" if note else "")
    return RunEvent(
        EventKind.DECISION,
        run,
        time,
        step=step,
        weight=weight,
        outcome=OUTCOMES[request.action],
        reason=reason,
        extra={"manual": request.as_dict()},
    )

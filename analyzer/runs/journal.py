"""The action journal: every action the controller takes, recorded before it is sent.

An action (promote, pause, abort a Rollout) is written to the run store as `pending` before its
first request is sent and marked `done` (or `dropped`) after. A process killed in between finds
the pending action at its next start and finishes or drops it after re-reading the Rollout, so
an action is neither sent twice nor lost. One action per (run, kind, step): deciding the same
thing again finds the existing entry instead of adding one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

ACTIONS_TABLE = "verdict_actions"
ACTION_COLUMNS = (
    "id",
    "run_id",
    "namespace",
    "rollout",
    "canary_hash",
    "kind",
    "step",
    "state",
    "reason",
    "created_at",
    "updated_at",
)
PENDING, DONE, DROPPED = "pending", "done", "dropped"


@dataclass(frozen=True)
class ActionRecord:
    """One action of the controller on one Rollout, for one run, at one step."""

    id: str
    run_id: str
    namespace: str
    rollout: str
    canary_hash: str
    kind: str
    """promote, pause or abort."""
    step: int
    """The Rollout's `status.currentStepIndex` when the action was decided."""
    state: str
    """pending (recorded, maybe not sent), done (sent or already in effect), dropped."""
    reason: str
    created_at: datetime
    updated_at: datetime

    def finished(self, state: str, now: datetime) -> ActionRecord:
        return replace(self, state=state, updated_at=now)


def new_action(
    *,
    run_id: str,
    namespace: str,
    rollout: str,
    canary_hash: str,
    kind: str,
    step: int,
    reason: str,
    now: datetime,
) -> ActionRecord:
    return ActionRecord(
        id=uuid.uuid4().hex[:16],
        run_id=run_id,
        namespace=namespace,
        rollout=rollout,
        canary_hash=canary_hash,
        kind=kind,
        step=step,
        state=PENDING,
        reason=reason[:2000],
        created_at=now,
        updated_at=now,
    )


def action_values(action: ActionRecord, time: Callable[[datetime], Any]) -> tuple[Any, ...]:
    return (
        action.id,
        action.run_id,
        action.namespace,
        action.rollout,
        action.canary_hash,
        action.kind,
        action.step,
        action.state,
        action.reason,
        time(action.created_at),
        time(action.updated_at),
    )


def action_from_row(row: tuple[Any, ...], time: Callable[[Any], datetime]) -> ActionRecord:
    v = dict(zip(ACTION_COLUMNS, row, strict=True))
    return ActionRecord(
        id=v["id"],
        run_id=v["run_id"],
        namespace=v["namespace"],
        rollout=v["rollout"],
        canary_hash=v["canary_hash"],
        kind=v["kind"],
        step=int(v["step"]),
        state=v["state"],
        reason=v["reason"] or "",
        created_at=time(v["created_at"]),
        updated_at=time(v["updated_at"]),
    )


def actions_schema(text: str, time: str) -> str:
    """The table's DDL for a database whose text and time column types are given."""
    return f"""
CREATE TABLE IF NOT EXISTS {ACTIONS_TABLE} (
    id {text} PRIMARY KEY,
    run_id {text} NOT NULL,
    namespace {text} NOT NULL,
    rollout {text} NOT NULL,
    canary_hash {text} NOT NULL,
    kind {text} NOT NULL,
    step integer NOT NULL,
    state {text} NOT NULL,
    reason {text} NOT NULL,
    created_at {time} NOT NULL,
    updated_at {time} NOT NULL,
    UNIQUE (run_id, kind, step)
);
CREATE INDEX IF NOT EXISTS {ACTIONS_TABLE}_state ON {ACTIONS_TABLE} (state);
"""

"""The `RunStore` protocol and what its implementations share: the table, rows, a small pool.

Every implementation keeps one table, `verdict_runs`, one row per run, unique on the run's key
(analysis, namespace, rollout, canary_hash). Looks are serialised per run: `update` reads the
row under a write lock (SQLite `BEGIN IMMEDIATE`, PostgreSQL `SELECT ... FOR UPDATE`), applies
a pure change to the state it read, and writes the result in the same transaction, so two
looks of one run committed at the same time (two threads, two replicas) are both counted and
neither overwrites the other.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

import structlog

from analyzer.runs.journal import ActionRecord
from analyzer.runs.model import Run, RunKey
from analyzer.runs.store.errors import RunUnreadable

EventsOf = Callable[[Run, Run], Sequence[tuple[str, dict[str, Any]]]]
"""The events of a change (`RunStore.update`): (kind, body) pairs from the state before and after."""

TABLE = "verdict_runs"
EVENTS_TABLE = "verdict_run_events"
"""A run's events (looks, steps, decisions) in order: what reports are made of."""

_log = structlog.get_logger()

COLUMNS = (
    "id",
    "analysis",
    "namespace",
    "rollout",
    "canary_hash",
    "stable_hash",
    "params",
    "started_at",
    "created_at",
    "updated_at",
    "looks",
    "verdict",
    "score",
    "reason",
    "failed",
    "answer",
)


class RunStore(Protocol):
    """Where runs live between calls (and across restarts and replicas)."""

    @property
    def description(self) -> str:
        """The store's URL without secrets, for messages."""
        ...

    def start(self, run: Run) -> Run:
        """Store `run` unless a run with the same key exists; return the stored run (atomic)."""
        ...

    def get(self, run_id: str) -> Run | None:
        """The run with this id, or None."""
        ...

    def find(self, key: RunKey) -> Run | None:
        """The run with this key, or None."""
        ...

    def update(
        self, run_id: str, change: Callable[[Run], Run], *, events: EventsOf | None = None
    ) -> Run:
        """Atomically replace the run's state by `change(current state)` and return it.

        `change` runs while the run is locked; it must be pure and quick. `events(before,
        after)` gives (kind, body) pairs appended to the run's history in the same transaction
        (one write a look: its state and its events). Raises `RunNotFound`.
        """
        ...

    def runs(self, *, limit: int = 100) -> list[Run]:
        """The most recently updated runs first."""
        ...

    def add_event(self, run_id: str, kind: str, body: dict[str, Any]) -> None:
        """Append one event (a look, a step, a decision) to the run's history."""
        ...

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's events in the order they were added (each `body`, with its `kind`)."""
        ...

    def count(self) -> int:
        """How many runs are stored (not yet expired)."""
        ...

    def expire(self, before: datetime) -> int:
        """Delete runs whose last look (or start) is older than `before`, with their events, and
        journal entries last changed before it; return how many runs."""
        ...

    def ping(self) -> None:
        """Raise `StoreUnavailable` unless the store can be read and can take one more look
        (a probe row is written in a transaction that is rolled back: a full or read-only
        store fails it)."""
        ...

    def record_action(self, action: ActionRecord) -> tuple[ActionRecord, bool]:
        """Store `action` unless one with the same (run, kind, step) exists (atomic); return the
        stored one and whether it is new (the action journal, `analyzer.runs.journal`)."""
        ...

    def finish_action(self, action: ActionRecord) -> None:
        """Write the action's new state (`done` or `dropped`)."""
        ...

    def pending_actions(self) -> list[ActionRecord]:
        """Actions recorded but not finished, oldest first."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


_PROBE_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def probe_run() -> Run:
    """The row `ping` writes and rolls back: as large as a real run's (one page or more)."""
    return Run(
        id="readiness-probe",
        key=RunKey("(readiness probe)", "", "", ""),
        stable_hash="",
        params={},
        started_at=_PROBE_TIME,
        created_at=_PROBE_TIME,
        updated_at=_PROBE_TIME,
        reason="x" * 4096,
    )


def json_text(value: Any) -> str:
    """Compact JSON for a stored column (numpy scalars become plain numbers)."""
    return json.dumps(value, separators=(",", ":"), default=_plain)


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"cannot store a {type(value).__name__} as JSON")


def row_values(run: Run, time: Callable[[datetime], Any]) -> tuple[Any, ...]:
    """The run as column values, in `COLUMNS` order; `time` converts datetimes for the database."""
    return (
        run.id,
        run.key.analysis,
        run.key.namespace,
        run.key.rollout,
        run.key.canary_hash,
        run.stable_hash,
        json_text(run.params),
        time(run.started_at),
        time(run.created_at),
        time(run.updated_at),
        run.looks,
        run.verdict,
        run.score,
        run.reason,
        json_text(run.failed),
        None if run.answer is None else json_text(run.answer),
    )


def run_from_row(row: tuple[Any, ...], time: Callable[[Any], datetime]) -> Run:
    """The inverse of `row_values`. Raises `RunUnreadable` for a row Verdict did not write
    (a JSON column that is not JSON, or not of its shape; a value of the wrong type)."""
    values = dict(zip(COLUMNS, row, strict=True))
    try:
        return _run_of(values, time)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as error:
        raise RunUnreadable(str(values.get("id")), _problem(values, error)) from None


def readable_runs(rows: Iterable[tuple[Any, ...]], time: Callable[[Any], datetime]) -> list[Run]:
    """The runs of `rows`; a row that cannot be read is left out and logged (one bad row must
    not hide every other run)."""
    runs: list[Run] = []
    for row in rows:
        try:
            runs.append(run_from_row(row, time))
        except RunUnreadable as error:
            _log.error("run store row left out of the list", run=error.run_id, error=str(error))
    return runs


_JSON_COLUMNS = {"params": dict, "failed": dict, "answer": dict}


def _problem(values: dict[str, Any], error: BaseException) -> str:
    """Which column is wrong, and how."""
    for column, kind in _JSON_COLUMNS.items():
        text = values.get(column)
        if text is None:
            continue
        try:
            parsed = json.loads(text)
        except (ValueError, TypeError) as bad:
            return f"{column}: not valid JSON: {bad}"
        if not isinstance(parsed, kind):
            return f"{column}: expected a JSON object, got {type(parsed).__name__}"
    return f"{type(error).__name__}: {error}"


def _run_of(values: dict[str, Any], time: Callable[[Any], datetime]) -> Run:
    params = json.loads(values["params"])
    failed = json.loads(values["failed"] or "{}")
    answer = None if values["answer"] is None else json.loads(values["answer"])
    if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
        raise TypeError("params: expected a JSON object of strings")
    if not isinstance(failed, dict) or not all(isinstance(v, dict) for v in failed.values()):
        raise TypeError("failed: expected a JSON object of objects")
    if answer is not None and not isinstance(answer, dict):
        raise TypeError("answer: expected a JSON object")
    return Run(
        id=values["id"],
        key=RunKey(
            analysis=values["analysis"],
            namespace=values["namespace"],
            rollout=values["rollout"],
            canary_hash=values["canary_hash"],
        ),
        stable_hash=values["stable_hash"],
        params=params,
        started_at=time(values["started_at"]),
        created_at=time(values["created_at"]),
        updated_at=time(values["updated_at"]),
        looks=int(values["looks"]),
        verdict=values["verdict"],
        score=None if values["score"] is None else float(values["score"]),
        reason=values["reason"] or "",
        failed=failed,
        answer=answer,
    )


Connection = TypeVar("Connection")


class Pool(Generic[Connection]):
    """A few open connections reused across calls (one user at a time per connection).

    `connect` opens one; a connection that raised during use is closed, not reused. `prepare`
    (creating the schema) runs once, on the first connection handed out, before it is used;
    if it raises, it runs again on the next one. `check` runs on an idle connection before it
    is handed out again: one that fails it (the server restarted, a proxy dropped it) is closed
    with every other idle one, and a fresh connection is opened instead, so the first call
    after an outage succeeds.
    """

    def __init__(
        self,
        connect: Callable[[], Connection],
        close: Callable[[Connection], None],
        *,
        prepare: Callable[[Connection], None] | None = None,
        check: Callable[[Connection], None] | None = None,
        keep: int = 8,
    ) -> None:
        self._connect = connect
        self._close = close
        self._check = check
        self._prepare = prepare
        self._prepared = prepare is None
        self._prepare_lock = threading.Lock()
        self._keep = keep
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        conn = self._checked_idle()
        if conn is None:
            conn = self._connect()
        try:
            self._prepare_once(conn)
            yield conn
        except BaseException:
            self._close(conn)
            raise
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(conn)
                return
        self._close(conn)

    def _checked_idle(self) -> Connection | None:
        """An idle connection that passes `check`, or None (stale ones are all dropped)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is None or self._check is None:
            return conn
        try:
            self._check(conn)
            return conn
        except Exception:
            with self._lock:
                stale, self._idle = [conn, *self._idle], []
            for old in stale:
                with contextlib.suppress(Exception):
                    self._close(old)
            return None

    def _prepare_once(self, conn: Connection) -> None:
        if self._prepared:
            return
        with self._prepare_lock:
            if not self._prepared and self._prepare is not None:
                self._prepare(conn)
                self._prepared = True

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            self._close(conn)

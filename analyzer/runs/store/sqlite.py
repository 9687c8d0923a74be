"""The run store in a SQLite file: the default, embedded, nothing to start.

URL: `sqlite:///relative/path.db` or `sqlite:////absolute/path.db`, with optional query options:

* `mode=ro`: open the file read-only (every look then answers 503: nothing can be recorded);
* `max_page_count=N`: cap the file at N pages (SQLite's page size, 4 KiB by default), so a full
  store is a clear error instead of a full disk;
* `timeout=S`: seconds to wait for another writer's lock (default 5).

The file uses write-ahead logging (readers never wait for a writer) with `synchronous=NORMAL`:
a commit survives a crash of Verdict; a power cut may lose the last looks, which Argo then
repeats. One writer at a time: `update` takes the write lock (`BEGIN IMMEDIATE`) for the short
read-change-write of one look, never while Prometheus is being asked.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from analyzer.runs.journal import (
    ACTION_COLUMNS,
    ACTIONS_TABLE,
    PENDING,
    ActionRecord,
    action_from_row,
    action_values,
    actions_schema,
)
from analyzer.runs.model import Run, RunKey
from analyzer.runs.store.base import (
    COLUMNS,
    EVENTS_TABLE,
    TABLE,
    EventsOf,
    Pool,
    json_text,
    probe_run,
    readable_runs,
    row_values,
    run_from_row,
)
from analyzer.runs.store.errors import RunNotFound, StoreConfigError, StoreUnavailable

_SELECT = f"SELECT {', '.join(COLUMNS)} FROM {TABLE}"
_INSERT = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
    "ON CONFLICT (analysis, namespace, rollout, canary_hash) DO NOTHING"
)
_UPDATE = f"UPDATE {TABLE} SET {', '.join(f'{c} = ?' for c in COLUMNS[1:])} WHERE id = ?"
_BY_KEY = " WHERE analysis = ? AND namespace = ? AND rollout = ? AND canary_hash = ?"
_EVENT_INSERT = f"INSERT INTO {EVENTS_TABLE} (run_id, kind, body) VALUES (?, ?, ?)"
_ACTION_SELECT = f"SELECT {', '.join(ACTION_COLUMNS)} FROM {ACTIONS_TABLE}"
_ACTION_INSERT = (
    f"INSERT INTO {ACTIONS_TABLE} ({', '.join(ACTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ACTION_COLUMNS)}) "
    "ON CONFLICT (run_id, kind, step) DO NOTHING"
)
_ACTION_BY_KEY = " WHERE run_id = ? AND kind = ? AND step = ?"
_ACTIONS_SCHEMA = actions_schema("TEXT", "REAL")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id TEXT PRIMARY KEY,
    analysis TEXT NOT NULL,
    namespace TEXT NOT NULL,
    rollout TEXT NOT NULL,
    canary_hash TEXT NOT NULL,
    stable_hash TEXT NOT NULL,
    params TEXT NOT NULL,
    started_at REAL NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    looks INTEGER NOT NULL,
    verdict TEXT,
    score REAL,
    reason TEXT NOT NULL,
    failed TEXT NOT NULL,
    answer TEXT,
    UNIQUE (analysis, namespace, rollout, canary_hash)
);
CREATE INDEX IF NOT EXISTS {TABLE}_updated_at ON {TABLE} (updated_at);
"""
_EVENTS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_run ON {EVENTS_TABLE} (run_id, id);
"""


def _to_db(value: datetime) -> float:
    return value.timestamp()


def _from_db(value: object) -> datetime:
    return datetime.fromtimestamp(float(value), UTC)  # type: ignore[arg-type]


def _describe(error: sqlite3.Error, where: str) -> str:
    text = str(error)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return f"the run store {where} is read-only ({text}): looks cannot be recorded"
    if "full" in lowered:
        return f"the run store {where} is full ({text}): free space or expire runs"
    if "locked" in lowered or "busy" in lowered:
        return f"the run store {where} is locked by another writer ({text})"
    if "unable to open" in lowered:
        return f"the run store {where} cannot be opened ({text}): check the path and permissions"
    return f"the run store {where} failed: {text}"


class SQLiteStore:
    """A `RunStore` in one SQLite file (see the module docstring for the URL)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "sqlite":
            raise StoreConfigError(f"not a SQLite URL: {url!r}")
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path or path == ":memory:":
            raise StoreConfigError(
                f"{url!r}: give a file, e.g. sqlite:///verdict-runs.sqlite (relative) "
                "or sqlite:////var/lib/verdict/runs.sqlite (absolute)"
            )
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = sorted(set(options) - {"mode", "max_page_count", "timeout"})
        if unknown:
            raise StoreConfigError(f"{url!r}: unknown option(s) {', '.join(unknown)}")
        self.path = Path(path)
        self.read_only = options.get("mode") == "ro"
        if options.get("mode") not in (None, "ro", "rw", "rwc"):
            raise StoreConfigError(f"{url!r}: mode must be ro or rw")
        try:
            self.max_page_count = (
                int(options["max_page_count"]) if "max_page_count" in options else None
            )
            self.timeout = float(options.get("timeout", "5"))
        except ValueError:
            raise StoreConfigError(f"{url!r}: max_page_count and timeout are numbers") from None
        self._description = f"sqlite:///{path}"
        self._write_lock = threading.Lock()
        # whether the latest write failed (until one lands): `ping` then commits its probe
        self._write_failed = False
        self._events_ready = False  # the events table is known to exist
        self.writes = 0
        """Write transactions committed (`verdict_store_writes_total`)."""
        self._pool: Pool[sqlite3.Connection] = Pool(
            self._connect, lambda c: c.close(), prepare=self._create_schema
        )

    @property
    def description(self) -> str:
        return self._description

    # --- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        mode = "ro" if self.read_only else "rwc"
        uri = f"{self.path.resolve().as_uri()}?mode={mode}"
        conn = sqlite3.connect(
            uri, uri=True, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute("PRAGMA synchronous=NORMAL")
            if self.max_page_count is not None:
                conn.execute(f"PRAGMA max_page_count={self.max_page_count:d}")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except sqlite3.Error as error:
            raise StoreUnavailable(_describe(error, self._description)) from error

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
        ).fetchone()
        if not exists:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[None]:
        # One writer at a time in this process: threads queue on a lock instead of SQLite's
        # busy handler, whose growing sleeps let a writer starve behind many others.
        with self._write_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    if conn.in_transaction:  # SQLite rolls back by itself on some errors (FULL)
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error:
                self._write_failed = True
                raise
            self._write_failed = False
            self.writes += 1

    # --- RunStore ----------------------------------------------------------------------

    def start(self, run: Run) -> Run:
        key = _key(run.key)
        with self._db() as conn:
            row = conn.execute(_SELECT + _BY_KEY, key).fetchone()
            if row is None:
                with self._write(conn):
                    conn.execute(_INSERT, row_values(run, _to_db))
                    row = conn.execute(_SELECT + _BY_KEY, key).fetchone()
        return run_from_row(row, _from_db)

    def get(self, run_id: str) -> Run | None:
        with self._db() as conn:
            row = conn.execute(_SELECT + " WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else run_from_row(row, _from_db)

    def find(self, key: RunKey) -> Run | None:
        with self._db() as conn:
            row = conn.execute(_SELECT + _BY_KEY, _key(key)).fetchone()
        return None if row is None else run_from_row(row, _from_db)

    def update(
        self, run_id: str, change: Callable[[Run], Run], *, events: EventsOf | None = None
    ) -> Run:
        if events is not None:
            self._events_table()
        with self._db() as conn, self._write(conn):
            row = conn.execute(_SELECT + " WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            current = run_from_row(row, _from_db)
            new = change(current)
            if new.id != run_id:
                raise ValueError("a change must keep the run's id")
            values = row_values(new, _to_db)
            conn.execute(_UPDATE, (*values[1:], run_id))
            if events is not None:
                conn.executemany(
                    _EVENT_INSERT,
                    [(run_id, kind, json_text(body)) for kind, body in events(current, new)],
                )
        return new

    def runs(self, *, limit: int = 100) -> list[Run]:
        with self._db() as conn:
            rows = conn.execute(
                _SELECT + " ORDER BY updated_at DESC LIMIT ?", (max(limit, 0),)
            ).fetchall()
        return readable_runs(rows, _from_db)

    # --- a run's events (their table is made with the first event) ------------------------

    @staticmethod
    def _has_events(conn: sqlite3.Connection) -> bool:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (EVENTS_TABLE,)
        ).fetchone()
        return found is not None

    def _events_table(self) -> None:
        """Make the events table unless this store has seen it (outside any transaction:
        `executescript` commits first)."""
        if self._events_ready:
            return
        with self._db() as conn:
            if not self._has_events(conn):
                conn.executescript(_EVENTS_SCHEMA)
        self._events_ready = True

    def add_event(self, run_id: str, kind: str, body: dict[str, Any]) -> None:
        self._events_table()
        with self._db() as conn, self._write(conn):
            conn.execute(_EVENT_INSERT, (run_id, kind, json_text(body)))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._db() as conn:
            if not self._has_events(conn):
                return []
            rows = conn.execute(
                f"SELECT kind, body FROM {EVENTS_TABLE} WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()
        return [{**json.loads(body), "kind": kind} for kind, body in rows]

    def count(self) -> int:
        with self._db() as conn:
            return int(conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])

    def expire(self, before: datetime) -> int:
        with self._db() as conn, self._write(conn):
            if self._has_events(conn):
                conn.execute(
                    f"DELETE FROM {EVENTS_TABLE} WHERE run_id IN "
                    f"(SELECT id FROM {TABLE} WHERE updated_at < ?)",
                    (_to_db(before),),
                )
            cursor = conn.execute(f"DELETE FROM {TABLE} WHERE updated_at < ?", (_to_db(before),))
            if self._has_journal(conn):
                conn.execute(f"DELETE FROM {ACTIONS_TABLE} WHERE updated_at < ?", (_to_db(before),))
            return int(cursor.rowcount)

    # --- the action journal (its table is made with the first action: a store used by the web
    # provider alone never has it) --------------------------------------------------------

    @staticmethod
    def _has_journal(conn: sqlite3.Connection) -> bool:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (ACTIONS_TABLE,)
        ).fetchone()
        return found is not None

    def record_action(self, action: ActionRecord) -> tuple[ActionRecord, bool]:
        key = (action.run_id, action.kind, action.step)
        with self._db() as conn:
            if not self._has_journal(conn):
                conn.executescript(_ACTIONS_SCHEMA)
        with self._db() as conn, self._write(conn):
            cursor = conn.execute(_ACTION_INSERT, action_values(action, _to_db))
            row = conn.execute(_ACTION_SELECT + _ACTION_BY_KEY, key).fetchone()
        return action_from_row(row, _from_db), cursor.rowcount == 1

    def finish_action(self, action: ActionRecord) -> None:
        with self._db() as conn, self._write(conn):
            conn.execute(
                f"UPDATE {ACTIONS_TABLE} SET state = ?, updated_at = ? WHERE id = ?",
                (action.state, _to_db(action.updated_at), action.id),
            )

    def pending_actions(self) -> list[ActionRecord]:
        with self._db() as conn:
            if not self._has_journal(conn):
                return []
            rows = conn.execute(
                _ACTION_SELECT + " WHERE state = ? ORDER BY created_at", (PENDING,)
            ).fetchall()
        return [action_from_row(r, _from_db) for r in rows]

    def ping(self) -> None:
        probe = probe_run()
        with self._db() as conn:
            conn.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchall()
            with self._write_lock:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute(_INSERT, row_values(probe, _to_db))
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
            if self._write_failed:
                # A rolled-back probe never reaches the disk, so a full file system passes it
                # while every look fails at its commit. After a failed write, the probe
                # commits (the row written and deleted): ready again once writes land.
                with self._write(conn):
                    conn.execute(_INSERT, row_values(probe, _to_db))
                    conn.execute(f"DELETE FROM {TABLE} WHERE id = ?", (probe.id,))

    def close(self) -> None:
        self._pool.close()


def _key(key: RunKey) -> tuple[str, str, str, str]:
    return (key.analysis, key.namespace, key.rollout, key.canary_hash)

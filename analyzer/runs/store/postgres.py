"""The run store in PostgreSQL: for several `verdict serve` replicas sharing their runs.

URL: `postgresql://user:password@host:5432/database` (any libpq URL; `postgres://` too). Verdict
creates its table, `verdict_runs`, on first use (the user needs CREATE on the schema once, then
SELECT, INSERT, UPDATE and DELETE on the table).

Looks are serialised per run with a row lock (`SELECT ... FOR UPDATE` inside the transaction
that writes the look), so replicas looking at the same run at once both count and neither
overwrites the other. Statements and lock waits are bounded (`timeout`, 5 s by default) so a
stuck database turns into a 503, not a hung call. Needs the `postgres` extra (psycopg 3).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors

from analyzer.redaction import Redactor, url_secrets
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
_EVENT_INSERT = f"INSERT INTO {EVENTS_TABLE} (run_id, kind, body) VALUES (%s, %s, %s)"
_INSERT = (
    f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)}) "
    "ON CONFLICT (analysis, namespace, rollout, canary_hash) DO NOTHING"
)
_UPDATE = f"UPDATE {TABLE} SET {', '.join(f'{c} = %s' for c in COLUMNS[1:])} WHERE id = %s"
_BY_KEY = " WHERE analysis = %s AND namespace = %s AND rollout = %s AND canary_hash = %s"
_ACTION_SELECT = f"SELECT {', '.join(ACTION_COLUMNS)} FROM {ACTIONS_TABLE}"
_ACTION_INSERT = (
    f"INSERT INTO {ACTIONS_TABLE} ({', '.join(ACTION_COLUMNS)}) "
    f"VALUES ({', '.join('%s' for _ in ACTION_COLUMNS)}) "
    "ON CONFLICT (run_id, kind, step) DO NOTHING"
)
_ACTION_BY_KEY = " WHERE run_id = %s AND kind = %s AND step = %s"
_ACTIONS_SCHEMA = actions_schema("text", "timestamptz")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id text PRIMARY KEY,
    analysis text NOT NULL,
    namespace text NOT NULL,
    rollout text NOT NULL,
    canary_hash text NOT NULL,
    stable_hash text NOT NULL,
    params text NOT NULL,
    started_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    looks integer NOT NULL,
    verdict text,
    score double precision,
    reason text NOT NULL,
    failed text NOT NULL,
    answer text,
    UNIQUE (analysis, namespace, rollout, canary_hash)
);
CREATE INDEX IF NOT EXISTS {TABLE}_updated_at ON {TABLE} (updated_at);
"""
_EVENTS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
    id bigserial PRIMARY KEY,
    run_id text NOT NULL,
    kind text NOT NULL,
    body text NOT NULL
);
CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_run ON {EVENTS_TABLE} (run_id, id);
"""
_SCHEMA_LOCK_ID = 0x76657264  # advisory lock: replicas starting together create the table once


def _to_db(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _from_db(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {value!r}")
    return value.astimezone(UTC)


def redact(url: str) -> str:
    """The URL without its password (host and port as written, even a port out of range)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _describe(error: psycopg.Error, where: str, secrets: Redactor) -> str:
    # libpq and psycopg may quote the password in their errors (one with a space, say)
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    text = secrets.text(text)
    if isinstance(error, pg_errors.InsufficientPrivilege | pg_errors.ReadOnlySqlTransaction):
        return f"the run store {where} is read-only for Verdict ({text}): looks cannot be recorded"
    if isinstance(error, pg_errors.DiskFull | pg_errors.OutOfMemory):
        return f"the run store {where} is full ({text})"
    if isinstance(error, pg_errors.LockNotAvailable | pg_errors.QueryCanceled):
        return f"the run store {where} did not answer in time ({text})"
    if isinstance(error, psycopg.OperationalError):
        return f"the run store {where} is unreachable: {text}"
    return f"the run store {where} failed: {text}"


class PostgresStore:
    """A `RunStore` in a PostgreSQL database (see the module docstring)."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgresql", "postgres"):
            raise StoreConfigError(f"not a PostgreSQL URL: {redact(url)!r}")
        try:
            parts.port  # noqa: B018  (raises ValueError on a port out of range or not a number)
        except ValueError as error:
            raise StoreConfigError(f"{redact(url)!r}: {error}") from None
        if timeout <= 0:
            raise StoreConfigError("the store timeout must be positive")
        self.url = url
        self.timeout = timeout
        self._description = redact(url)
        self._secrets = Redactor.with_secrets(url_secrets(url))
        # whether a write found the disk full (until `ping`'s committed probe lands)
        self._write_failed = False
        self._pool: Pool[psycopg.Connection[Any]] = Pool(
            self._connect, lambda c: c.close(), prepare=self._create_schema, check=_alive
        )

    @property
    def description(self) -> str:
        return self._description

    # --- connections -------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        millis = int(self.timeout * 1000)
        return psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(1, round(self.timeout)),
            options=f"-c statement_timeout={millis} -c lock_timeout={millis}",
            application_name="verdict",
        )

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.Error as error:
            if isinstance(error, pg_errors.DiskFull):
                self._write_failed = True
            raise StoreUnavailable(_describe(error, self._description, self._secrets)) from error

    @staticmethod
    def _create_schema(conn: psycopg.Connection[Any]) -> None:
        for table, schema in (
            (TABLE, _SCHEMA),
            (ACTIONS_TABLE, _ACTIONS_SCHEMA),
            (EVENTS_TABLE, _EVENTS_SCHEMA),
        ):
            exists = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
            if exists is None or exists[0] is None:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_ID,))
                    conn.execute(schema)

    # --- RunStore ----------------------------------------------------------------------

    def start(self, run: Run) -> Run:
        key = _key(run.key)
        with self._db() as conn:
            row = conn.execute(_SELECT + _BY_KEY, key).fetchone()
            if row is None:
                with conn.transaction():
                    conn.execute(_INSERT, row_values(run, _to_db))
                    row = conn.execute(_SELECT + _BY_KEY, key).fetchone()
        if row is None:  # deleted between the insert and the read: vanishingly rare
            raise StoreUnavailable(f"the run store {self._description} lost a run being started")
        return run_from_row(tuple(row), _from_db)

    def get(self, run_id: str) -> Run | None:
        with self._db() as conn:
            row = conn.execute(_SELECT + " WHERE id = %s", (run_id,)).fetchone()
        return None if row is None else run_from_row(tuple(row), _from_db)

    def find(self, key: RunKey) -> Run | None:
        with self._db() as conn:
            row = conn.execute(_SELECT + _BY_KEY, _key(key)).fetchone()
        return None if row is None else run_from_row(tuple(row), _from_db)

    def update(
        self, run_id: str, change: Callable[[Run], Run], *, events: EventsOf | None = None
    ) -> Run:
        with self._db() as conn, conn.transaction():
            row = conn.execute(_SELECT + " WHERE id = %s FOR UPDATE", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            current = run_from_row(tuple(row), _from_db)
            new = change(current)
            if new.id != run_id:
                raise ValueError("a change must keep the run's id")
            values = row_values(new, _to_db)
            conn.execute(_UPDATE, (*values[1:], run_id))
            if events is not None:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        _EVENT_INSERT,
                        [(run_id, kind, json_text(body)) for kind, body in events(current, new)],
                    )
        return new

    def runs(self, *, limit: int = 100) -> list[Run]:
        with self._db() as conn:
            rows = conn.execute(
                _SELECT + " ORDER BY updated_at DESC LIMIT %s", (max(limit, 0),)
            ).fetchall()
        return readable_runs((tuple(r) for r in rows), _from_db)

    def add_event(self, run_id: str, kind: str, body: dict[str, Any]) -> None:
        with self._db() as conn:
            conn.execute(_EVENT_INSERT, (run_id, kind, json_text(body)))

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self._db() as conn:
            rows = conn.execute(
                f"SELECT kind, body FROM {EVENTS_TABLE} WHERE run_id = %s ORDER BY id", (run_id,)
            ).fetchall()
        return [{**json.loads(body), "kind": kind} for kind, body in rows]

    def count(self) -> int:
        with self._db() as conn:
            row = conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
        return int(row[0]) if row else 0

    def expire(self, before: datetime) -> int:
        with self._db() as conn, conn.transaction():
            conn.execute(
                f"DELETE FROM {EVENTS_TABLE} WHERE run_id IN "
                f"(SELECT id FROM {TABLE} WHERE updated_at < %s)",
                (_to_db(before),),
            )
            cursor = conn.execute(f"DELETE FROM {TABLE} WHERE updated_at < %s", (_to_db(before),))
            conn.execute(f"DELETE FROM {ACTIONS_TABLE} WHERE updated_at < %s", (_to_db(before),))
            return int(cursor.rowcount)

    def record_action(self, action: ActionRecord) -> tuple[ActionRecord, bool]:
        key = (action.run_id, action.kind, action.step)
        with self._db() as conn, conn.transaction():
            cursor = conn.execute(_ACTION_INSERT, action_values(action, _to_db))
            row = conn.execute(_ACTION_SELECT + _ACTION_BY_KEY, key).fetchone()
        if row is None:
            raise StoreUnavailable(f"the run store {self._description} lost an action")
        return action_from_row(tuple(row), _from_db), cursor.rowcount == 1

    def finish_action(self, action: ActionRecord) -> None:
        with self._db() as conn:
            conn.execute(
                f"UPDATE {ACTIONS_TABLE} SET state = %s, updated_at = %s WHERE id = %s",
                (action.state, _to_db(action.updated_at), action.id),
            )

    def pending_actions(self) -> list[ActionRecord]:
        with self._db() as conn:
            rows = conn.execute(
                _ACTION_SELECT + " WHERE state = %s ORDER BY created_at", (PENDING,)
            ).fetchall()
        return [action_from_row(tuple(r), _from_db) for r in rows]

    def ping(self) -> None:
        probe = probe_run()
        with self._db() as conn:
            with conn.transaction(force_rollback=True):
                conn.execute(f"SELECT 1 FROM {TABLE} LIMIT 1").fetchall()
                conn.execute(_INSERT, row_values(probe, _to_db))
            if self._write_failed:
                # a rolled-back probe may fit where a look's commit does not (a full disk):
                # after one failed, the probe commits (written and deleted)
                with conn.transaction():
                    conn.execute(_INSERT, row_values(probe, _to_db))
                    conn.execute(f"DELETE FROM {TABLE} WHERE id = %s", (probe.id,))
                self._write_failed = False

    def close(self) -> None:
        self._pool.close()


def _alive(conn: psycopg.Connection[Any]) -> None:
    """Raise unless the connection still reaches the server (one round trip)."""
    if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        raise psycopg.OperationalError("connection not reusable")
    conn.execute("SELECT 1")


def _key(key: RunKey) -> tuple[str, str, str, str]:
    return (key.analysis, key.namespace, key.rollout, key.canary_hash)

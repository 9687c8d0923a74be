"""A PostgreSQL store recovers at once: after the server drops every connection (a restart, a
failover, a proxy timeout), the first call succeeds on a fresh connection instead of failing on
stale pooled ones (Argo's `consecutiveErrorLimit` would otherwise abort a healthy rollout)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest

from analyzer.runs import RunKey, new_run
from analyzer.runs.store import open_store
from tests.test_store import (  # noqa: F401  (postgres_server: fixture)
    PostgresServer,
    _as_postgres_user,
    _pg_bindir,
    _run_as,
    postgres_server,
)

pytestmark = pytest.mark.postgres
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def _drop_verdict_connections(server: PostgresServer) -> int:
    with psycopg.connect(server.url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'verdict' AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_the_first_call_after_the_server_dropped_every_connection_succeeds(
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    store = open_store(postgres_server.url)
    try:
        run = store.start(
            new_run(
                RunKey("checkout", "shop", "web", "recover1"),
                stable_hash="s",
                params={},
                started_at=NOW,
                now=NOW,
            )
        )
        # several pooled connections, as concurrent looks leave behind
        with store._pool.connection(), store._pool.connection(), store._pool.connection():
            pass
        assert _drop_verdict_connections(postgres_server) >= 3
        for look in range(1, 9):  # every call after the outage succeeds, the first included
            updated = store.update(run.id, lambda r: replace(r, looks=r.looks + 1))
            assert updated.looks == look
        assert store.get(run.id) is not None and store.count() >= 1
    finally:
        store.close()


def test_a_real_postgres_restart_loses_no_look_and_the_next_call_succeeds(
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        row = admin.execute("SHOW data_directory").fetchone()
    assert row is not None
    data_dir = str(row[0])
    prefix, _, _ = _as_postgres_user()
    store = open_store(postgres_server.url)
    try:
        run = store.start(
            new_run(
                RunKey("checkout", "shop", "web", "restart1"),
                stable_hash="s",
                params={},
                started_at=NOW,
                now=NOW,
            )
        )
        store.update(run.id, lambda r: replace(r, looks=r.looks + 1))
        restarted = _run_as(
            prefix,
            [str(_pg_bindir() / "pg_ctl"), "-D", data_dir, "-l", f"{data_dir}/../postgres.log",
             "-m", "fast", "-w", "restart"],
        )  # fmt: skip
        assert restarted.returncode == 0, restarted.stderr
        updated = store.update(run.id, lambda r: replace(r, looks=r.looks + 1))
        assert updated.looks == 2  # the first call after the restart, and the look before it
    finally:
        store.close()

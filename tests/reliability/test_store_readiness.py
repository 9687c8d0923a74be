"""`/readyz` reports a store that can be read but not written: full or read-only (both SQLite
and PostgreSQL), and goes back to ready when it can take looks again."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import PrometheusServer
from tests.test_serve_api import Clock, body, make_app, minutes
from tests.test_store import PostgresServer, postgres_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.prometheus


def _fill(client: TestClient) -> None:
    for i in range(500):  # first calls only (no data yet): every call stores a new run
        if client.post("/api/v1/verdict", json=body("healthy", f"c{i}")).status_code != 200:
            return
    raise AssertionError("the capped store never filled up")


def test_readyz_reports_a_full_sqlite_store(prometheus: PrometheusServer, tmp_path: Path) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}?max_page_count=12"
    with TestClient(make_app(prometheus, url, clock)) as client:
        assert client.get("/readyz").status_code == 200
        _fill(client)
        ready = client.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert "full" in ready.json()["checks"]["store"]


def test_readyz_reports_a_read_only_sqlite_store(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    path = tmp_path / "r.sqlite"
    with TestClient(make_app(prometheus, f"sqlite:///{path}", clock)) as client:
        assert client.get("/readyz").status_code == 200
        assert client.post("/api/v1/verdict", json=body("healthy")).status_code == 200
    with TestClient(make_app(prometheus, f"sqlite:///{path}?mode=ro", clock)) as client:
        ready = client.get("/readyz")
        assert client.get("/api/v1/runs").status_code == 200  # reading still works
    assert ready.status_code == 503, ready.text
    assert "read-only" in ready.json()["checks"]["store"]


@pytest.mark.postgres
def test_readyz_reports_a_read_only_postgres_database_and_recovers(
    prometheus: PrometheusServer,
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    with psycopg.connect(postgres_server.url, autocommit=True) as admin:
        admin.execute("DROP TABLE IF EXISTS verdict_runs")
    with TestClient(make_app(prometheus, postgres_server.url, clock)) as client:
        assert client.get("/readyz").status_code == 200
        with psycopg.connect(postgres_server.url, autocommit=True) as admin:
            admin.execute("ALTER DATABASE verdict SET default_transaction_read_only = on")
        try:
            # new sessions see the setting: drop the pooled ones as a failover would
            with psycopg.connect(postgres_server.url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'verdict'"
                )
            read_only = client.get("/readyz")
        finally:
            admin_url = postgres_server.url.rsplit("/", 1)[0] + "/postgres"
            with psycopg.connect(admin_url, autocommit=True) as admin:
                admin.execute("ALTER DATABASE verdict RESET default_transaction_read_only")
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'verdict'"
                )
        back = client.get("/readyz")
    assert read_only.status_code == 503, read_only.text
    assert "read-only" in read_only.json()["checks"]["store"]
    assert back.status_code == 200, back.text

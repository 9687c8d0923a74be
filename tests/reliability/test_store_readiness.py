"""`/readyz` reports a store that can be read but not written: full (a capped file, a full file
system) or read-only (both SQLite and PostgreSQL), and goes back to ready when it can take looks
again."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from tests.conftest import PrometheusServer, free_port
from tests.helpers import REPO, stop_process
from tests.reliability.serve_process import analyses_folder
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


def _mount_namespaces() -> bool:
    """Whether this machine lets a user mount a file system of their own (`unshare -rm`)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run(
        [unshare, "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        timeout=30,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _mount_namespaces(), reason="needs `unshare -rm` to mount a tmpfs")
def test_readyz_reports_a_full_file_system_and_recovers_when_space_is_freed(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    """A full disk, not a capped file: a probe that rolls back never reaches the disk, so only
    the failed write of a look, remembered, and a probe that commits can tell."""
    folder = analyses_folder(prometheus, tmp_path / "analyses")
    disk = tmp_path / "disk"
    disk.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=1m tmpfs "$0" && exec "$@"',
             str(disk), sys.executable, "-m", "analyzer.cli", "serve", "--config", str(folder),
             "--store", f"sqlite:///{disk / 'runs.sqlite'}", "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_healthy(url, process, log)
        first = httpx.post(f"{url}/api/v1/verdict", json=body("healthy", "c0"), timeout=30)
        assert first.status_code == 200, first.text
        assert httpx.get(f"{url}/readyz", timeout=30).status_code == 200
        filler = Path(f"/proc/{process.pid}/root") / str(disk).lstrip("/") / "filler"
        _fill_up(filler)
        full = httpx.post(f"{url}/api/v1/verdict", json=body("healthy", "c1"), timeout=30)
        ready_full = httpx.get(f"{url}/readyz", timeout=30)
        filler.unlink()
        ready_again = httpx.get(f"{url}/readyz", timeout=30)
        after = httpx.post(f"{url}/api/v1/verdict", json=body("healthy", "c2"), timeout=30)
    finally:
        stop_process(process)
    assert full.status_code == 503 and "is full" in full.json()["error"]["message"], full.text
    assert ready_full.status_code == 503, ready_full.text
    assert "is full" in ready_full.json()["checks"]["store"], ready_full.text
    assert ready_again.status_code == 200, ready_again.text
    assert after.status_code == 200, after.text


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert process.poll() is None, f"verdict serve exited:\n{log.read_text()}"
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"verdict serve did not start:\n{log.read_text()}"
        time.sleep(0.1)


def _fill_up(path: Path) -> None:
    """Write `path` until its file system has no space left."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(descriptor, b"x" * 4096)
    except OSError as error:
        assert error.errno == errno.ENOSPC, error
    finally:
        os.close(descriptor)

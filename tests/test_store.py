"""The run store: the same cases against SQLite and a real PostgreSQL server.

The PostgreSQL server is started by the session fixture `postgres_server` below from the Debian
package's binaries (/usr/lib/postgresql/<version>/bin, installed by .ci/run). PostgreSQL refuses
to run as root, so when the tests run as root (CI does) the server runs as the `postgres`
system user, in a temporary folder owned by it, on a free loopback port.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.runs import Run, RunKey, metric_from_dict, metric_to_dict, new_run
from analyzer.runs.journal import ActionRecord, new_action
from analyzer.runs.store import RunNotFound, StoreConfigError, StoreUnavailable, open_store
from analyzer.verdicts import CheckReport, MetricReport, MetricStatus
from tests.conftest import free_port

_PG_HINT = "install the Debian package `postgresql` (`.ci/run` does)"
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL: `url` of the database `verdict` (superuser, trust auth), and
    `read_only_url` of the same database as the role `verdict_ro`, which may only SELECT."""

    url: str
    read_only_url: str
    port: int


def _pg_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts[-3])
    if not found:
        pytest.fail(f"no PostgreSQL server binaries under /usr/lib/postgresql: {_PG_HINT}")
    return found[-1].parent


def _as_postgres_user() -> tuple[list[str], int | None, int | None]:
    """The command prefix to run PostgreSQL's binaries (and the uid/gid owning its files)."""
    if os.geteuid() != 0:
        return [], None, None
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(f"running as root and there is no `postgres` system user: {_PG_HINT}")
    runuser = shutil.which("runuser")
    prefix = (
        [runuser, "-u", "postgres", "--"] if runuser else ["su", "postgres", "-s", "/bin/sh", "-c"]
    )
    return prefix, user.pw_uid, user.pw_gid


def _run_as(prefix: list[str], command: list[str]) -> subprocess.CompletedProcess[str]:
    if prefix and prefix[0] == "su":
        command = [*prefix, " ".join(command)]
    else:
        command = [*prefix, *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (stopped and removed at the end)."""
    import psycopg

    bindir = _pg_bindir()
    prefix, uid, gid = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="verdict-pg-"))
    data = root / "data"
    log = root / "postgres.log"
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    port = free_port()
    try:
        init = _run_as(
            prefix,
            [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--no-sync"],
        )  # fmt: skip
        if init.returncode != 0:
            pytest.fail(f"initdb failed (exit {init.returncode}):\n{init.stdout}\n{init.stderr}")
        options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        started = _run_as(
            prefix,
            [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
             "-o", f"'{options}'" if prefix[:1] == ["su"] else options, "start"],
        )  # fmt: skip
        if started.returncode != 0:
            text = log.read_text(errors="replace") if log.exists() else ""
            pytest.fail(f"PostgreSQL did not start:\n{started.stdout}\n{started.stderr}\n{text}")
        admin = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("CREATE DATABASE verdict")
            conn.execute("CREATE ROLE verdict_ro LOGIN")
        with psycopg.connect(
            f"postgresql://postgres@127.0.0.1:{port}/verdict", autocommit=True
        ) as conn:
            conn.execute("GRANT USAGE ON SCHEMA public TO verdict_ro")
            conn.execute(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO verdict_ro"
            )
        yield PostgresServer(
            url=f"postgresql://postgres@127.0.0.1:{port}/verdict",
            read_only_url=f"postgresql://verdict_ro@127.0.0.1:{port}/verdict",
            port=port,
        )
    finally:
        if data.exists():
            _run_as(
                prefix, [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            )
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class StoreCase:
    """One backend under test: how to reach it read-write, read-only, and not at all."""

    kind: str
    url: str
    read_only_url: str
    unreachable_url: str


@pytest.fixture(params=["sqlite", "postgres"])
def case(request: pytest.FixtureRequest, tmp_path: Path) -> StoreCase:
    if request.param == "sqlite":
        path = tmp_path / "runs.sqlite"
        return StoreCase(
            "sqlite",
            f"sqlite:///{path}",
            f"sqlite:///{path}?mode=ro",
            f"sqlite:///{tmp_path}/no/such/folder/runs.sqlite",
        )
    import psycopg

    server: PostgresServer = request.getfixturevalue("postgres_server")
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS verdict_runs")
        conn.execute("DROP TABLE IF EXISTS verdict_actions")
        conn.execute("DROP TABLE IF EXISTS verdict_run_events")
    return StoreCase(
        "postgres",
        server.url,
        server.read_only_url,
        f"postgresql://postgres@127.0.0.1:{free_port()}/verdict",
    )


def _run(canary: str = "abc123", *, analysis: str = "checkout", at: datetime = NOW) -> Run:
    return new_run(
        RunKey(analysis, "shop", "checkout", canary),
        stable_hash="def456",
        params={"namespace": "shop", "service": "checkout"},
        started_at=at,
        now=at,
    )


def _looked(at: datetime) -> Callable[[Run], Run]:
    def change(run: Run) -> Run:
        return replace(run, looks=run.looks + 1, updated_at=at, verdict="inconclusive")

    return change


def test_starting_a_run_twice_gives_the_same_run(case: StoreCase) -> None:
    store = open_store(case.url)
    first = store.start(_run())
    again = store.start(_run(at=NOW + timedelta(minutes=5)))
    other = store.start(_run("fff999"))
    assert again.id == first.id and again.started_at == NOW
    assert other.id != first.id
    assert store.find(RunKey("checkout", "shop", "checkout", "abc123")) == first
    assert store.get(first.id) == first
    assert store.get("nope") is None
    assert store.count() == 2


def test_a_look_is_stored_and_survives_a_new_store_object(case: StoreCase) -> None:
    store = open_store(case.url)
    run = store.start(_run())
    updated = store.update(run.id, _looked(NOW + timedelta(minutes=1)))
    assert updated.looks == 1
    store.close()
    reopened = open_store(case.url).get(run.id)
    assert reopened is not None
    assert reopened.looks == 1 and reopened.verdict == "inconclusive"
    assert reopened.started_at == NOW and reopened.updated_at == NOW + timedelta(minutes=1)
    assert reopened.params == {"namespace": "shop", "service": "checkout"}


def test_updating_a_missing_run_raises_run_not_found(case: StoreCase) -> None:
    store = open_store(case.url)
    store.start(_run())
    with pytest.raises(RunNotFound):
        store.update("no-such-run", _looked(NOW))


def test_concurrent_looks_are_all_counted(case: StoreCase) -> None:
    store = open_store(case.url)
    run = store.start(_run())
    threads, per_thread = 8, 10
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(per_thread):
                store.update(run.id, _looked(NOW))
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert not errors
    stored = store.get(run.id)
    assert stored is not None and stored.looks == threads * per_thread


def test_concurrent_starts_of_one_run_create_it_once(case: StoreCase) -> None:
    store = open_store(case.url)
    ids: list[str] = []
    barrier = threading.Barrier(6)

    def work() -> None:
        barrier.wait()
        ids.append(store.start(_run()).id)

    workers = [threading.Thread(target=work) for _ in range(6)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    assert len(ids) == 6 and len(set(ids)) == 1
    assert store.count() == 1


def test_runs_are_listed_latest_first_and_expire_after_their_last_look(case: StoreCase) -> None:
    store = open_store(case.url)
    old = store.start(_run("old111", at=NOW - timedelta(hours=30)))
    recent = store.start(_run("new222", at=NOW - timedelta(hours=2)))
    looked = store.start(_run("looked3", at=NOW - timedelta(hours=30)))
    store.update(looked.id, _looked(NOW - timedelta(hours=1)))
    assert [r.id for r in store.runs()] == [looked.id, recent.id, old.id]
    assert [r.id for r in store.runs(limit=1)] == [looked.id]
    assert store.expire(NOW - timedelta(hours=24)) == 1
    assert store.get(old.id) is None
    assert {r.id for r in store.runs()} == {recent.id, looked.id}


def test_a_runs_events_are_kept_in_order_and_expire_with_it(case: StoreCase) -> None:
    store = open_store(case.url)
    old = store.start(_run("old111", at=NOW - timedelta(hours=30)))
    kept = store.start(_run("new222", at=NOW - timedelta(hours=2)))
    for n in range(3):
        store.add_event(old.id, "look", {"look": n + 1})
        store.add_event(kept.id, "look", {"look": n + 1, "figure": np.float64(0.5)})
    store.add_event(kept.id, "decision", {"outcome": "promoted"})
    assert [e["look"] for e in store.events(old.id)] == [1, 2, 3]
    events = open_store(case.url).events(kept.id)
    assert [e["kind"] for e in events] == ["look", "look", "look", "decision"]
    assert events[0]["figure"] == 0.5 and events[-1]["outcome"] == "promoted"
    assert store.expire(NOW - timedelta(hours=24)) == 1
    assert store.events(old.id) == []
    assert len(store.events(kept.id)) == 4


def test_metric_reports_round_trip_through_the_store(case: StoreCase) -> None:
    report = MetricReport(
        name="error-rate",
        kind="ratio",
        status=MetricStatus.FAIL,
        reason="canary rate is at least 4%",
        critical=True,
        weight=1.0,
        canary={"requests": 1200.0, "bad": 60.0, "rate": 0.05},
        baseline={"requests": 3600.0, "bad": 1.0, "rate": 0.000278},
        checks=[
            CheckReport(
                "slo", "fail", "above the SLO", {"lower": 0.04, "exact": np.bool_(True)}, None
            )
        ],
        alpha=0.0167,
        failed_at_look=3,
        more_requests_needed=np.int64(12),  # type: ignore[arg-type]
    )
    store = open_store(case.url)
    run = store.start(_run())
    store.update(run.id, lambda r: replace(r, failed={"error-rate": metric_to_dict(report)}))
    stored = store.get(run.id)
    assert stored is not None
    back = metric_from_dict(stored.failed["error-rate"])
    assert back.status is MetricStatus.FAIL and back.failed_at_look == 3
    assert back.checks[0].statistic == {"lower": 0.04, "exact": True}
    assert back.more_requests_needed == 12


def test_an_action_is_journaled_once_and_stays_pending_until_finished(case: StoreCase) -> None:
    store = open_store(case.url)
    run = store.start(_run())

    def abort(at: datetime) -> ActionRecord:
        return new_action(
            run_id=run.id, namespace="shop", rollout="checkout", canary_hash="abc123",
            kind="abort", step=1, reason="fails", now=at,
        )  # fmt: skip

    first, new = store.record_action(abort(NOW))
    again, new_again = store.record_action(abort(NOW + timedelta(minutes=1)))
    assert new and not new_again and again == first and first.state == "pending"
    store.close()
    reopened = open_store(case.url)  # a restarted process finds it
    assert reopened.pending_actions() == [first]
    reopened.finish_action(first.finished("done", NOW + timedelta(minutes=2)))
    assert reopened.pending_actions() == []
    done, _ = reopened.record_action(abort(NOW + timedelta(minutes=3)))
    assert (done.id, done.state) == (first.id, "done")  # deciding it again sends nothing
    reopened.expire(NOW + timedelta(hours=1))
    fresh, is_new = reopened.record_action(abort(NOW + timedelta(hours=2)))
    assert is_new and fresh.id != first.id


def test_a_read_only_store_is_unavailable_with_a_clear_message(case: StoreCase) -> None:
    writable = open_store(case.url)
    run = writable.start(_run())
    read_only = open_store(case.read_only_url)
    assert read_only.get(run.id) == run  # reading still works
    with pytest.raises(StoreUnavailable, match="read-only"):
        read_only.update(run.id, _looked(NOW))
    with pytest.raises(StoreUnavailable, match="read-only"):
        read_only.start(_run("fresh99"))
    assert writable.get(run.id) == run


def test_an_unreachable_store_is_unavailable(case: StoreCase) -> None:
    store = open_store(case.unreachable_url)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="run store"):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.start(_run())
    assert time.monotonic() - started < 10


def test_a_full_sqlite_store_is_unavailable_and_says_full(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    open_store(f"sqlite:///{path}").start(_run())
    full = open_store(f"sqlite:///{path}?max_page_count=1")
    with pytest.raises(StoreUnavailable, match="full"):
        for i in range(50):
            full.start(replace(_run(f"c{i:05d}"), reason="x" * 2000))


@pytest.mark.parametrize(
    "url",
    ["mysql://x/y", "sqlite://", "sqlite:///:memory:", "sqlite:///x.db?journal=off", "runs.db"],
)
def test_bad_store_urls_are_config_errors(url: str) -> None:
    with pytest.raises(StoreConfigError):
        open_store(url)


def test_postgres_url_password_is_not_shown() -> None:
    store = open_store("postgresql://verdict:s3cret@db.example:5432/verdict")
    assert "s3cret" not in store.description and "***" in store.description


@pytest.mark.prometheus
def test_two_replicas_sharing_postgres_count_every_look_once(
    postgres_server: PostgresServer, prometheus: Any, tmp_path: Path
) -> None:
    """Two `verdict serve` apps (no shared process lock) over one PostgreSQL store, called at
    once for the same run: the row lock serialises the looks; none is lost or doubled."""
    import psycopg
    from fastapi.testclient import TestClient

    from tests.test_serve_api import Clock, body, make_app, minutes

    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS verdict_runs")
        conn.execute("DROP TABLE IF EXISTS verdict_actions")
        conn.execute("DROP TABLE IF EXISTS verdict_run_events")
    start = prometheus.scenarios["healthy"].start
    clock = Clock(start + minutes(20))
    request = body("healthy", start=start.isoformat())
    calls_per_replica = 4
    barrier = threading.Barrier(2 * calls_per_replica)
    answers: list[int] = []
    lock = threading.Lock()
    with (
        TestClient(make_app(prometheus, postgres_server.url, clock)) as one,
        TestClient(make_app(prometheus, postgres_server.url, clock)) as two,
    ):
        one.post("/api/v1/verdict", json=request).raise_for_status()  # start the run

        def call(client: TestClient) -> None:
            barrier.wait()
            answer = client.post("/api/v1/verdict", json=request)
            with lock:
                answers.append(answer.json()["result"]["run"]["looks"])

        threads = [
            threading.Thread(target=call, args=(client,))
            for client in (one, two)
            for _ in range(calls_per_replica)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert sorted(answers) == list(range(2, 2 * calls_per_replica + 2))
    run = open_store(postgres_server.url).find(RunKey("healthy", "default", "web", "abc123"))
    assert run is not None and run.looks == 2 * calls_per_replica + 1

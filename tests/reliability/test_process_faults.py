"""Process and store faults: `verdict serve` killed (SIGKILL) between looks and in the middle of
one, and a corrupt SQLite file. Nothing is lost, no look is counted twice, errors are clear."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import pytest

from analyzer.runs.store import open_store
from tests.conftest import PrometheusServer, free_port
from tests.helpers import run_verdict
from tests.reliability.fault_proxy import Fault, FaultProxy
from tests.reliability.serve_process import analyses_folder, serve

pytestmark = pytest.mark.prometheus


def _request(prometheus: PrometheusServer) -> dict[str, str]:
    return {
        "analysis": "error-regression", "namespace": "shop", "rollout": "web",
        "canaryHash": "killed1", "stableHash": "stable1",
        "start": prometheus.scenarios["error-regression"].start.isoformat(),
    }  # fmt: skip


def test_sigkill_between_and_during_looks_loses_nothing_and_counts_nothing_twice(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, tmp_path: Path
) -> None:
    folder = analyses_folder(prometheus, tmp_path / "analyses")
    store = f"sqlite:///{tmp_path / 'r.sqlite'}"
    args = ("--config", str(folder), "--store", store, "--prometheus-url", fault_proxy.url)
    request = _request(prometheus)
    port = free_port()
    log = tmp_path / "serve.log"
    with serve(*args, log=log, port=port) as server:
        for _ in range(2):
            assert (
                httpx.post(f"{server.url}/api/v1/verdict", json=request, timeout=30).status_code
                == 200
            )
        server.process.send_signal(signal.SIGKILL)  # between looks
        server.process.wait(timeout=10)
    with serve(*args, log=log, port=port) as server:
        third = httpx.post(f"{server.url}/api/v1/verdict", json=request, timeout=30).json()
        fault_proxy.set(Fault("latency", seconds=3.0))
        failed: list[BaseException] = []

        def in_flight() -> None:
            try:
                httpx.post(f"{server.url}/api/v1/verdict", json=request, timeout=30)
            except httpx.HTTPError as error:
                failed.append(error)

        worker = threading.Thread(target=in_flight)
        worker.start()
        threading.Event().wait(1.0)
        server.process.send_signal(signal.SIGKILL)  # during a look (waiting on Prometheus)
        server.process.wait(timeout=10)
        worker.join(timeout=30)
        fault_proxy.clear()
    assert failed, "the look in flight died with the process"
    assert third["result"]["run"]["looks"] == 3 and third["result"]["verdict"] == "fail"
    with serve(*args, log=log, port=port) as server:
        fourth = httpx.post(f"{server.url}/api/v1/verdict", json=request, timeout=30).json()
    assert fourth["result"]["run"]["looks"] == 4  # the killed look was not counted
    assert fourth["result"]["run"]["id"] == third["result"]["run"]["id"]
    runs = open_store(store).runs()
    assert [r.looks for r in runs] == [4] and runs[0].verdict == "fail"


def test_a_corrupt_sqlite_store_is_a_clear_error_everywhere(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"this is not a database, it was overwritten\n" * 200)
    folder = analyses_folder(prometheus, tmp_path / "analyses")
    with serve(
        "--config", str(folder), "--store", f"sqlite:///{path}", log=tmp_path / "s.log"
    ) as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        look = httpx.post(f"{server.url}/api/v1/verdict", json=_request(prometheus), timeout=30)
        entries = server.json_lines()
    assert ready.status_code == 503 and "not a database" in ready.json()["checks"]["store"]
    assert look.status_code == 503 and look.json()["error"]["code"] == "store_unavailable"
    assert any("run store unavailable at start" in e["event"] for e in entries)
    listed = run_verdict("runs", "list", "--store", f"sqlite:///{path}")
    assert listed.returncode == 5 and "not a database" in listed.stderr
    assert "Traceback" not in listed.stderr

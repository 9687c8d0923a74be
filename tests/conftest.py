"""Shared fixtures: a real Prometheus over generated scenario data, a slow proxy in front of it,
and an address where nothing listens.

`prometheus` (session scope) is the one most tests want::

    def test_something(prometheus):
        scenario = prometheus.scenarios["error-regression"]
        source = PrometheusSource(prometheus.url)
        source.fetch(query, Version.CANARY, scenario.canary_matchers, scenario.window())

See `PrometheusServer` for what it holds and `tests/promdata.py` for the scenarios.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from tests.grafana_server import GrafanaStandIn
from tests.grafana_server import running as grafana_running
from tests.helpers import REPO, stop_process
from tests.hook_server import HookReceiver
from tests.hook_server import running as hooks_running
from tests.kube_server import KubeServer
from tests.promdata import (
    Scenario,
    ScenarioData,
    default_scenarios,
    generate,
    write_openmetrics_file,
)
from tests.reliability.fault_proxy import FaultProxy

_READY_TIMEOUT_S = 30.0
_CI_HINT = "install them with `.ci/run` (it installs the Debian package `prometheus`)"


REPOSITORY_STORE = REPO / "verdict-runs.sqlite"
"""The run store `verdict` uses by default, in the working folder: no test may write it."""


def _store_files() -> dict[str, tuple[int, int] | None]:
    """The default store's files (and SQLite's journals): name -> (size, mtime) or None."""
    found: dict[str, tuple[int, int] | None] = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = REPOSITORY_STORE.with_name(REPOSITORY_STORE.name + suffix)
        with contextlib.suppress(OSError):
            stat = path.stat()
            found[path.name] = (stat.st_size, stat.st_mtime_ns)
            continue
        found[path.name] = None
    return found


@pytest.fixture(scope="session", autouse=True)
def runs_in_a_temporary_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Every `verdict` a test starts (subprocesses inherit the environment) keeps its runs in a
    temporary store, `VERDICT_STORE`, unless the test gives `--store`: never in the repository's
    `verdict-runs.sqlite`, which this fixture checks untouched at the session's end."""
    store = f"sqlite:///{tmp_path_factory.mktemp('runs') / 'runs.sqlite'}"
    before = _store_files()
    previous = os.environ.get("VERDICT_STORE")
    os.environ["VERDICT_STORE"] = store
    yield store
    if previous is None:
        os.environ.pop("VERDICT_STORE", None)
    else:
        os.environ["VERDICT_STORE"] = previous
    after = _store_files()
    assert after == before, (
        f"a test wrote runs into {REPOSITORY_STORE}: give it --store or leave VERDICT_STORE set"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH: the Prometheus tests need it; {_CI_HINT}")
    return path


@dataclass(frozen=True)
class PrometheusServer:
    """A running Prometheus (2.x, Debian package) serving the generated scenarios.

    * `url`: base URL, e.g. `http://127.0.0.1:41234` (give it to `PrometheusSource` or to
      `--prometheus-url`).
    * `scenarios`: scenario name -> `tests.promdata.Scenario`. Every scenario has its analysis
      window in `.start` / `.end` (timezone-aware UTC, minute-aligned, 40 minutes ending 30
      minutes before the session started; the same window for all scenarios), the version
      selectors in `.canary_matchers` / `.baseline_matchers`
      (`{"destination_service_name": "<name>-canary" | "<name>-stable"}`), and
      `.window(step)` builds a `metrics.source.Window` over it.
    * `data`: scenario name -> `tests.promdata.ScenarioData`, the ground truth that was
      written (requests, errors and latency buckets per 15 s scrape and version).
    * `data_dir`: the TSDB folder; `log`: Prometheus' log file (handy when a query surprises).

    Data is on a 15 s scrape grid that contains every minute boundary, so with windows whose
    start and step are whole multiples of 15 s, `increase()` is exact (no extrapolation) on
    Prometheus 2.x, except in the `scrape-offset` scenario.
    """

    url: str
    scenarios: dict[str, Scenario]
    data: dict[str, ScenarioData] = field(repr=False)
    data_dir: Path
    log: Path


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"prometheus exited with code {process.returncode} before it was ready; "
                f"its log ({log}):\n{log.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(
        f"prometheus at {url} was not ready after {_READY_TIMEOUT_S} s; "
        f"its log ({log}):\n{log.read_text(errors='replace')[-3000:]}"
    )


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus over every scenario of `tests.promdata.default_scenarios`.

    Yields a `PrometheusServer` (`.url`, `.scenarios`, `.data`); see its docstring. The server
    is stopped at the end of the session. Fails (does not skip) when `prometheus`/`promtool`
    are missing.
    """
    prometheus_bin = _binary("prometheus")
    promtool_bin = _binary("promtool")
    root = tmp_path_factory.mktemp("prometheus")
    scenarios = default_scenarios(datetime.now(UTC))
    data = {name: generate(s) for name, s in scenarios.items()}

    openmetrics = root / "scenarios.om"
    write_openmetrics_file(list(data.values()), openmetrics)
    data_dir = root / "tsdb"
    created = subprocess.run(
        [
            promtool_bin,
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(openmetrics),
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if created.returncode != 0:
        pytest.fail(
            f"promtool could not import {openmetrics} (exit {created.returncode}):\n"
            f"{created.stdout[-2000:]}\n{created.stderr[-2000:]}"
        )
    openmetrics.unlink()  # tens of MB, and the blocks now hold it

    config = root / "prometheus.yml"
    config.write_text("scrape_configs: []\n")
    log = root / "prometheus.log"
    url = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            cwd=root,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, process, log)
        yield PrometheusServer(url=url, scenarios=scenarios, data=data, data_dir=data_dir, log=log)
    finally:
        stop_process(process)


@dataclass
class SlowProxy:
    """A TCP proxy on 127.0.0.1 that waits `delay` seconds before forwarding each connection
    to `upstream`. Change `delay` at any time; it applies to connections accepted later."""

    url: str
    upstream: str
    delay: float
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            target.sendall(chunk)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _serve_slowly(proxy: SlowProxy, client: socket.socket, upstream: tuple[str, int]) -> None:
    with client:
        if proxy._stopping.wait(proxy.delay):
            return
        try:
            server = socket.create_connection(upstream, timeout=5.0)
        except OSError:
            return
        with server:
            server.settimeout(None)
            back = threading.Thread(target=_pipe, args=(server, client), daemon=True)
            back.start()
            _pipe(client, server)
            back.join(timeout=30)


@pytest.fixture
def fault_proxy(prometheus: PrometheusServer) -> Iterator[FaultProxy]:
    """A `FaultProxy` (`tests/reliability/fault_proxy.py`) in front of the session's
    Prometheus, with no fault active."""
    proxy = FaultProxy(upstream=prometheus.url).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def slow_prometheus(prometheus: PrometheusServer) -> Iterator[SlowProxy]:
    """A `SlowProxy` in front of the `prometheus` fixture, 3 s delay by default (set `.delay`).

    Each accepted connection waits `delay` seconds, then is piped to the real Prometheus, so a
    client with a shorter timeout times out and one with a longer timeout gets real answers.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    host, upstream_port = prometheus.url.removeprefix("http://").split(":")
    proxy = SlowProxy(url=f"http://127.0.0.1:{port}", upstream=prometheus.url, delay=3.0)

    def accept() -> None:
        while not proxy._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            threading.Thread(
                target=_serve_slowly, args=(proxy, client, (host, int(upstream_port))), daemon=True
            ).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield proxy
    finally:
        proxy._stopping.set()
        acceptor.join(timeout=5)
        listener.close()


@pytest.fixture
def unreachable_url() -> str:
    """`http://127.0.0.1:<port>` where nothing listens (connections are refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def kube() -> Iterator[KubeServer]:
    """A running Kubernetes API test server (`tests/kube_server.py`): the official client talks
    to it over HTTP (`kube.api_client()`, `kube.write_kubeconfig(path)`); it validates Argo
    objects against the CRDs and records every request (`kube.requests`, `kube.writes()`)."""
    with KubeServer() as server:
        yield server


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    """A Grafana stand-in checking every request against the annotations API
    (`tests/grafana_server.py`)."""
    with grafana_running(GrafanaStandIn()) as state:
        yield state


@pytest.fixture
def hooks() -> Iterator[HookReceiver]:
    """A receiver of webhook and Slack notifications (`tests/hook_server.py`)."""
    with hooks_running(HookReceiver()) as state:
        yield state

"""A real VictoriaMetrics (single-node, Debian package `victoria-metrics`) holding the very samples
of the `prometheus` fixture: every real-Prometheus scenario can be asked of both stores.

`victoria` (session scope) starts the server on a free loopback port over a temporary storage
folder and imports the scenarios through `/api/v1/import/prometheus` (the Prometheus text
exposition format, one sample a line, timestamps in milliseconds)::

    def test_something(prometheus, victoria):
        scenario = victoria.scenarios["error-regression"]   # the same objects as prometheus'
        PrometheusSource(victoria.url).fetch(...)            # the same Prometheus query API

Import the fixture into the test module (`from tests.victoria import victoria`).
"""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import PrometheusServer, free_port
from tests.helpers import stop_process
from tests.promdata import Scenario, ScenarioData, write_openmetrics

_READY_TIMEOUT_S = 30.0
_IMPORT_CHUNK_LINES = 50_000
_CI_HINT = "install it with `.ci/run` (it installs the Debian package `victoria-metrics`)"


@dataclass(frozen=True)
class VictoriaServer:
    """A running VictoriaMetrics serving the scenarios of the `prometheus` fixture.

    * `url`: base URL (the Prometheus query API is at `/api/v1/query`, as on Prometheus);
    * `scenarios`, `data`: the `prometheus` fixture's own (same windows, same samples);
    * `samples`: how many samples were imported; `log`: the server's log file.
    """

    url: str
    scenarios: dict[str, Scenario]
    data: dict[str, ScenarioData] = field(repr=False)
    samples: int
    log: Path


def exposition_lines(datasets: Iterable[ScenarioData]) -> Iterator[str]:
    """The scenarios' samples in the Prometheus text format VictoriaMetrics imports: the
    OpenMetrics text promtool reads (`tests.promdata.write_openmetrics`), its comments left
    out and each timestamp turned from seconds (`1718000000.000`) into milliseconds."""
    text = io.StringIO()
    write_openmetrics(datasets, text)
    text.seek(0)
    for line in text:
        if line.startswith("#"):
            continue
        head, _, stamp = line.rstrip("\n").rpartition(" ")
        yield f"{head} {round(float(stamp) * 1000)}\n"


def _chunks(lines: Iterator[str]) -> Iterator[bytes]:
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= _IMPORT_CHUNK_LINES:
            yield "".join(batch).encode()
            batch = []
    if batch:
        yield "".join(batch).encode()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"victoria-metrics exited with code {process.returncode} before it was ready; "
                f"its log ({log}):\n{log.read_text(errors='replace')[-3000:]}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    pytest.fail(f"victoria-metrics at {url} was not ready after {_READY_TIMEOUT_S} s")


def _import(url: str, datasets: Iterable[ScenarioData]) -> int:
    """Import the samples, flush them to searchable storage, and count them back."""
    counted = 0

    def counting() -> Iterator[bytes]:
        nonlocal counted
        for chunk in _chunks(exposition_lines(datasets)):
            counted += chunk.count(b"\n")
            yield chunk

    answer = requests.post(f"{url}/api/v1/import/prometheus", data=counting(), timeout=300)
    assert answer.status_code == 204, f"import refused: {answer.status_code} {answer.text[:500]}"
    requests.get(f"{url}/internal/force_flush", timeout=60).raise_for_status()
    return counted


@pytest.fixture(scope="session")
def victoria(
    prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VictoriaServer]:
    """A real VictoriaMetrics over the samples of the `prometheus` fixture (see
    `VictoriaServer`); stopped at the end of the session. Fails (does not skip) when the
    binary is missing."""
    binary = shutil.which("victoria-metrics")
    if binary is None:
        pytest.fail(f"`victoria-metrics` is not on PATH: {_CI_HINT}")
    root = tmp_path_factory.mktemp("victoria")
    log = root / "victoria-metrics.log"
    url = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"-storageDataPath={root / 'data'}",
                f"-httpListenAddr={url.removeprefix('http://')}",
                "-retentionPeriod=100y",
                "-memory.allowedBytes=512MiB",  # its caches: one server per test worker
                "-loggerLevel=WARN",
            ],
            cwd=root,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, process, log)
        samples = _import(url, prometheus.data.values())
        yield VictoriaServer(
            url=url,
            scenarios=prometheus.scenarios,
            data=prometheus.data,
            samples=samples,
            log=log,
        )
    finally:
        stop_process(process)

"""`verdict serve` as a real process for the reliability tests: start, wait until healthy, stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import PrometheusServer, free_port
from tests.helpers import REPO, example_analysis, stop_process, write_analysis


@dataclass
class ServeProcess:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[str]:
        return [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]


def analyses_folder(prometheus: PrometheusServer, folder: Path, url: str | None = None) -> Path:
    """One analysis file per scenario used here, reading Prometheus at `url`."""
    folder.mkdir(exist_ok=True)
    for name in ("healthy", "error-regression"):
        scenario = prometheus.scenarios[name]
        data = example_analysis()
        data.update(
            name=name,
            prometheus={"url": url or prometheus.url},
            canary=dict(scenario.canary_matchers),
            baseline=dict(scenario.baseline_matchers),
        )
        write_analysis(folder / f"{name}.yaml", data)
    return folder


@contextmanager
def serve(*args: str, log: Path, port: int | None = None) -> Iterator[ServeProcess]:
    """Start `verdict serve --host 127.0.0.1 --port <free> *args`; stop it at the end if alive."""
    port = port or free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"verdict serve exited {process.returncode}:\n{log.read_text()}"
                )
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"verdict serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield ServeProcess(url=url, process=process, log=log)
    finally:
        if process.poll() is None:
            stop_process(process)

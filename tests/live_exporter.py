"""A live Istio-like exporter and a real Prometheus scraping it every second.

`LiveExporter` serves `istio_requests_total` and `istio_request_duration_milliseconds_bucket`
for `<service>-canary` and `<service>-stable` (reporter="destination"), counting requests as
they would happen at `total_rps` split by the canary's current weight (a callable, e.g. the Argo
stand-in's), with Poisson arrivals, binomial 5xx answers and log-normal latencies per version.
`live_prometheus(...)` starts the Debian `prometheus` over a fresh data folder scraping it;
`wait_for_scrapes(...)` waits until it holds a given number of scrapes (traffic to judge).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import requests

from analyzer.demo_prometheus import BUCKETS_MS, Exposed, istio_exposition, serve_metrics
from metrics.simulated import lognormal_bucket_probabilities
from tests.conftest import _wait_ready, free_port
from tests.helpers import stop_process


@dataclass
class Version:
    error_rate: float
    median_ms: float = 20.0
    sigma: float = 0.5


class LiveExporter:
    def __init__(
        self,
        service: str,
        *,
        total_rps: float,
        canary_weight: Callable[[], float],
        canary: Version,
        baseline: Version,
        seed: int = 1,
    ) -> None:
        self.service = service
        self.total_rps = total_rps
        self.canary_weight = canary_weight
        self.versions = {"canary": canary, "stable": baseline}
        self._rng = np.random.default_rng(seed)
        bounds = [*BUCKETS_MS, math.inf]
        self._probs = {
            name: lognormal_bucket_probabilities(bounds, v.median_ms, v.sigma)
            for name, v in self.versions.items()
        }
        self._counts = {name: {"ok": 0, "bad": 0} for name in self.versions}
        self._buckets = {name: np.zeros(len(bounds), dtype=np.int64) for name in self.versions}
        self._sum = {name: 0.0 for name in self.versions}
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.address = ""

    def _advance(self) -> None:
        now = time.monotonic()
        dt, self._last = now - self._last, now
        weight = max(0.0, min(100.0, float(self.canary_weight()))) / 100.0
        for name, share in (("canary", weight), ("stable", 1.0 - weight)):
            n = int(self._rng.poisson(self.total_rps * share * dt)) if share > 0 else 0
            bad = int(self._rng.binomial(n, self.versions[name].error_rate)) if n else 0
            self._counts[name]["ok"] += n - bad
            self._counts[name]["bad"] += bad
            if n:
                self._buckets[name] += self._rng.multinomial(n, self._probs[name])
                self._sum[name] += n * self.versions[name].median_ms

    def text(self) -> str:
        with self._lock:
            self._advance()
            return istio_exposition(
                self.service,
                [
                    Exposed(
                        name,
                        self._counts[name]["ok"],
                        self._counts[name]["bad"],
                        self._buckets[name],
                        self._sum[name],
                    )
                    for name in self.versions
                ],
            )

    def start(self) -> LiveExporter:
        self._httpd, self.address = serve_metrics(self.text, "live-exporter")
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


@contextmanager
def live_prometheus(root: Path, targets: list[str]) -> Iterator[str]:
    """A real Prometheus scraping `targets` (host:port) every second; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("`prometheus` is not on PATH: install it with `.ci/run`")
    config = root / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: live\n    static_configs: [{{targets: {targets!r}}}]\n"
    )
    url = f"http://127.0.0.1:{free_port()}"
    log = root / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            cwd=root,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, process, log)
        yield url
    finally:
        stop_process(process)


def scrapes(url: str) -> int:
    """How many scrapes of the live targets the Prometheus at `url` holds (the last 5 minutes)."""
    answer = requests.get(
        f"{url}/api/v1/query", params={"query": 'sum(count_over_time(up{job="live"}[5m]))'},
        timeout=5,
    ).json()
    result = answer["data"]["result"]
    return int(float(result[0]["value"][1])) if result else 0


def wait_for_scrapes(url: str, count: int, timeout: float = 60.0) -> None:
    """Wait until the Prometheus at `url` has scraped the live targets `count` times."""
    deadline = time.monotonic() + timeout
    while (found := scrapes(url)) < count:
        if time.monotonic() > deadline:
            pytest.fail(f"Prometheus at {url} holds {found} scrapes, not {count}, after {timeout:g} s")
        time.sleep(0.2)

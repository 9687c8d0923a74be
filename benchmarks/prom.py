"""A real Prometheus on loopback over generated Istio data with many pods per version.

`PrometheusData.write` draws per-pod counters (15 s scrapes) for several services, writes them as
OpenMetrics text, `promtool tsdb create-blocks-from openmetrics` turns that into TSDB blocks, and
`serve` starts `prometheus` over them on a free port (the same recipe as tests/conftest.py).

Per pod and version: `istio_requests_total{response_code="200"|"503"}` and the 20 default
`istio_request_duration_milliseconds_bucket{le=...}` counters, labelled
`destination_service_name="<service>-canary"|"<service>-stable"` and `pod="<service>-pNNNN"`.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import requests

from analyzer.spec import AnalysisSpec
from benchmarks.simulate import BASELINE_ERROR_RATE, bucket_probabilities
from metrics.promql import render

SCRAPE_SECONDS = 15.0
BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
              300000, 600000, 1800000, 3600000)  # fmt: skip
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class Service:
    name: str
    pods: int  # series (distinct pod label values) per version
    canary_rps: float
    baseline_rps: float


def _lines(labels: str, times: np.ndarray, values: np.ndarray, name: str) -> str:
    return "".join(
        f"{name}{{{labels}}} {v:.0f} {t:.0f}\n" for t, v in zip(times, values, strict=True)
    )


def write_openmetrics(
    services: list[Service], start: datetime, end: datetime, out: TextIO, seed: int = 7
) -> int:
    """Counters from `start` (minus one minute of warm-up) to `end`; returns the sample count."""
    rng = np.random.default_rng(seed)
    first = (start - timedelta(minutes=1)).timestamp()
    count = int((end.timestamp() - first) // SCRAPE_SECONDS) + 1
    times = first + SCRAPE_SECONDS * np.arange(count)
    probabilities = bucket_probabilities()
    les = [*(f"{b:g}" for b in BUCKETS_MS), "+Inf"]
    requests_out: list[str] = []
    buckets_out: list[str] = []
    samples = 0
    for service in services:
        for version, rps in (("canary", service.canary_rps), ("stable", service.baseline_rps)):
            per_pod = rps * SCRAPE_SECONDS / service.pods
            n = rng.poisson(per_pod, size=(service.pods, count))
            bad = rng.binomial(n, BASELINE_ERROR_RATE)
            hist = rng.multinomial(n, probabilities)  # (pods, scrapes, buckets)
            req_ok = np.cumsum(n - bad, axis=1)
            req_bad = np.cumsum(bad, axis=1)
            cum_buckets = np.cumsum(np.cumsum(hist, axis=1), axis=2)
            for pod in range(service.pods):
                base = (
                    f'reporter="destination",destination_service_name="{service.name}-{version}",'
                    f'pod="{service.name}-{version}-p{pod:04d}"'
                )
                requests_out.append(
                    _lines(
                        base + ',response_code="200"', times, req_ok[pod], "istio_requests_total"
                    )
                )
                requests_out.append(
                    _lines(
                        base + ',response_code="503"', times, req_bad[pod], "istio_requests_total"
                    )
                )
                for k, le in enumerate(les):
                    buckets_out.append(
                        _lines(
                            f'{base},le="{le}"',
                            times,
                            cum_buckets[pod, :, k],
                            "istio_request_duration_milliseconds_bucket",
                        )
                    )
                samples += count * (2 + len(les))
    out.write("# TYPE istio_requests counter\n")
    out.writelines(requests_out)
    out.write("# TYPE istio_request_duration_milliseconds histogram\n")
    out.writelines(buckets_out)
    out.write("# EOF\n")
    return samples


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not on PATH: install the Debian package `prometheus`")
    return path


def create_blocks(openmetrics: Path, tsdb: Path) -> None:
    done = subprocess.run(
        [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(tsdb)],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(
            f"promtool failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )


@contextlib.contextmanager
def serve(tsdb: Path, root: Path) -> Iterator[str]:
    """Run Prometheus over `tsdb` on a free loopback port; yield its base URL."""
    config = root / "prometheus.yml"
    config.write_text("scrape_configs: []\n")
    log = root / "prometheus.log"
    url = f"http://127.0.0.1:{free_port()}"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited early: {log.read_text(errors='replace')[-2000:]}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready after {READY_TIMEOUT} s")
            time.sleep(0.1)
        yield url
    finally:
        stop_process(process)


def window_bounds(now: datetime, minutes: int) -> tuple[datetime, datetime]:
    """A window of `minutes` ending 30 minutes before `now`, on whole minutes."""
    end = now.replace(second=0, microsecond=0) - timedelta(minutes=30)
    return end - timedelta(minutes=minutes), end


def total_rps(pods: int) -> float:
    """Traffic grows with the number of pods (10 rps per pod, at least 20)."""
    return max(20.0, 10.0 * pods)


def services_for(pod_counts: list[int]) -> list[Service]:
    return [
        Service(f"cost-n{p}", p, canary_rps=0.1 * total_rps(p), baseline_rps=0.9 * total_rps(p))
        for p in pod_counts
    ]


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a server process, kill it if it has not exited 10 s later, and reap it."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def counter_selectors(spec: AnalysisSpec, canary: dict[str, str], baseline: dict[str, str]) -> list[tuple[str, bool]]:
    """(rendered counter selector, by le) of every counter one analysis reads, both versions."""
    return [
        (render(counter, matchers), by_le)
        for metric in spec.metrics
        for matchers in (canary, baseline)
        for counter, by_le in metric.metric_query.counters()
    ]

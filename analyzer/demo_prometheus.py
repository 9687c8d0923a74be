"""`verdict demo --prometheus`: the demo's canary, read from a real Prometheus.

A local Prometheus (the `prometheus` binary on PATH) starts over a fresh data folder and scrapes,
every second, an exporter in this process that counts the simulated service's requests as they
happen: Istio's `istio_requests_total` and `istio_request_duration_milliseconds_bucket` for
`checkout-canary` and `checkout-stable` (`reporter="destination"`), the traffic split by the
weights the canary loop writes to the demo's VirtualService (Poisson arrivals, binomial 5xx
answers, log-normal latencies binned into Istio's buckets, as the scenario says). The real
`verdict canary run` loop (`strategies.canary.CanaryRollout`) then moves the weights on the
in-memory Kubernetes of `verdict demo` and reads that Prometheus: a look every 2 s, steps of 10 s.
Prometheus and the exporter stop when the run ends; the run stays in the run store.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import requests

from analyzer.clock import SystemClock
from analyzer.demo import DEMO_NAMESPACE, EXTRA_LOOKS, SCENARIOS, demo_rollout, demo_world
from analyzer.notify import NopNotifier, Notifier
from analyzer.runs.store import RunStore
from analyzer.spec import AnalysisSpec
from metrics.prometheus import PrometheusSource
from metrics.simulated import TrafficModel, lognormal_bucket_probabilities
from strategies.canary import CanaryRollout, LookEvent
from strategies.kube.istio import Destination, read_weights
from strategies.kube.memory import MemoryKube
from strategies.record import Outcome
from strategies.rollout_file import RolloutFile
from strategies.wiring import deps_over

LOOK_SECONDS = 2.0
"""The analysis' interval in the live demo: one look every 2 s."""
STEP_SECONDS = 10.0
"""How long each canary step is watched (5 looks)."""
REQUESTS_PER_SECOND = 2000.0
"""The simulated service's traffic, canary and stable together."""
SCRAPE_SECONDS = 1
READY_SECONDS = 30.0
INSTALL_HINT = (
    "install it (Debian, Ubuntu: `sudo apt-get install prometheus`; elsewhere: "
    "https://prometheus.io/download/, the `prometheus` binary on PATH)"
)
BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
              300000, 600000, 1800000, 3600000)  # fmt: skip
"""Istio's default request-duration buckets (milliseconds)."""


class PrometheusMissing(Exception):
    """No `prometheus` binary on PATH."""


class PrometheusFailed(Exception):
    """The local Prometheus exited or was not ready in time (the message ends with its log)."""


def prometheus_binary() -> str:
    """The `prometheus` binary on PATH; raises `PrometheusMissing` with how to install it."""
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusMissing(f"no `prometheus` binary on PATH: {INSTALL_HINT}")
    return found


@dataclass(frozen=True)
class Exposed:
    """One version's counters as an Istio sidecar exposes them."""

    name: str
    ok: int
    bad: int
    buckets: npt.NDArray[np.int64]
    """Requests per latency bucket (`BUCKETS_MS`, then +Inf), not yet cumulative."""
    seconds_sum: float


def istio_exposition(service: str, versions: Iterable[Exposed]) -> str:
    """`istio_requests_total` and `istio_request_duration_milliseconds` of each version of
    `service` (`destination_service_name="<service>-<version>"`), in Prometheus' text format."""
    lines = [
        "# TYPE istio_requests_total counter",
        "# TYPE istio_request_duration_milliseconds histogram",
    ]
    for v in versions:
        labels = f'reporter="destination",destination_service_name="{service}-{v.name}"'
        for code, count in (("200", v.ok), ("503", v.bad)):
            lines.append(f'istio_requests_total{{{labels},response_code="{code}"}} {count}')
        cumulative = np.cumsum(v.buckets)
        for bound, value in zip([*BUCKETS_MS, math.inf], cumulative, strict=True):
            le = "+Inf" if math.isinf(bound) else f"{bound:g}"
            lines.append(
                f'istio_request_duration_milliseconds_bucket{{{labels},le="{le}"}} {value}'
            )
        lines.append(f"istio_request_duration_milliseconds_sum{{{labels}}} {v.seconds_sum}")
        lines.append(
            f"istio_request_duration_milliseconds_count{{{labels}}} {int(cumulative[-1])}"
        )
    return "\n".join(lines) + "\n"


def serve_metrics(text: Callable[[], str], name: str) -> tuple[ThreadingHTTPServer, str]:
    """Serve `text()` as `/metrics` on a free loopback port in a daemon thread: the server and
    its `host:port`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = text().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, name=name, daemon=True).start()
    return httpd, f"127.0.0.1:{httpd.server_address[1]}"


class LiveService:
    """An exporter of the simulated service's Istio metrics, counted as time passes: each
    scrape adds the requests since the last one, split by `canary_weight()` (percent)."""

    def __init__(
        self,
        model: TrafficModel,
        canary_weight: Callable[[], float],
        *,
        service: str = "checkout",
        seed: int = 1,
    ) -> None:
        self.model = model
        self.canary_weight = canary_weight
        self.service = service
        self._rng = np.random.default_rng(seed)
        bounds = [*BUCKETS_MS, math.inf]
        median_ms = model.latency_median * 1000.0
        self._probs = {
            "canary": lognormal_bucket_probabilities(
                bounds, median_ms * model.canary_latency_factor, model.latency_sigma
            ),
            "stable": lognormal_bucket_probabilities(bounds, median_ms, model.latency_sigma),
        }
        self._errors = {"canary": model.canary_error_rate, "stable": model.baseline_error_rate}
        self._medians = {"canary": median_ms * model.canary_latency_factor, "stable": median_ms}
        self._ok = {"canary": 0, "stable": 0}
        self._bad = {"canary": 0, "stable": 0}
        self._buckets = {v: np.zeros(len(bounds), dtype=np.int64) for v in self._ok}
        self._sum = {"canary": 0.0, "stable": 0.0}
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.address = ""
        """host:port once started."""

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        weight = min(max(float(self.canary_weight()), 0.0), 100.0) / 100.0
        for version, share in (("canary", weight), ("stable", 1.0 - weight)):
            expected = self.model.requests_per_second * share * elapsed
            n = int(self._rng.poisson(expected)) if expected > 0 else 0
            if not n:
                continue
            bad = int(self._rng.binomial(n, min(self._errors[version], 1.0)))
            self._ok[version] += n - bad
            self._bad[version] += bad
            self._buckets[version] += self._rng.multinomial(n, self._probs[version])
            self._sum[version] += n * self._medians[version]

    def text(self) -> str:
        """The metrics in Prometheus' text format, counted up to now."""
        with self._lock:
            self._advance()
            return istio_exposition(
                self.service,
                [
                    Exposed(v, self._ok[v], self._bad[v], self._buckets[v], self._sum[v])
                    for v in ("canary", "stable")
                ],
            )

    def start(self) -> LiveService:
        """Serve `/metrics` on a free loopback port (a thread of this process)."""
        self._httpd, self.address = serve_metrics(self.text, "verdict-demo-exporter")
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(log: Path) -> str:
    with contextlib.suppress(OSError):
        return log.read_text(errors="replace")[-1500:].strip()
    return ""


@contextmanager
def local_prometheus(binary: str, folder: Path, target: str) -> Iterator[str]:
    """A Prometheus scraping `target` (host:port) every second, its data in `folder`, on a
    free loopback port; yields its URL once ready, stops it at the end. Raises
    `PrometheusFailed` when it exits or is not ready within 30 s."""
    config = folder / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: {SCRAPE_SECONDS}s, evaluation_interval: {SCRAPE_SECONDS}s}}\n"
        "scrape_configs:\n"
        f"  - job_name: demo\n    static_configs: [{{targets: ['{target}']}}]\n",
        encoding="utf-8",
    )
    address = f"127.0.0.1:{_free_port()}"
    url = f"http://{address}"
    log = folder / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address={address}",
            ],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PrometheusFailed(
                f"prometheus exited with code {process.returncode} before it was ready; "
                f"its log ends with:\n{_log_tail(log)}"
            )
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise PrometheusFailed(
        f"prometheus at {url} was not ready after {READY_SECONDS:g} s; its log ends with:\n"
        f"{_log_tail(log)}"
    )


def wait_for_scrapes(url: str, count: int, timeout: float = 30.0) -> None:
    """Wait until the Prometheus at `url` has scraped the demo's exporter `count` times."""
    deadline = time.monotonic() + timeout
    query = {"query": 'count_over_time(up{job="demo"}[5m])'}
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException, KeyError, ValueError, IndexError):
            answer = requests.get(f"{url}/api/v1/query", params=query, timeout=2.0).json()
            result = answer["data"]["result"]
            if result and float(result[0]["value"][1]) >= count:
                return
        time.sleep(0.2)
    raise PrometheusFailed(
        f"prometheus at {url} did not scrape the demo's service in {timeout:g} s"
    )


def live_analysis(spec: AnalysisSpec) -> AnalysisSpec:
    """The analysis as the live demo runs it: a look every `LOOK_SECONDS`."""
    return spec.model_copy(update={"interval": LOOK_SECONDS})


def live_rollout_file(spec: AnalysisSpec) -> RolloutFile:
    rollout = demo_rollout(spec).model_copy(update={"step_duration": STEP_SECONDS})
    return RolloutFile(path="demo --prometheus", analysis=spec, rollout=rollout, text="demo")


@dataclass(frozen=True)
class LiveDemo:
    """A live demo's end: the loop's outcome, the Prometheus it read, the weights written."""

    outcome: Outcome
    prometheus: str
    weights: tuple[int, ...]


def run_live_demo(
    scenario: str,
    seed: int,
    spec: AnalysisSpec,
    binary: str,
    *,
    store: RunStore,
    notifier: Notifier | None = None,
    on_ready: Callable[[str], None] | None = None,
    on_look: Callable[[LookEvent], None] | None = None,
    on_message: Callable[[str], None] | None = None,
) -> LiveDemo:
    """Start Prometheus and the exporter, run the canary loop against them (see the module
    docstring), stop both. `on_ready(url)` once Prometheus holds traffic. Raises
    `PrometheusFailed`, and whatever the loop raises (`metrics.errors.SourceUnavailable`)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    file = live_rollout_file(live_analysis(spec))
    kube = MemoryKube()
    demo_world(kube)
    stable, canary = Destination("checkout", "stable"), Destination("checkout", "canary")
    written: list[int] = []

    def follow(plural: str, obj: dict[str, Any]) -> None:
        if plural == "virtualservices":
            written.append(read_weights(obj, "primary", stable, canary, DEMO_NAMESPACE).canary)

    kube.on_write(follow)
    model = replace(SCENARIOS[scenario], requests_per_second=REQUESTS_PER_SECOND)
    service = LiveService(model, lambda: written[-1] if written else 0, seed=seed).start()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="verdict-demo-prometheus-") as folder,
            local_prometheus(binary, Path(folder), service.address) as url,
        ):
            wait_for_scrapes(url, 2)
            if on_ready is not None:
                on_ready(url)
            source = PrometheusSource(url)
            try:
                deps = deps_over(file, kube, kube, source, store, SystemClock())
                deps = replace(deps, notifier=notifier or NopNotifier())
                outcome = CanaryRollout(
                    file,
                    deps,
                    on_look=on_look,
                    on_message=on_message,
                    extra_looks=EXTRA_LOOKS,
                    restart=True,
                ).run()
            finally:
                source.close()
    finally:
        service.stop()
    return LiveDemo(outcome=outcome, prometheus=url, weights=tuple(written))

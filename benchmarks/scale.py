"""`python -m benchmarks scale [--quick]`: how far one Verdict replica goes with a fleet.

What runs, all on loopback (one replica, this machine's cores shared with everything else):

* **A simulated fleet in a real Prometheus.** N services `svc-NNNN`, each with a canary
  (`svc-NNNN-canary`) and a stable version (`svc-NNNN-stable`) serving Istio traffic (one sidecar
  each: `istio_requests_total` by response code, the 20 default
  `istio_request_duration_milliseconds` buckets), scraped every 15 s at a phase of their own.
  Canaries take 1-20 requests a second (log-uniform over the fleet), stable versions 9 times as
  much; both answer 0.1 % errors with the same latency law, so verdicts range from inconclusive
  (little traffic) to pass. The samples are written as OpenMetrics, turned into TSDB blocks by
  `promtool`, and served by `prometheus`; they run from before the earliest pre-run window to
  past the benchmark's end, so samples "arrive" as the wall clock reaches them (a query at time t
  sees only the samples up to t), with nothing to ingest while the benchmark measures.
* **One analysis for the whole fleet** (`fleet`: the embedded checkout analysis, 3 metrics,
  with `destination_service_name: "{{ rollout }}-canary"` / `"{{ rollout }}-stable"`).
* **Controller mode** (`verdict serve --watch`, the real command line, SQLite run store,
  watching every namespace of the Kubernetes API test server `tests/kube_server.py`): N Argo
  Rollouts (10 a namespace, one Ready pod a version), all made to start an update at the same
  moment (paused at their first step), then looked at every interval by Verdict's scheduler.
  A look's due time is the moment its Rollout started updating plus k intervals; its lag is when
  Verdict's tick read the Rollout (the Kubernetes GET that starts a tick) less that due time.
* **The web provider** (`verdict serve`): N runs (one rollout and canary hash each, their starts
  spread over the last `back` intervals), each asked `POST /api/v1/verdict` every interval by a
  client of its own (as Argo's AnalysisRuns do; first calls spread over the first interval). A
  look's lag is when its answer arrived less when it was due.

Measured per mode and N over `looks` intervals (every figure per look is a mean over the phase):

* looks per second (answered), and the looks due;
* lag p50 / p99 / max (looks never made count in `missed`);
* CPU per look: the Verdict process' CPU time (user + system, /proc) over the phase ÷ looks; it
  excludes Prometheus' own work (another process: shown beside it as `prom CPU`); beside it the
  wall time of judging (`verdict_judge_duration_seconds`, the statistics: its CPU when looks do
  not overlap, more when they wait for each other's turn at the interpreter);
* wall time per look beyond its PromQL: a look's time (`verdict_look_duration_seconds`) less its
  fetches' (`verdict_fetch_duration_seconds`);
* memory per active run: the Verdict process' RSS growth over the phase ÷ N (RSS at the end less
  RSS before the first look: at small N mostly what any activity costs, connection pools,
  thread arenas) and, in brackets, what each run more takes: the RSS at the end of a phase less
  the smallest phase's, ÷ the runs between them (the target is checked on it);
* Kubernetes requests per look (every request the API server answered, watches aside),
  Prometheus requests per look (Prometheus' own `prometheus_http_requests_total` of the query
  endpoints, the baseline sampler's left out) and run-store writes per look (committed write
  transactions, `verdict_store_writes_total`);
* the baseline in the same run: the queries one look of one run sends on its own (recorded at a
  look of the phase's typical window), sent raw to Prometheus one after the other every 2 s
  during the phase; `÷ PromQL` is the answer p50 (web) or a look's mean (controller) over that
  raw time's p50 (mean), so load on the shared machine cancels out;
* growth from the smallest to the largest N as ratios, and the issue's targets;
* at the largest N, both modes once more with every look reading its own counters
  (`verdict serve --fleet-gather 0`, as before `metrics.fleet`): the baseline, in the same run,
  and each figure as a ratio to it.

`--quick` (CI): N = 10 and 100 only, time compressed 5 times (a 6 s interval, 3 s scrapes, a
12-minute pre-run window, 5 times the traffic per second: the same requests per interval and
the same looks, 5 times as many a second), 4 looks a run: about 4 minutes. The full run: N =
10, 100, 1,000 at the real 30 s interval, 6 looks a run: about 35 minutes. `--sizes 4` runs
one N (no baseline). Results: benchmarks/results/scale[-quick].json and .md.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import httpx
import numpy as np
import requests
import yaml

from benchmarks.prom import create_blocks, free_port, serve, stop_process

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "analyzer" / "examples" / "checkout.yaml"
ANALYSIS = "fleet"
PER_NAMESPACE = 10
ARGO_TIMEOUT = 10.0
_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
               300000, 600000, 1800000, 3600000)  # fmt: skip
_ERROR_RATE = 0.001
_LATENCY_MEDIAN_MS, _LATENCY_SIGMA = 80.0, 0.5
_STABLE_FACTOR = 9.0
_ROLLOUT_GET = re.compile(r"^/apis/argoproj\.io/v1alpha1/namespaces/([^/]+)/rollouts/([^/]+)$")


@dataclass(frozen=True)
class Plan:
    """What one run of the benchmark does; times in (compressed) seconds."""

    sizes: tuple[int, ...]
    compression: float  # 1: real time; 5: every duration 5 times shorter, traffic 5 times denser
    looks: int  # looks measured per run
    back: int  # web runs start up to this many intervals before their first look

    @property
    def interval(self) -> float:
        return 30.0 / self.compression

    @property
    def scrape(self) -> float:
        return 15.0 / self.compression

    @property
    def prerun(self) -> float:
        return 3600.0 / self.compression

    def phase_seconds(self) -> float:
        """About how long one phase takes (start-up, looks, the last answers)."""
        return 25.0 + (self.looks + 1) * self.interval + ARGO_TIMEOUT


QUICK = Plan(sizes=(10, 100), compression=5.0, looks=4, back=4)
FULL = Plan(sizes=(10, 100, 1000), compression=1.0, looks=6, back=10)


# --- the fleet's data ----------------------------------------------------------------------


def _service(i: int) -> str:
    return f"svc-{i:04d}"


def _namespace(i: int) -> str:
    return f"team-{i // PER_NAMESPACE:03d}"


def canary_rates(n: int, compression: float, seed: int = 11) -> np.ndarray:
    """Each service's canary requests per second (1 to 20, log-uniform), compressed."""
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(math.log(1.0), math.log(20.0), size=n)) * compression


def _bucket_probabilities() -> np.ndarray:
    from metrics.simulated import lognormal_bucket_probabilities

    bounds = [*_BUCKETS_MS, math.inf]
    return np.asarray(
        lognormal_bucket_probabilities(bounds, _LATENCY_MEDIAN_MS, _LATENCY_SIGMA), dtype=np.float64
    )


def _scrape_times(
    plan: Plan, offset: float, first: float, fine_from: float, end: float
) -> np.ndarray:
    """Scrape times (s): every 4 scrape intervals until `fine_from`, then every one."""
    coarse = np.arange(first + offset, fine_from, 4 * plan.scrape)
    fine = np.arange(
        coarse[-1] + plan.scrape if len(coarse) else fine_from + offset, end, plan.scrape
    )
    return np.concatenate([coarse, fine])


def write_fleet(
    requests_out: TextIO, buckets_out: TextIO, plan: Plan, n: int, first: float, fine_from: float,
    end: float, seed: int = 7,
) -> int:  # fmt: skip
    """The fleet's counters from `first` to `end` (Unix seconds) as OpenMetrics lines (the
    requests family to `requests_out`, the buckets to `buckets_out`); returns the sample count.
    The pre-run past (before `fine_from`) is scraped 4 times less often: only its edges count."""
    rng = np.random.default_rng(seed)
    probabilities = _bucket_probabilities()
    les = [*(f"{b:g}" for b in _BUCKETS_MS), "+Inf"]
    rates = canary_rates(n, plan.compression)
    samples = 0
    for i in range(n):
        times = _scrape_times(plan, float(rng.uniform(0, plan.scrape)), first, fine_from, end)
        stamps = [f"{t:.3f}" for t in times]
        gaps = np.diff(times, prepend=times[0] - plan.scrape)
        for version, rps in (("canary", rates[i]), ("stable", rates[i] * _STABLE_FACTOR)):
            served = rng.poisson(rps * gaps)
            served[0] += rng.poisson(rps * 600)  # the sidecar has served before the data start
            bad = rng.binomial(served, _ERROR_RATE)
            ok = np.cumsum(served - bad).tolist()
            errors = np.cumsum(bad)
            born = int(np.argmax(errors > 0)) if errors[-1] > 0 else len(times)
            base = f'reporter="destination",destination_service_name="{_service(i)}-{version}"'
            head = f'istio_requests_total{{{base},response_code="200"}} '
            requests_out.write("".join(f"{head}{v} {t}\n" for v, t in zip(ok, stamps, strict=True)))
            if born < len(times):  # a 503 series exists from its first error on
                head = f'istio_requests_total{{{base},response_code="503"}} '
                requests_out.write(
                    "".join(
                        f"{head}{v} {t}\n"
                        for v, t in zip(errors[born:].tolist(), stamps[born:], strict=True)
                    )
                )
            cumulative = np.cumsum(
                np.cumsum(rng.multinomial(served, probabilities), axis=0), axis=1
            )
            for k, le in enumerate(les):
                head = f'istio_request_duration_milliseconds_bucket{{{base},le="{le}"}} '
                buckets_out.write(
                    "".join(
                        f"{head}{v} {t}\n"
                        for v, t in zip(cumulative[:, k].tolist(), stamps, strict=True)
                    )
                )
            samples += len(times) * (1 + len(les)) + max(0, len(times) - born)
    return samples


@contextlib.contextmanager
def fleet_prometheus(
    root: Path, plan: Plan, n: int, span: tuple[float, float, float]
) -> Iterator[tuple[str, dict[str, Any]]]:
    """A real Prometheus over the fleet's counters (`span`: first, fine_from, end, Unix s);
    yields its URL and what was written."""
    began = time.perf_counter()
    openmetrics, buckets = root / "fleet.om", root / "buckets.om"
    with openmetrics.open("w") as out, buckets.open("w") as more:
        out.write("# TYPE istio_requests counter\n")
        samples = write_fleet(out, more, plan, n, *span)
    with openmetrics.open("a") as out, buckets.open() as more:
        out.write("# TYPE istio_request_duration_milliseconds histogram\n")
        shutil.copyfileobj(more, out)
        out.write("# EOF\n")
    buckets.unlink()
    written = time.perf_counter()
    create_blocks(openmetrics, root / "tsdb")
    openmetrics.unlink()
    blocks = time.perf_counter()
    with serve(root / "tsdb", root) as url:
        yield (
            url,
            {
                "services": n,
                "series": n * 2 * 22,
                "samples": samples,
                "writeSeconds": round(written - began, 1),
                "promtoolSeconds": round(blocks - written, 1),
            },
        )


def fleet_analysis(plan: Plan) -> dict[str, Any]:
    """The embedded checkout analysis for every service of the fleet (one file)."""
    analysis = yaml.safe_load(EXAMPLE.read_text())
    analysis.update(
        name=ANALYSIS,
        canary={"destination_service_name": "{{ rollout }}-canary"},
        baseline={"destination_service_name": "{{ rollout }}-stable"},
        interval=f"{plan.interval:g}s",
        preRunWindow=f"{plan.prerun:g}s",
    )
    return dict(analysis)


# --- the Kubernetes API ----------------------------------------------------------------------


def _kube_server_class() -> type[Any]:
    """The Kubernetes API test server, made to carry a fleet: each request's time is kept, no
    CRD schema check per write (the test suite checks Verdict's writes against the schemas; a
    real API server does that on its own cores), lists and watches that do not scan every
    object or event ever stored, and `involvedObject.kind` field selectors honoured."""
    sys.path.insert(0, str(REPO))
    from tests.kube_server import KubeServer, _as_version

    class FleetKube(KubeServer):  # type: ignore[misc]
        def __post_init__(self) -> None:
            super().__post_init__()
            self.timed: list[tuple[float, str, str]] = []

        def handle(
            self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
        ) -> tuple[int, Any]:
            self.timed.append((time.time(), method, path))
            return super().handle(method, path, query, content_type, body)  # type: ignore[no-any-return]

        def _validate(self, resource: Any, obj: dict[str, Any]) -> None:
            return

        def _matches(
            self, resource: Any, namespace: str | None, obj: dict[str, Any], query: dict[str, str]
        ) -> bool:
            if not super()._matches(resource, namespace, obj, query):
                return False
            for term in filter(None, query.get("fieldSelector", "").split(",")):
                key, _, value = term.partition("=")
                if key == "involvedObject.kind":
                    return bool((obj.get("involvedObject") or {}).get("kind") == value.lstrip("="))
            return True

        def _list(
            self, resource: Any, namespace: str | None, query: dict[str, str]
        ) -> dict[str, Any]:
            rkey = self._rkey(resource)
            items = [
                _as_version(o, resource)
                for k, o in sorted(
                    (k, o) for k, o in self._objects.items()
                    if k[0] == rkey and (namespace is None or k[1] == namespace)
                )
                if self._matches(resource, namespace, o, query)
            ]  # fmt: skip
            return {
                "apiVersion": resource.api_version,
                "kind": f"{resource.kind}List",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": items,
            }

        def watch(self, path: str, query: dict[str, str], send: Callable[[Any], None]) -> None:
            resource, namespace, _, _ = self._route(path)
            deadline = time.monotonic() + min(float(query.get("timeoutSeconds") or 60), 60.0)
            with self._lock:
                self._watching += 1
                given = query.get("resourceVersion", "")
                since = self._rv if given in ("", "0") else int(given)
            try:
                while not self._stopping.is_set():
                    with self._changed:
                        first = bisect.bisect_right(self._events, since, key=lambda e: e.rv)
                        pending = self._events[first:]
                        if not pending:
                            left = deadline - time.monotonic()
                            if left <= 0:
                                return
                            self._changed.wait(timeout=min(left, 0.5))
                            continue
                        since = pending[-1].rv
                        out = [
                            {"type": e.type, "object": _as_version(e.obj, resource)}
                            for e in pending
                            if self._matches(resource, namespace, e.obj, query)
                        ]
                    for event in out:
                        send(event)
            finally:
                with self._lock:
                    self._watching -= 1

    return FleetKube


def _rollout(i: int, canary_hash: str, stable_hash: str, now: datetime) -> dict[str, Any]:
    from tests.argo_standin import PAUSE_STEPS, canary_rollout

    obj = canary_rollout(_service(i), _namespace(i), analysis=ANALYSIS, steps=PAUSE_STEPS)
    obj["status"] = _status(canary_hash, stable_hash, now, generation=1)
    return obj


def _status(
    canary_hash: str, stable_hash: str, now: datetime, *, generation: int
) -> dict[str, Any]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {
        "currentPodHash": canary_hash,
        "stableRS": stable_hash,
        "observedGeneration": str(generation),
        "currentStepIndex": 0,
        "phase": "Healthy",
    }
    if canary_hash != stable_hash:  # updating: at the first step's pause (after setWeight 5)
        status.update(
            currentStepIndex=1,
            phase="Paused",
            controllerPause=True,
            pauseConditions=[{"reason": "CanaryPauseStep", "startTime": stamp}],
            canary={"weights": {"canary": {"weight": 5}, "stable": {"weight": 95}}},
        )
    return status


def _pod(i: int, canary_hash: str, now: datetime) -> dict[str, Any]:
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{_service(i)}-{canary_hash}-0",
            "namespace": _namespace(i),
            "labels": {"app": _service(i), "rollouts-pod-template-hash": canary_hash},
            "creationTimestamp": stamp,
        },
        "spec": {"containers": [{"name": "app", "image": f"{_service(i)}:2"}]},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": stamp}],
            "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0}],
        },
    }


# --- the Verdict process and what it says about itself -----------------------------------------


@contextlib.contextmanager
def verdict_process(
    root: Path,
    prometheus_url: str,
    plan: Plan,
    kubeconfig: Path | None = None,
    *,
    alone: bool = False,
) -> Iterator[tuple[str, int]]:
    """`verdict serve` (the real command line; `--watch` with a kubeconfig) over the fleet
    analysis; yields its URL and process id once it is ready. `alone`: every look reads its
    own counters (`--fleet-gather 0`, the baseline)."""
    folder = root / "analyses"
    folder.mkdir(exist_ok=True)
    (folder / f"{ANALYSIS}.yaml").write_text(yaml.safe_dump(fleet_analysis(plan)))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = root / f"runs-{port}.sqlite"
    command = [
        sys.executable, "-m", "analyzer.cli", "serve", "--config", str(folder),
        "--host", "127.0.0.1", "--port", str(port), "--store", f"sqlite:///{store}",
        "--prometheus-url", prometheus_url, "--log-level", "warning",
    ]  # fmt: skip
    if kubeconfig is not None:
        command += ["--watch", "--kubeconfig", str(kubeconfig)]
    if alone:
        command += ["--fleet-gather", "0"]
    log = root / f"verdict-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"verdict serve exited {process.returncode}:\n{log.read_text()[-3000:]}"
                )
            with contextlib.suppress(requests.RequestException):
                ready = requests.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200 and (
                    kubeconfig is None or "rollout watch (all namespaces)" in ready.json()["checks"]
                ):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"verdict serve was not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield url, process.pid
    finally:
        stop_process(process)
        problems = [
            line for line in log.read_text(errors="replace").splitlines()
            if '"level": "error"' in line or "Traceback" in line
        ]  # fmt: skip
        if problems:
            print(
                f"  verdict log: {len(problems)} error line(s), first: {problems[0][:300]}",
                flush=True,
            )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return 0.0


def _exposition(url: str) -> dict[str, float]:
    """Every sample of a `/metrics` page, by its name and labels as written."""
    values: dict[str, float] = {}
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[name] = float(value)
    return values


def _sum(values: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in values.items() if k == prefix or k.startswith(prefix + "{"))


def _prometheus_queries(values: dict[str, float]) -> float:
    return sum(
        v for k, v in values.items()
        if k.startswith("prometheus_http_requests_total{") and '/api/v1/query' in k
    )  # fmt: skip


def _prometheus_pid(url: str) -> int | None:
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command = (proc / "cmdline").read_bytes().split(b"\0")
            if (
                command
                and command[0].endswith(b"prometheus")
                and any(c.endswith(f":{port}".encode()) for c in command)
            ):
                return int(proc.name)
    return None


@dataclass
class _Reading:
    """The counters a phase reads before and after."""

    at: float
    cpu: float
    rss: float
    prometheus_cpu: float
    verdict: dict[str, float]
    prometheus_queries: float
    kube_requests: int

    @classmethod
    def take(
        cls, url: str, pid: int, prometheus_url: str, prometheus_pid: int | None, kube: Any
    ) -> _Reading:
        return cls(
            at=time.monotonic(),
            cpu=_cpu_seconds(pid),
            rss=_rss_kib(pid),
            prometheus_cpu=_cpu_seconds(prometheus_pid) if prometheus_pid else math.nan,
            verdict=_exposition(url),
            prometheus_queries=_prometheus_queries(_exposition(prometheus_url)),
            kube_requests=len(kube.timed) if kube is not None else 0,
        )


# --- the baseline: one look's queries sent raw -----------------------------------------------


def look_queries(
    prometheus_url: str, plan: Plan, i: int, start: datetime, looks: int
) -> list[tuple[str, str]]:
    """The (PromQL, time) pairs one look of service i's run sends on its own, `looks` whole
    intervals after `start` (recorded by a proxy in front of the Prometheus)."""
    from analyzer.analysis import fetch_observations
    from analyzer.spec import parse_analysis, plan_analysis
    from metrics.prometheus import PrometheusSource
    from metrics.source import Window
    from tests.local_http import recording_prometheus

    analysis_plan = plan_analysis(parse_analysis(fleet_analysis(plan)))
    step = timedelta(seconds=plan.interval)
    params = {
        "rollout": _service(i),
        "namespace": _namespace(i),
        "canaryHash": "c",
        "stableHash": "s",
    }
    with recording_prometheus(prometheus_url) as recording:
        source = PrometheusSource(recording.url)
        window = Window(start=start, end=start + step * max(1, looks), step=step)
        fetch_observations(analysis_plan, source, window, params)
        source.close()
    return [(params["query"], params["time"]) for params, _ in recording.sent]


class _RawSampler:
    """Every 2 s, one look's queries straight to Prometheus, one after the other (a thread)."""

    def __init__(self, prometheus_url: str, queries: list[tuple[str, str]]) -> None:
        self.url = prometheus_url
        self.queries = queries
        self.seconds: list[float] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _RawSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(2.0):
                began = time.perf_counter()
                for promql, at in self.queries:
                    reply = session.post(
                        f"{self.url}/api/v1/query", data={"query": promql, "time": at}
                    )
                    reply.raise_for_status()
                    reply.json()
                self.seconds.append(time.perf_counter() - began)
                self.sent += len(self.queries)


# --- the phases -------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def _figures(
    mode: str, n: int, plan: Plan, before: _Reading, after: _Reading, lags: list[float],
    due: int, raw: _RawSampler, extra: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    v0, v1 = before.verdict, after.verdict
    looks = _sum(v1, "verdict_looks_total") - _sum(v0, "verdict_looks_total")
    timed = v1.get("verdict_look_duration_seconds_count", 0) - v0.get(
        "verdict_look_duration_seconds_count", 0
    )

    def per_look(total: float, count: float = looks, scale: float = 1000.0) -> float | None:
        return total / count * scale if count > 0 else None

    def delta(name: str) -> float:
        return v1.get(name, 0.0) - v0.get(name, 0.0)

    wall = after.at - before.at
    look_ms = per_look(delta("verdict_look_duration_seconds_sum"), timed)
    fetch_ms = per_look(delta("verdict_fetch_duration_seconds_sum"), timed)
    raw_p50 = _percentile(raw.seconds, 0.5)
    prom_requests = after.prometheus_queries - before.prometheus_queries - raw.sent
    errors = {
        k.split('code="', 1)[1].split('"', 1)[0]: int(v - v0.get(k, 0.0))
        for k, v in v1.items()
        if k.startswith("verdict_look_errors_total{") and v - v0.get(k, 0.0) > 0
    }
    verdicts = {
        k.split('verdict="', 1)[1].split('"', 1)[0]: int(v - v0.get(k, 0.0))
        for k, v in v1.items()
        if k.startswith("verdict_verdicts_total{") and v - v0.get(k, 0.0) > 0
    }
    return {
        "mode": mode,
        "runs": n,
        "wallSeconds": round(wall, 1),
        "looks": int(looks),
        "looksDue": due,
        "looksPerSecond": looks / wall if wall > 0 else None,
        "duePerSecond": n / plan.interval,
        "lagSeconds": {
            "p50": _percentile(lags, 0.5),
            "p99": _percentile(lags, 0.99),
            "max": max(lags) if lags else None,
            "measured": len(lags),
            "missed": max(0, due - len(lags)),
        },
        "cpuMsPerLook": per_look(after.cpu - before.cpu),
        "judgeMsPerLook": per_look(delta("verdict_judge_duration_seconds_sum"), timed),
        "lookMs": look_ms,
        "fetchMs": fetch_ms,
        "wallBeyondPromqlMs": None if look_ms is None or fetch_ms is None else look_ms - fetch_ms,
        "prometheusCpuMsPerLook": per_look(after.prometheus_cpu - before.prometheus_cpu),
        "memoryKiBPerRun": (after.rss - before.rss) / n,
        "rssMiB": {"before": before.rss / 1024, "after": after.rss / 1024},
        "kubeRequestsPerLook": per_look(after.kube_requests - before.kube_requests, scale=1.0),
        "prometheusRequestsPerLook": per_look(prom_requests, scale=1.0),
        "storeWritesPerLook": per_look(delta("verdict_store_writes_total"), scale=1.0)
        if "verdict_store_writes_total" in v1
        else None,
        "rawPromqlMs": {
            "p50": None if raw_p50 is None else raw_p50 * 1000,
            "mean": statistics.fmean(raw.seconds) * 1000 if raw.seconds else None,
            "samples": len(raw.seconds),
            "queries": len(raw.queries),
        },
        "errors": errors,
        "verdicts": verdicts,
        **extra,
    }


def controller_phase(
    root: Path, prometheus_url: str, plan: Plan, n: int, *, alone: bool = False
) -> dict[str, Any]:
    """N Rollouts start updating at once; Verdict's controller looks at each every interval."""
    kube = _kube_server_class()().start()
    try:
        now = datetime.now(UTC)
        for i in range(n):
            kube.put(_rollout(i, f"s{i:04d}", f"s{i:04d}", now))
            kube.put(_pod(i, f"s{i:04d}", now))  # the stable version's pod
        kube.react(_argo_aborts)
        kubeconfig = kube.write_kubeconfig(root / "kubeconfig")
        typical = plan.looks // 2  # a look's window halfway through the phase
        queries = look_queries(prometheus_url, plan, 0, _ago(plan, typical), typical)
        with verdict_process(root, prometheus_url, plan, kubeconfig, alone=alone) as (url, pid):
            prometheus_pid = _prometheus_pid(prometheus_url)
            time.sleep(1.0)
            before = _Reading.take(url, pid, prometheus_url, prometheus_pid, kube)
            began: dict[tuple[str, str], float] = {}
            now = datetime.now(UTC)
            for i in range(n):  # every Rollout starts an update, at once
                kube.put(_pod(i, f"c{i:04d}", now))
                kube.modify(
                    "argoproj.io", "v1alpha1", "rollouts", _namespace(i), _service(i),
                    _updating(i, now),
                )  # fmt: skip
                began[(_namespace(i), _service(i))] = time.time()
            with _RawSampler(prometheus_url, queries) as raw:
                end = min(began.values()) + (plan.looks - 1) * plan.interval + plan.interval * 0.9
                time.sleep(max(0.0, end - time.time()))
            after = _Reading.take(url, pid, prometheus_url, prometheus_pid, kube)
        lags = _tick_lags(kube.timed, began, plan)
        writes = Counter(method for _, method, _ in kube.timed if method != "GET")
    finally:
        kube.stop()
    extra = {"kubeWrites": dict(writes), "reads": "alone" if alone else "together"}
    return _figures("controller", n, plan, before, after, lags, n * plan.looks, raw, extra)


def _ago(plan: Plan, looks: int) -> datetime:
    """A window start `looks` intervals (and a scrape's settling) before now."""
    return datetime.now(UTC) - timedelta(seconds=looks * plan.interval + 20)


def _argo_aborts(server: Any, resource: Any, obj: dict[str, Any]) -> None:
    """What Argo does after an abort, for the rollback's check: the canary's weight back to 0."""
    status = obj.get("status") or {}
    if resource.plural != "rollouts" or not status.get("abort"):
        return
    if ((status.get("canary") or {}).get("weights") or {}).get("canary", {}).get("weight") == 0:
        return
    meta = obj["metadata"]

    def back(o: dict[str, Any]) -> None:
        o["status"].update(
            phase="Degraded",
            canary={"weights": {"canary": {"weight": 0}, "stable": {"weight": 100}}},
        )

    server.modify("argoproj.io", "v1alpha1", "rollouts", meta["namespace"], meta["name"], back)


def _updating(i: int, now: datetime) -> Callable[[dict[str, Any]], None]:
    def change(obj: dict[str, Any]) -> None:
        obj["status"] = _status(
            f"c{i:04d}", f"s{i:04d}", now, generation=int(obj["metadata"]["generation"])
        )

    return change


def _tick_lags(
    timed: list[tuple[float, str, str]], began: dict[tuple[str, str], float], plan: Plan
) -> list[float]:
    """Each tick's lag: the first GET of its Rollout in each interval after the update began,
    less the interval's start (the tick's due time)."""
    first: dict[tuple[str, str, int], float] = {}
    for at, method, path in timed:
        found = _ROLLOUT_GET.match(path) if method == "GET" else None
        if found is None:
            continue
        key = (found.group(1), found.group(2))
        start = began.get(key)
        if start is None or at < start:
            continue
        slot = int((at - start) // plan.interval)
        if slot < plan.looks and (*key, slot) not in first:
            first[(*key, slot)] = at - (start + slot * plan.interval)
    return list(first.values())


async def _web_clients(
    url: str, plan: Plan, n: int, t0: float, starts: list[str]
) -> tuple[list[float], list[float], Counter[str]]:
    """Each run asked every interval (first calls spread over the first interval): the lags
    (answered less due) and answer times."""
    lags: list[float] = []
    answers: list[float] = []
    outcomes: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=url, timeout=ARGO_TIMEOUT, limits=limits) as client:

        async def one(i: int) -> None:
            body = {
                "analysis": ANALYSIS, "namespace": _namespace(i), "rollout": _service(i),
                "canaryHash": f"c{i:04d}", "stableHash": f"s{i:04d}", "start": starts[i],
            }  # fmt: skip
            for k in range(plan.looks):
                due = t0 + (i / n + k) * plan.interval
                await asyncio.sleep(max(0.0, due - time.time()))
                sent = time.time()
                try:
                    answer = await client.post("/api/v1/verdict", json=body)
                except httpx.TimeoutException:
                    outcomes["client timeout (10 s)"] += 1
                    continue
                except httpx.HTTPError as error:
                    outcomes[f"connection error ({type(error).__name__})"] += 1
                    continue
                done = time.time()
                outcomes[str(answer.status_code)] += 1
                if answer.status_code == 200:
                    lags.append(done - due)
                    answers.append(done - sent)

        await asyncio.gather(*(one(i) for i in range(n)))
    return lags, answers, outcomes


def web_phase(
    root: Path, prometheus_url: str, plan: Plan, n: int, *, alone: bool = False
) -> dict[str, Any]:
    """N runs asked every interval through `POST /api/v1/verdict`."""
    with verdict_process(root, prometheus_url, plan, alone=alone) as (url, pid):
        prometheus_pid = _prometheus_pid(prometheus_url)
        t0 = time.time() + 3.0
        back = [(i % (plan.back + 1)) * plan.interval for i in range(n)]
        starts = [
            datetime.fromtimestamp(t0 - b, UTC).isoformat().replace("+00:00", "Z") for b in back
        ]
        typical = (plan.back + plan.looks) // 2
        queries = look_queries(prometheus_url, plan, 0, _ago(plan, typical), typical)
        httpx.post(  # warm up: imports, first connections (a run of its own)
            f"{url}/api/v1/verdict",
            json={"analysis": ANALYSIS, "namespace": "warm", "rollout": _service(0),
                  "canaryHash": "warm", "stableHash": "warm", "start": starts[-1]},
            timeout=30,
        ).raise_for_status()  # fmt: skip
        before = _Reading.take(url, pid, prometheus_url, prometheus_pid, None)
        with _RawSampler(prometheus_url, queries) as raw:
            lags, answers, outcomes = asyncio.run(_web_clients(url, plan, n, t0, starts))
        after = _Reading.take(url, pid, prometheus_url, prometheus_pid, None)
    extra = {
        "answerMs": {
            "p50": (_percentile(answers, 0.5) or math.nan) * 1000,
            "p99": (_percentile(answers, 0.99) or math.nan) * 1000,
        },
        "outcomes": dict(outcomes.most_common()),
        "reads": "alone" if alone else "together",
    }
    figures = _figures("web", n, plan, before, after, lags, n * plan.looks, raw, extra)
    raw50 = figures["rawPromqlMs"]["p50"]
    figures["answerOverPromql"] = extra["answerMs"]["p50"] / raw50 if raw50 else None
    return figures


# --- the whole run ----------------------------------------------------------------------------


def run_scale(quick: bool = False, sizes: tuple[int, ...] | None = None) -> dict[str, Any]:
    plan = QUICK if quick else FULL
    if sizes:
        plan = Plan(sizes=sizes, compression=plan.compression, looks=plan.looks, back=plan.back)
    began = time.perf_counter()
    load_before = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="verdict-bench-scale-"))
    n = max(plan.sizes)
    now = time.time()
    duration = (len(plan.sizes) + 1) * 2 * plan.phase_seconds()  # the baseline's two more
    first = now - plan.prerun - (plan.back + 4) * plan.interval - 120
    fine_from = now - (plan.back + 3) * plan.interval - 60
    # the data are written (about 50 ms a service) and turned into blocks before the clock runs
    end = now + 300 + duration * 1.2 + n * 0.1
    phases: list[dict[str, Any]] = []
    try:
        print(f"fleet of {n} services: writing its counters ...", flush=True)
        with fleet_prometheus(root, plan, n, (first, fine_from, end)) as (prometheus_url, fleet):
            print(
                f"  {fleet['series']:,} series, {fleet['samples']:,} samples "
                f"(written in {fleet['writeSeconds']} s, blocks in {fleet['promtoolSeconds']} s)",
                flush=True,
            )
            for size in plan.sizes:
                for mode, phase in (("controller", controller_phase), ("web", web_phase)):
                    # the baseline, at the largest N only (of several): every look reads alone
                    baseline_too = size == n and len(plan.sizes) > 1
                    for alone in (False, True) if baseline_too else (False,):
                        what = " (baseline: every look reads alone)" if alone else ""
                        print(f"{mode}: {size} runs, {plan.looks} looks each{what} ...", flush=True)
                        folder = root / f"{mode}-{size}{'-alone' if alone else ''}"
                        folder.mkdir()
                        phases.append(phase(folder, prometheus_url, plan, size, alone=alone))
                        print("  " + _one_line(phases[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "scale",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "loadAverage1m": {"before": load_before, "after": os.getloadavg()[0]},
        "plan": {
            **asdict(plan),
            "interval": plan.interval,
            "scrape": plan.scrape,
            "prerun": plan.prerun,
        },
        "fleet": fleet,
        "phases": phases,
        "wallSeconds": round(time.perf_counter() - began, 1),
    }
    together = [p for p in phases if p["reads"] == "together"]
    result["growth"] = growth(together)
    result["baseline"] = baseline(phases)
    result["targets"] = targets(together)
    return _finite(result)


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _one_line(p: dict[str, Any]) -> str:
    lag = p["lagSeconds"]
    return (
        f"{p['looks']} looks ({p['looksPerSecond'] or 0:.1f}/s), lag p50 {_f(lag['p50'], 's')} "
        f"p99 {_f(lag['p99'], 's')}, CPU {_f(p['cpuMsPerLook'], 'ms')}/look, "
        f"prom req {_f(p['prometheusRequestsPerLook'])}/look, errors {p['errors'] or 0}"
    )


def _f(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}{(' ' + unit) if unit else ''}"


_GROWN = {
    "lagP99": lambda p: p["lagSeconds"]["p99"],
    "cpuMsPerLook": lambda p: p["cpuMsPerLook"],
    "wallBeyondPromqlMs": lambda p: p["wallBeyondPromqlMs"],
    "memoryKiBPerRun": lambda p: p["memoryKiBPerRun"],
    "prometheusRequestsPerLook": lambda p: p["prometheusRequestsPerLook"],
    "kubeRequestsPerLook": lambda p: p["kubeRequestsPerLook"],
    "storeWritesPerLook": lambda p: p["storeWritesPerLook"],
}


def growth(phases: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per mode, each figure at the largest N ÷ at the smallest, and the memory each run more
    takes (the RSS at the end of the largest phase less the smallest's, ÷ the runs between
    them: what a phase costs whatever its size cancels out)."""
    out: dict[str, dict[str, float | None]] = {}
    for mode in ("controller", "web"):
        rows = sorted((p for p in phases if p["mode"] == mode), key=lambda p: p["runs"])
        if len(rows) < 2:
            continue
        ratios: dict[str, float | None] = {"from": rows[0]["runs"], "to": rows[-1]["runs"]}
        for name, get in _GROWN.items():
            low, high = get(rows[0]), get(rows[-1])
            ratios[name] = high / low if low and high is not None and low > 0 else None
        out[mode] = ratios
        added = rows[-1]["runs"] - rows[0]["runs"]
        for row in rows[1:]:
            between = row["runs"] - rows[0]["runs"]
            row["memoryKiBPerExtraRun"] = (
                (row["rssMiB"]["after"] - rows[0]["rssMiB"]["after"]) * 1024 / between
            )
        ratios["memoryKiBPerExtraRun"] = rows[-1]["memoryKiBPerExtraRun"] if added else None
    return out


_COMPARED = {
    "looksPerSecond": lambda p: p["looksPerSecond"],
    "lagP50": lambda p: p["lagSeconds"]["p50"],
    "lagP99": lambda p: p["lagSeconds"]["p99"],
    "cpuMsPerLook": lambda p: p["cpuMsPerLook"],
    "prometheusRequestsPerLook": lambda p: p["prometheusRequestsPerLook"],
    "prometheusCpuMsPerLook": lambda p: p["prometheusCpuMsPerLook"],
    "memoryKiBPerRun": lambda p: p["memoryKiBPerRun"],
}


def baseline(phases: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Per mode at the largest N: each figure with looks read together ÷ the same with every
    look reading alone (`--fleet-gather 0`), measured in the same run."""
    out: dict[str, dict[str, float | None]] = {}
    for mode in ("controller", "web"):
        rows = {p["reads"]: p for p in phases if p["mode"] == mode}
        if "alone" not in rows or "together" not in rows:
            continue
        together, alone = rows["together"], rows["alone"]
        ratios: dict[str, float | None] = {"runs": together["runs"]}
        for name, get in _COMPARED.items():
            low, high = get(alone), get(together)
            ratios[name] = high / low if low and high is not None and low > 0 else None
        out[mode] = ratios
    return out


def targets(phases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's single-replica targets, each on the phase it is about (the largest N)."""

    def largest(mode: str) -> dict[str, Any] | None:
        rows = [p for p in phases if p["mode"] == mode]
        return max(rows, key=lambda p: p["runs"]) if rows else None

    def smallest(mode: str) -> dict[str, Any] | None:
        rows = [p for p in phases if p["mode"] == mode]
        return min(rows, key=lambda p: p["runs"]) if rows else None

    out: list[dict[str, Any]] = []
    ctrl, web, web_small = largest("controller"), largest("web"), smallest("web")

    def add(what: str, phase: dict[str, Any] | None, value: float | None, limit: float) -> None:
        if phase is None:
            return
        out.append({
            "target": what, "runs": phase["runs"], "mode": phase["mode"], "value": value,
            "limit": limit, "met": value is not None and value <= limit,
        })  # fmt: skip

    add("look lag p99, s (controller)", ctrl, ctrl and ctrl["lagSeconds"]["p99"], 5.0)
    for phase in (ctrl, web):
        add("CPU per look beyond PromQL, ms", phase, phase and phase["cpuMsPerLook"], 5.0)
        add(
            "Prometheus requests per look", phase, phase and phase["prometheusRequestsPerLook"], 1.0
        )
        add(
            "memory per active run, KiB (each run more, from the smallest N)",
            phase,
            phase and phase.get("memoryKiBPerExtraRun"),
            10.0,
        )
    add("web answer ÷ its PromQL, p50", web_small, web_small and web_small["answerOverPromql"], 1.3)
    return out


# --- tables -----------------------------------------------------------------------------------

_COLUMNS = (
    ("mode", lambda p: p["mode"] + (" (alone)" if p.get("reads") == "alone" else "")),
    ("N", lambda p: str(p["runs"])),
    ("looks/s (due)", lambda p: f"{_f(p['looksPerSecond'], digits=1)} ({p['duePerSecond']:.1f})"),
    ("lag p50 / p99 s", lambda p: f"{_f(p['lagSeconds']['p50'])} / {_f(p['lagSeconds']['p99'])}"),
    ("missed", lambda p: str(p["lagSeconds"]["missed"])),
    ("CPU ms/look", lambda p: _f(p["cpuMsPerLook"], digits=1)),
    ("judge ms (wall)", lambda p: _f(p["judgeMsPerLook"], digits=1)),
    ("wall-PromQL ms", lambda p: _f(p["wallBeyondPromqlMs"], digits=1)),
    ("÷ PromQL", lambda p: _f(p.get("answerOverPromql") or _ctrl_ratio(p))),
    (
        "KiB/run (more)",
        lambda p: (
            f"{_f(p['memoryKiBPerRun'], digits=0)} ({_f(p.get('memoryKiBPerExtraRun'), digits=1)})"
        ),
    ),
    ("kube req/look", lambda p: _f(p["kubeRequestsPerLook"])),
    ("prom req/look", lambda p: _f(p["prometheusRequestsPerLook"])),
    ("store writes/look", lambda p: _f(p["storeWritesPerLook"])),
    ("prom CPU ms/look", lambda p: _f(p["prometheusCpuMsPerLook"], digits=1)),
    ("errors", lambda p: ", ".join(f"{k} {v}" for k, v in p["errors"].items()) or "0"),
)


def _ctrl_ratio(p: dict[str, Any]) -> float | None:
    raw = p["rawPromqlMs"]["mean"]
    return p["lookMs"] / raw if raw and p["lookMs"] is not None else None


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    return [[get(p) for _, get in _COLUMNS] for p in result["phases"]]


def console_tables(result: dict[str, Any]) -> list[str]:
    head = [name for name, _ in _COLUMNS]
    rows = table_rows(result)
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(head)]
    lines = [
        "",
        _setup_line(result),
        "",
        "  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines += ["", "growth, largest N ÷ smallest N:"]
    for mode, ratios in result["growth"].items():
        parts = ", ".join(f"{k} ×{_f(v)}" for k, v in ratios.items() if k not in ("from", "to"))
        lines.append(f"  {mode} ({ratios['from']} → {ratios['to']}): {parts}")
    lines += ["", "looks read together ÷ every look reading alone (the baseline, same run):"]
    for mode, ratios in result.get("baseline", {}).items():
        parts = ", ".join(f"{k} ×{_f(v)}" for k, v in ratios.items() if k != "runs")
        lines.append(f"  {mode} ({ratios['runs']}): {parts}")
    lines += ["", "targets:"]
    for t in result["targets"]:
        lines.append(
            f"  {'met ' if t['met'] else 'MISSED'} {t['target']} at {t['runs']} runs ({t['mode']}): "
            f"{_f(t['value'])} (≤ {t['limit']:g})"
        )
    return lines


def _setup_line(result: dict[str, Any]) -> str:
    plan = result["plan"]
    compressed = (
        f"time compressed ×{plan['compression']:g}: a {plan['interval']:g} s interval stands for "
        "30 s (scrapes, pre-run window and traffic per second scaled alike: the same requests and "
        "looks per interval, looks/s ×" + f"{plan['compression']:g})"
        if plan["compression"] != 1
        else "real time: a 30 s interval"
    )
    load = result["loadAverage1m"]
    return (
        f"{plan['looks']} looks a run; {compressed}; {result['machine']['cpus']} CPUs shared with "
        f"Prometheus, the Kubernetes API test server and the clients (load average "
        f"{load['before']:.1f} before, {load['after']:.1f} after)"
    )


def markdown(result: dict[str, Any], command: str) -> str:
    head = [name for name, _ in _COLUMNS]
    lines = [
        "# Scale: one replica, a fleet of rollouts",
        "",
        f"`{command}` on {result['date']}, {result['wallSeconds']:.0f} s. {_setup_line(result)}.",
        "",
        f"Fleet: {result['fleet']['services']} services, {result['fleet']['series']:,} series, "
        f"{result['fleet']['samples']:,} samples in a real Prometheus. Definitions: "
        "benchmarks/scale.py's docstring and benchmarks/README.md.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    lines += ["| " + " | ".join(r) + " |" for r in table_rows(result)]
    lines += ["", "## Growth (largest N ÷ smallest N)", "", "| mode | " + " | ".join(_GROWN) + " |"]
    lines.append("|" + "---|" * (len(_GROWN) + 1))
    for mode, ratios in result["growth"].items():
        lines.append(
            f"| {mode} ({ratios['from']} → {ratios['to']}) | "
            + " | ".join(_f(ratios.get(name)) for name in _GROWN)
            + " |"
        )
    lines += [
        "",
        "## Against the baseline (same run, largest N): looks read together ÷ every look alone",
        "",
        "| mode | " + " | ".join(_COMPARED) + " |",
        "|" + "---|" * (len(_COMPARED) + 1),
    ]
    for mode, ratios in result.get("baseline", {}).items():
        lines.append(
            f"| {mode} ({ratios['runs']}) | "
            + " | ".join(_f(ratios.get(name)) for name in _COMPARED)
            + " |"
        )
    lines += [
        "",
        "## Targets",
        "",
        "| target | runs (mode) | value | limit | met |",
        "|---|---|---|---|---|",
    ]
    for t in result["targets"]:
        lines.append(
            f"| {t['target']} | {t['runs']} ({t['mode']}) | {_f(t['value'])} | ≤ {t['limit']:g} | "
            f"{'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"

"""`python -m benchmarks.serve`: the cost of `verdict serve` looks next to Prometheus alone.

What runs, all on loopback:

* a real Prometheus over the test scenarios (`tests/promdata.py`: 40 minutes of Istio traffic,
  canary 20 rps, baseline 60 rps, 15 s scrapes), imported with promtool as the tests do;
* `verdict serve` as its own process (the real command line, SQLite run store), with the
  embedded checkout analysis pointed at the `healthy` scenario;
* a client in this process that keeps N runs active (N = 1, 50, 500: one run per canary hash)
  and asks `POST /api/v1/verdict` for them round robin. Every call is a full look on the data
  since its run's start (`start` = the scenario's start, so each look covers the whole scenario).

Measured per N:

* latency: one client, one call at a time; after each call the same PromQL queries that the look
  sent (recorded from Verdict's own Prometheus source: 10 instant queries) are sent again straight
  to Prometheus, one after the other, on a kept-alive connection: the raw PromQL time of that look.
  The ratio is Verdict's answer time over that raw time (p50 over p50, p99 over p99);
* throughput: `--concurrency` clients at once, requests per second;
* the server's own split, from its `/metrics`: time in Prometheus fetches, and the rest of the
  look (judging, run store), per look.

Results go to benchmarks/results/serve.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import requests
import yaml

from benchmarks.prom import stop_process

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
EXAMPLE = REPO / "analyzer" / "examples" / "checkout.yaml"
SCENARIOS = {"bench": "healthy", "bench-low": "low-traffic"}  # analysis name -> scenario


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not become ready:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def _process(command: list[str], log: Path, ready_url: str, what: str) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait(ready_url, process, log, what)
        yield
    finally:
        stop_process(process)


@contextlib.contextmanager
def prometheus(root: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """A real Prometheus over the tests' scenarios; yields its URL and the scenarios used."""
    sys.path.insert(0, str(REPO))
    from tests.promdata import default_scenarios, generate, write_openmetrics_file

    every = default_scenarios(datetime.now(UTC))
    scenarios = {analysis: every[name] for analysis, name in SCENARIOS.items()}
    openmetrics = root / "scenarios.om"
    write_openmetrics_file([generate(s) for s in scenarios.values()], openmetrics)
    tsdb = root / "tsdb"
    promtool = shutil.which("promtool")
    binary = shutil.which("prometheus")
    if not promtool or not binary:
        raise SystemExit("prometheus and promtool are needed (Debian package `prometheus`)")
    subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(tsdb)],
        check=True,
        capture_output=True,
    )
    (root / "prometheus.yml").write_text("scrape_configs: []\n")
    url = f"http://127.0.0.1:{_free_port()}"
    command = [
        binary,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={tsdb}",
        "--storage.tsdb.retention.time=100y",
        f"--web.listen-address={url.removeprefix('http://')}",
    ]
    with _process(command, root / "prometheus.log", f"{url}/-/ready", "prometheus"):
        yield url, scenarios


def _analysis(name: str, scenario: Any) -> dict[str, Any]:
    analysis = yaml.safe_load(EXAMPLE.read_text())
    analysis.update(name=name, canary=scenario.canary_matchers, baseline=scenario.baseline_matchers)
    return dict(analysis)


@contextlib.contextmanager
def verdict_serve(root: Path, prometheus_url: str, scenarios: dict[str, Any]) -> Iterator[str]:
    """`verdict serve` (the real command line) over one analysis per scenario."""
    folder = root / "analyses"
    folder.mkdir()
    for name, scenario in scenarios.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(_analysis(name, scenario)))
    url = f"http://127.0.0.1:{_free_port()}"
    command = [
        sys.executable, "-m", "analyzer.cli", "serve", "--config", str(folder),
        "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
        "--store", f"sqlite:///{root / 'runs.sqlite'}",
        "--prometheus-url", prometheus_url, "--log-level", "warning",
    ]  # fmt: skip
    with _process(command, root / "verdict.log", f"{url}/healthz", "verdict serve"):
        yield url


def recorded_queries(prometheus_url: str, scenario: Any) -> list[tuple[str, str]]:
    """The (PromQL, time) pairs of one look, as Verdict's Prometheus source sends them
    (recorded by a proxy in front of the Prometheus)."""
    from analyzer.analysis import fetch_observations
    from analyzer.spec import parse_analysis, plan_analysis
    from metrics.prometheus import PrometheusSource
    from metrics.source import Window
    from tests.local_http import recording_prometheus

    spec = parse_analysis(_analysis("bench", scenario))
    with recording_prometheus(prometheus_url) as recording:
        source = PrometheusSource(recording.url)
        now = datetime.now(UTC)
        fetch_observations(
            plan_analysis(spec), source, Window(start=scenario.start, end=now, step=now - scenario.start)
        )
        source.close()
    return [(params["query"], params["time"]) for params, _ in recording.sent]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _request(run: int, start: str, analysis: str = "bench") -> dict[str, str]:
    return {
        "analysis": analysis,
        "namespace": "bench",
        "rollout": "checkout",
        "canaryHash": f"r{run:04d}",
        "stableHash": "stable0",
        "start": start,
    }


def _server_split(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    values: dict[str, float] = {}
    for name in (
        "verdict_look_duration_seconds_sum",
        "verdict_look_duration_seconds_count",
        "verdict_fetch_duration_seconds_sum",
        "verdict_judge_duration_seconds_sum",
    ):
        match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.MULTILINE)
        values[name] = float(match.group(1)) if match else 0.0
    return values


def measure(
    url: str,
    prometheus_url: str,
    queries: list[tuple[str, str]],
    runs: int,
    requests_per_phase: int,
    concurrency: int,
    start: str,
    analysis: str = "bench",
) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    with httpx.Client(base_url=url, timeout=30) as client:
        for run in range(runs):  # start every run (its first look)
            client.post("/api/v1/verdict", json=_request(run, start, analysis)).raise_for_status()
        before = _server_split(url)
        latencies: list[float] = []
        raw: list[float] = []
        verdicts: dict[str, int] = {}
        session = requests.Session()
        for i in range(requests_per_phase):
            began = time.perf_counter()
            answer = client.post("/api/v1/verdict", json=_request(i % runs, start, analysis))
            latencies.append(time.perf_counter() - began)
            answer.raise_for_status()
            verdict = answer.json()["result"]["verdict"]
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
            began = time.perf_counter()
            for promql, at in queries:
                reply = session.get(
                    f"{prometheus_url}/api/v1/query", params={"query": promql, "time": at}
                )
                reply.raise_for_status()
                reply.json()
            raw.append(time.perf_counter() - began)
        session.close()
        after = _server_split(url)
    looks = (
        after["verdict_look_duration_seconds_count"] - before["verdict_look_duration_seconds_count"]
    )
    look_seconds = (
        after["verdict_look_duration_seconds_sum"] - before["verdict_look_duration_seconds_sum"]
    )
    fetch_seconds = (  # wall time of a look's fetches (they run concurrently)
        after["verdict_fetch_duration_seconds_sum"] - before["verdict_fetch_duration_seconds_sum"]
    )
    judge_seconds = (
        after["verdict_judge_duration_seconds_sum"] - before["verdict_judge_duration_seconds_sum"]
    )
    throughput = _throughput(url, runs, requests_per_phase, concurrency, start, analysis)
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    raw50, raw99 = _percentile(raw, 0.5), _percentile(raw, 0.99)
    return {
        "analysis": analysis,
        "activeRuns": runs,
        # other work on the machine skews absolute times (the ratio's raw side is interleaved)
        "loadAverage1m": {"before": load_before, "after": os.getloadavg()[0]},
        "requests": requests_per_phase,
        "verdicts": verdicts,
        "latencyMs": {
            "p50": p50 * 1000,
            "p99": p99 * 1000,
            "mean": statistics.fmean(latencies) * 1000,
        },
        "rawPromqlMs": {
            "p50": raw50 * 1000,
            "p99": raw99 * 1000,
            "mean": statistics.fmean(raw) * 1000,
        },
        "ratio": {"p50": p50 / raw50, "p99": p99 / raw99},
        # answer time less the engine's judging: what the service adds on top of Prometheus
        "ratioWithoutJudge": {
            "mean": (statistics.fmean(latencies) - judge_seconds / looks) / statistics.fmean(raw)
        },
        "serverPerLookMs": {
            "look": look_seconds / looks * 1000,
            "prometheusFetches": fetch_seconds / looks * 1000,
            "judge": judge_seconds / looks * 1000,
            "runStoreAndRest": (look_seconds - fetch_seconds - judge_seconds) / looks * 1000,
        },
        "throughput": throughput,
    }


def _throughput(
    url: str, runs: int, total: int, concurrency: int, start: str, analysis: str
) -> dict[str, Any]:
    counter = iter(range(total))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                began = time.perf_counter()
                answer = client.post("/api/v1/verdict", json=_request(i % runs, start, analysis))
                elapsed = time.perf_counter() - began
                with lock:
                    latencies.append(elapsed)
                    if answer.status_code != 200:
                        failures.append(answer.text[:200])

    began = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "requestsPerSecond": total / wall,
        "p50Ms": _percentile(latencies, 0.5) * 1000,
        "p99Ms": _percentile(latencies, 0.99) * 1000,
        "errors": len(failures),
    }


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The aims: answer time under 1.3 x raw PromQL time, and no growth with the number of runs.

    Growth is shown three ways: the answer's p50 (sensitive to other load on the machine), the
    ratio (its raw side is measured interleaved, so shared load cancels out), and the server's
    per-look time outside Prometheus and judging (run store, locks, HTTP app: the only part that
    could depend on the number of runs).
    """
    if not rows:
        return {}

    def growth(values: list[float]) -> float:
        return values[-1] / values[0]

    return {
        "ratioP50Under1.3": all(r["ratio"]["p50"] < 1.3 for r in rows),
        "ratioWithoutJudgeUnder1.3": all(r["ratioWithoutJudge"]["mean"] < 1.3 for r in rows),
        "growthFromFewestToMostRuns": {
            "answerP50": growth([r["latencyMs"]["p50"] for r in rows]),
            "ratioP50": growth([r["ratio"]["p50"] for r in rows]),
            "storeAndApp": growth([r["serverPerLookMs"]["runStoreAndRest"] for r in rows]),
        },
    }


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = (
        f"{'analysis':<10} {'runs':>4} {'verdicts':<18} {'p50':>7} {'p99':>7} {'raw p50':>7} "
        f"{'raw p99':>7} {'ratio':>5} {'-judge':>6} {'fetch':>6} {'judge':>6} {'rest':>5} "
        f"{'req/s (clients)':>15}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        s, t = r["serverPerLookMs"], r["throughput"]
        verdicts = ",".join(f"{k} {v}" for k, v in sorted(r["verdicts"].items()))
        lines.append(
            f"{r['analysis']:<10} {r['activeRuns']:>4} {verdicts:<18} "
            f"{r['latencyMs']['p50']:>5.1f}ms {r['latencyMs']['p99']:>5.1f}ms "
            f"{r['rawPromqlMs']['p50']:>5.1f}ms {r['rawPromqlMs']['p99']:>5.1f}ms "
            f"{r['ratio']['p50']:>5.2f} {r['ratioWithoutJudge']['mean']:>6.2f} "
            f"{s['prometheusFetches']:>4.1f}ms {s['judge']:>4.1f}ms {s['runStoreAndRest']:>3.1f}ms "
            f"{t['requestsPerSecond']:>10.1f} ({t['concurrency']})"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__)
    parser.add_argument("--runs", default="1,50,500", help="active runs per phase (comma list)")
    parser.add_argument("--requests", type=int, default=300, help="measured calls per phase")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="clients in the throughput phase"
    )
    parser.add_argument(
        "--inconclusive", type=int, default=30,
        help="calls on the low-traffic scenario (inconclusive looks; 0: skip)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.runs.split(",") if x.strip()]
    began = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="verdict-bench-serve-"))
    rows = []
    extra: dict[str, Any] | None = None
    try:
        with prometheus(root) as (prometheus_url, scenarios):
            healthy = scenarios["bench"]
            queries = recorded_queries(prometheus_url, healthy)
            start = healthy.start.isoformat().replace("+00:00", "Z")
            with verdict_serve(root, prometheus_url, scenarios) as url:
                for runs in counts:
                    print(f"{runs} active run(s): {args.requests} calls ...", flush=True)
                    rows.append(
                        measure(
                            url,
                            prometheus_url,
                            queries,
                            runs,
                            args.requests,
                            args.concurrency,
                            start,
                        )
                    )
                if args.inconclusive:
                    low = scenarios["bench-low"]
                    low_queries = recorded_queries(prometheus_url, low)
                    low_start = low.start.isoformat().replace("+00:00", "Z")
                    print(f"inconclusive looks: {args.inconclusive} calls ...", flush=True)
                    extra = measure(
                        url, prometheus_url, low_queries, 1, args.inconclusive, 2, low_start,
                        analysis="bench-low",
                    )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {
        "benchmark": "serve",
        "command": "python -m benchmarks.serve" + (" " + " ".join(argv) if argv else ""),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "setup": {
            "scenarios": SCENARIOS,
            "analysis": "analyzer/examples/checkout.yaml (3 metrics), one copy per scenario",
            "queriesPerLook": len(queries),
            "store": "SQLite (default)",
            "lookWindow": "the scenario's start to now (the whole 40-minute scenario)",
        },
        "rows": rows,
        "inconclusiveLooks": extra,
        "targets": targets(rows),
        "wallSeconds": round(time.perf_counter() - began, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for line in table(rows + ([extra] if extra else [])):
        print(line)
    print(
        f"\nratio = Verdict's answer p50 / raw PromQL p50 for the same {len(queries)} queries; "
        "-judge = the same (means) less the engine's judging;\nfetch, judge, rest = per look "
        "inside the server (rest: run store, locks, HTTP app). "
        f"Wall time {result['wallSeconds']} s; {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

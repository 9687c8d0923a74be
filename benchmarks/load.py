"""`python -m benchmarks.load`: many active runs polled by simulated Argo clients.

What runs, all on loopback (the parts of `benchmarks.serve`):

* a real Prometheus over the test scenarios (40 minutes of Istio traffic), imported with promtool;
* `verdict serve` as its own process (the real command line, SQLite run store);
* `--runs` simulated Argo Rollouts AnalysisRuns: each polls `POST /api/v1/verdict` for its own
  run (one canary hash each), waits for the answer (Argo's 10 s timeout), sleeps `--interval`
  seconds, and polls again, for `--minutes`; their first polls are spread over one interval.
  Every call is a full look on the data since the run's start;
* an answer later than 10 s counts as an error (Argo's timeout covers the whole call), whatever
  its status; times are measured by the clients, so on a saturated machine they include the
  load generator's own queueing;
* in the same run, a raw-PromQL sampler: every 2 s, the 10 instant queries of one look (recorded
  from Verdict's own Prometheus source) sent straight to Prometheus one after the other: the
  raw PromQL time of a look under the same load.

Reported: answers per second, p50/p99 answer time and their ratio to the raw PromQL time
measured in the same run, errors by kind (HTTP status / error code / client timeout), the
server's memory (RSS) at the start and the end and its growth, and Prometheus' query rate.
The full configuration (`--runs 1000 --interval 10 --minutes 10`) is the default; `--quick`
runs 50 runs for 1 minute. Results go to benchmarks/results/load[-quick].json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import requests
import yaml

from benchmarks.prom import stop_process
from benchmarks.serve import _analysis, _free_port, _percentile, _wait, prometheus, recorded_queries

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
ARGO_TIMEOUT = 10.0


@contextlib.contextmanager
def _verdict_serve(
    root: Path, prometheus_url: str, scenarios: dict[str, Any]
) -> Iterator[tuple[str, int]]:
    """`verdict serve` over one analysis per scenario; yields its URL and process id."""
    folder = root / "analyses"
    folder.mkdir()
    for name, scenario in scenarios.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(_analysis(name, scenario)))
    url = f"http://127.0.0.1:{_free_port()}"
    log = root / "verdict.log"
    command = [
        sys.executable, "-m", "analyzer.cli", "serve", "--config", str(folder),
        "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1],
        "--store", f"sqlite:///{root / 'runs.sqlite'}",
        "--prometheus-url", prometheus_url, "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        _wait(f"{url}/healthz", process, log, "verdict serve")
        yield url, process.pid
    finally:
        stop_process(process)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _prometheus_queries(prometheus_url: str) -> float:
    """Instant queries Prometheus has answered so far (its own counter)."""
    text = requests.get(f"{prometheus_url}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class _Raw:
    """The raw-PromQL sampler (a thread): one look's queries, straight to Prometheus."""

    def __init__(self, prometheus_url: str, queries: list[tuple[str, str]]) -> None:
        self.prometheus_url = prometheus_url
        self.queries = queries
        self.seconds: list[float] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Raw:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.wait(2.0):
            began = time.perf_counter()
            for promql, at in self.queries:
                reply = session.get(
                    f"{self.prometheus_url}/api/v1/query", params={"query": promql, "time": at}
                )
                reply.raise_for_status()
                reply.json()
            self.seconds.append(time.perf_counter() - began)
            self.sent += len(self.queries)
        session.close()


async def _argo_runs(
    url: str, runs: int, interval: float, seconds: float, start: str
) -> tuple[list[float], Counter[str], Counter[str]]:
    """Every run polls, waits for its answer, sleeps `interval`; for `seconds` in all."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    verdicts: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=runs, max_keepalive_connections=runs)
    async with httpx.AsyncClient(base_url=url, timeout=ARGO_TIMEOUT, limits=limits) as client:
        began = time.monotonic()
        end = began + seconds

        async def one(run: int) -> None:
            await asyncio.sleep(interval * run / runs)
            request = {
                "analysis": "bench", "namespace": "load", "rollout": "checkout",
                "canaryHash": f"r{run:05d}", "stableHash": "stable0", "start": start,
            }  # fmt: skip
            while time.monotonic() < end:
                sent = time.perf_counter()
                try:
                    answer = await client.post("/api/v1/verdict", json=request)
                except httpx.TimeoutException:
                    outcomes["client timeout (10 s)"] += 1
                except httpx.HTTPError as error:
                    outcomes[f"connection error ({type(error).__name__})"] += 1
                else:
                    took = time.perf_counter() - sent
                    latencies.append(took)
                    if took > ARGO_TIMEOUT:  # Argo's client timeout is on the whole call
                        outcomes["answered after 10 s (Argo: Error)"] += 1
                    elif answer.status_code == 200:
                        outcomes["200"] += 1
                        verdicts[answer.json()["result"]["verdict"]] += 1
                    else:
                        code = answer.json().get("error", {}).get("code", "?")
                        outcomes[f"{answer.status_code} {code}"] += 1
                await asyncio.sleep(interval)

        await asyncio.gather(*(one(run) for run in range(runs)))
    return latencies, outcomes, verdicts


def run_load(runs: int, interval: float, minutes: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="verdict-bench-load-"))
    load_before = os.getloadavg()[0]
    try:
        with prometheus(root) as (prometheus_url, scenarios):
            healthy = scenarios["bench"]
            queries = recorded_queries(prometheus_url, healthy)
            start = healthy.start.isoformat().replace("+00:00", "Z")
            with _verdict_serve(root, prometheus_url, scenarios) as (url, pid):
                httpx.post(  # warm up: imports, first connections
                    f"{url}/api/v1/verdict",
                    json={"analysis": "bench", "namespace": "load", "rollout": "warm",
                          "canaryHash": "warm0", "stableHash": "s", "start": start},
                    timeout=30,
                ).raise_for_status()  # fmt: skip
                rss_start = _rss_mb(pid)
                rss_samples = [rss_start]
                queries_before = _prometheus_queries(prometheus_url)
                began = time.monotonic()
                stop = threading.Event()

                def sample() -> None:
                    while not stop.wait(5.0):
                        rss_samples.append(_rss_mb(pid))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                with _Raw(prometheus_url, queries) as raw:
                    latencies, outcomes, verdicts = asyncio.run(
                        _argo_runs(url, runs, interval, minutes * 60, start)
                    )
                stop.set()
                sampler.join(timeout=10)
                wall = time.monotonic() - began
                rss_end = _rss_mb(pid)
                verdict_queries = _prometheus_queries(prometheus_url) - queries_before - raw.sent
    finally:
        shutil.rmtree(root, ignore_errors=True)
    answered = sum(outcomes.values())
    errors = answered - outcomes["200"]
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    raw50, raw99 = _percentile(raw.seconds, 0.5), _percentile(raw.seconds, 0.99)
    return {
        "benchmark": "load",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "loadAverage1m": {"before": load_before, "after": os.getloadavg()[0]},
        "setup": {
            "runs": runs,
            "intervalSeconds": interval,
            "minutes": minutes,
            "analysis": "analyzer/examples/checkout.yaml (3 metrics) on the healthy scenario",
            "queriesPerLook": len(queries),
            "store": "SQLite (default)",
            "clientTimeoutSeconds": ARGO_TIMEOUT,
        },
        "wallSeconds": round(wall, 1),
        "calls": answered,
        "callsPerSecond": answered / wall,
        "outcomes": dict(outcomes.most_common()),
        "errors": errors,
        "errorRate": errors / answered if answered else None,
        "verdicts": dict(verdicts),
        "latencyMs": {
            "p50": p50 * 1000,
            "p99": p99 * 1000,
            "max": max(latencies) * 1000 if latencies else None,
            "mean": statistics.fmean(latencies) * 1000 if latencies else None,
        },
        "rawPromqlMs": {"p50": raw50 * 1000, "p99": raw99 * 1000, "samples": len(raw.seconds)},
        "ratio": {"p50": p50 / raw50, "p99": p99 / raw99},
        "memoryMb": {
            "start": rss_start,
            "end": rss_end,
            "max": max([*rss_samples, rss_end]),
            "growth": rss_end - rss_start,
        },
        "prometheusQueriesPerSecond": verdict_queries / wall,
    }


def markdown(result: dict[str, Any]) -> str:
    s, lat, raw = result["setup"], result["latencyMs"], result["rawPromqlMs"]
    mem = result["memoryMb"]
    lines = [
        f"# Load: {s['runs']} active runs polled every {s['intervalSeconds']:g} s for "
        f"{s['minutes']:g} min",
        "",
        f"`{result['command']}` on {result['date']} ({result['machine']['cpus']} CPUs, load average "
        f"{result['loadAverage1m']['before']:.1f} before, {result['loadAverage1m']['after']:.1f} after: "
        "the machine is shared, absolute times move with it; the ratio's raw side is measured in the "
        "same run).",
        "",
        "| figure | value |",
        "|---|---|",
        f"| calls answered (all kinds) | {result['calls']} ({result['callsPerSecond']:.1f} / s) |",
        f"| answer time p50 / p99 / max | {lat['p50']:.0f} / {lat['p99']:.0f} / {lat['max']:.0f} ms |",
        f"| raw PromQL time of a look p50 / p99 (same run) | {raw['p50']:.0f} / {raw['p99']:.0f} ms |",
        f"| ratio p50 / p99 | {result['ratio']['p50']:.2f} / {result['ratio']['p99']:.2f} |",
        f"| errors | {result['errors']} ({(result['errorRate'] or 0) * 100:.2f} %) |",
        f"| outcomes | {', '.join(f'{k}: {v}' for k, v in result['outcomes'].items())} |",
        f"| verdicts | {', '.join(f'{k}: {v}' for k, v in result['verdicts'].items())} |",
        f"| server memory (RSS) start / end / max | {mem['start']:.0f} / {mem['end']:.0f} / "
        f"{mem['max']:.0f} MB (growth {mem['growth']:+.0f} MB) |",
        f"| Prometheus queries from Verdict | {result['prometheusQueriesPerSecond']:.1f} / s |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__)
    parser.add_argument(
        "--runs", type=int, default=1000, help="active runs (simulated Argo clients)"
    )
    parser.add_argument(
        "--interval", type=float, default=10.0, help="seconds between polls of a run"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the runs poll")
    parser.add_argument("--quick", action="store_true", help="50 runs for 1 minute")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.minutes = 50, 1.0
    full = (args.runs, args.interval, args.minutes) == (1000, 10.0, 10.0)
    name = "load" if full else "load-quick" if args.quick else f"load-{args.runs}x{args.minutes:g}m"
    print(f"{args.runs} runs every {args.interval:g} s for {args.minutes:g} min ...", flush=True)
    result = run_load(args.runs, args.interval, args.minutes)
    result["command"] = (
        "python -m benchmarks.load" + (" " + " ".join(argv or sys.argv[1:])).rstrip()
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / f"{name}.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    print(f"wrote {args.out}/{name}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

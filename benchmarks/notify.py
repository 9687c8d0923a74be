"""`python -m benchmarks.notify`: what Grafana costs a run when it is fine, failing or hanging.

The same simulated canary (`verdict demo`, healthy scenario: about 20 looks over three steps, the real
engine) runs with its events recorded in a SQLite run store and told to:

* nobody (the baseline of this run),
* a Grafana that answers at once (a local HTTP server answering the annotations API),
* a Grafana answering 500 to everything,
* a Grafana that accepts connections and never answers.

Each case runs `--repeat` times, interleaved; the figures are the best (minimum) and the median
wall time of a run, and their ratios to the baseline measured in the same invocation (the best
time is the one a busy machine disturbs least). Notifications go out from worker threads
(`analyzer.notify.BackgroundNotifier`), so every ratio should stay near 1. Results go to
benchmarks/results/notify.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog

from analyzer.demo import run_demo
from analyzer.notify import (
    BackgroundNotifier,
    GrafanaAnnotations,
    GrafanaSettings,
    NopNotifier,
    Notifier,
    RetryPolicy,
    Target,
)
from analyzer.runs.store import open_store

RESULTS = Path(__file__).resolve().parent / "results"


class _Grafana(BaseHTTPRequestHandler):
    status = 200

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"message":"Annotation added","id":1}'
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = _answer
    do_PATCH = _answer


class _Failing(_Grafana):
    status = 500


@contextmanager
def _http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def _hanging() -> Iterator[str]:
    """Accepts connections and reads nothing, answers nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


def _grafana(url: str) -> BackgroundNotifier:
    settings = GrafanaSettings(url=url, token="benchmark", timeout=5.0)
    return BackgroundNotifier([Target("grafana", GrafanaAnnotations(settings))], RetryPolicy())


def _one_run(folder: Path, index: int, notifier: Notifier) -> tuple[float, int]:
    store = open_store(f"sqlite:///{folder / f'runs-{index}.sqlite'}")
    store.ping()  # the table exists before the clock starts
    began = time.perf_counter()
    run = run_demo("healthy", 1, store=store, notifier=notifier)
    elapsed = time.perf_counter() - began
    assert run.result.decision == "promoted"
    store.close()
    return elapsed, len(run.result.looks)


def run_notify(repeat: int) -> dict[str, Any]:
    cases: dict[str, Callable[[], Any]] = {
        "no notifier": lambda: _nop(),
        "Grafana answering": lambda: _http(_Grafana),
        "Grafana answering 500": lambda: _http(_Failing),
        "Grafana hanging": _hanging,
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    runs = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, looks = _one_run(folder, -1, NopNotifier())  # warm-up: imports, caches
        for _ in range(repeat):
            for name, server in cases.items():  # interleaved: drifts hit every case alike
                with server() as url:
                    notifier = NopNotifier() if url is None else _grafana(url)
                    runs += 1  # a fresh store file per run
                    times[name].append(_one_run(folder, runs, notifier)[0])
                    notifier.close(timeout=0)
    best = min(times["no notifier"])
    median = statistics.median(times["no notifier"])
    return {
        "repeat": repeat,
        "looks_per_run": looks,
        "cases": {
            name: {
                "best_seconds": min(values),
                "median_seconds": statistics.median(values),
                "best_ratio": min(values) / best,
                "median_ratio": statistics.median(values) / median,
                "seconds": values,
            }
            for name, values in times.items()
        },
    }


@contextmanager
def _nop() -> Iterator[None]:
    yield None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notify", description=__doc__)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    result = run_notify(args.repeat)
    result["command"] = "python -m benchmarks.notify" + (
        f" --repeat {args.repeat}" if args.repeat != 7 else ""
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "notify.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"{'case':<24} {'best (s)':>9} {'ratio':>6} {'median (s)':>11} {'ratio':>6}")
    for name, c in result["cases"].items():
        print(
            f"{name:<24} {c['best_seconds']:>9.3f} {c['best_ratio']:>6.2f} "
            f"{c['median_seconds']:>11.3f} {c['median_ratio']:>6.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

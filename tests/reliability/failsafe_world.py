"""Fault injection at the boundaries of a standalone rollout, for the fail-safe schedules.

Everything a rollout touches is real but for the clock: the official Kubernetes client against
the Kubernetes API test server, a real Prometheus (through `FaultProxy`), a real SQLite run store.
The faults are injected where those parts meet Verdict, and everything that happens is written
into one `Timeline`, in the order it happened (the rollout runs in one thread and every call it
makes returns before the next one starts), so the invariants are checked on the order of events:

* `ScheduledKube`: the API test server, with faults scheduled by request number ("the 3rd PATCH
  of the VirtualService and the 4 after it get 500"), each request written to the timeline with
  its answer and whether the server carried it out;
* `FlakyStore`: a `RunStore` that raises `StoreUnavailable` at the scheduled calls (numbered over
  all its calls) and otherwise hands them to a real store; every update written to the timeline
  with the run's looks, verdict and recorded progress;
* `QuickFaultProxy`: `FaultProxy` (Prometheus faults), answering without Nagle's delay;
* `HookedClock`: the simulated clock, calling hooks at given sleeps (Prometheus going down for
  some looks, a Deployment controller moving one replica);
* `backfilled_prometheus`: a real Prometheus over generated scenarios (`tests.promdata`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import requests

from analyzer.runs.journal import ActionRecord
from analyzer.runs.model import Run, RunKey
from analyzer.runs.store import EventsOf, RunStore, StoreUnavailable
from strategies.simulated import SimulatedClock
from tests.helpers import stop_process
from tests.kube_server import ApiProblem, KubeServer
from tests.promdata import Scenario, generate, write_openmetrics_file
from tests.reliability.fault_proxy import FaultProxy

# --- the timeline -------------------------------------------------------------------------


@dataclass(frozen=True)
class KubeCall:
    """One request the API server answered (or failed on purpose)."""

    method: str
    path: str
    body: Any
    status: int
    injected: str | None
    """The scheduled fault's kind when the answer was one, else None."""
    applied: bool
    """Whether the server carried the request out (a 200, or a scheduled fault injected after
    it; a lost answer set up with `fail_next` directly shows as not carried out)."""


@dataclass(frozen=True)
class StoreCall:
    """One call of the run store: `ok` False when it raised `StoreUnavailable`."""

    method: str
    ok: bool
    looks: int | None = None
    verdict: str | None = None
    progress: dict[str, Any] | None = None


@dataclass(frozen=True)
class Sleep:
    seconds: float
    at: datetime


Entry = KubeCall | StoreCall | Sleep


@dataclass
class Timeline:
    entries: list[Entry] = field(default_factory=list)

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)

    def clear(self) -> None:
        self.entries.clear()


# --- the Kubernetes API, with faults by request number -------------------------------------


@dataclass
class ScheduledFault:
    """Requests number `at` .. `at + times - 1` (1-based, counted over the requests that match
    `method` and the regular expression `path`) get `status`; with `after`, each is carried out
    first (the answer is lost on the way back)."""

    kind: str
    method: str
    path: str
    status: int
    at: int
    times: int
    after: bool = False
    seen: int = 0
    injected: int = 0
    _pattern: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._pattern = re.compile(self.path)

    def matches(self, method: str, path: str) -> bool:
        return method == self.method and self._pattern.search(path) is not None


@dataclass
class ScheduledKube(KubeServer):
    """`KubeServer` with faults scheduled by request number, every answer in `timeline`."""

    timeline: Timeline = field(default_factory=Timeline)
    schedule: list[ScheduledFault] = field(default_factory=list)

    def start(self) -> ScheduledKube:
        super().start()  # its answers with TCP_NODELAY, as every test server's
        return self

    def reset(self) -> None:
        """An empty world for the next schedule (objects, history, faults; requests still held
        by a stall are dropped unanswered)."""
        with self._lock:
            for stall in self._stalls:
                stall.release(apply=False)
            self._objects.clear()
            self._events.clear()
            self._faults.clear()
            self._stalls.clear()
            self._reactors.clear()
            self.requests.clear()
            self.rejected.clear()
            self.schedule = []
            self.timeline.clear()

    def injected(self) -> Counter[str]:
        return Counter({f.kind: f.injected for f in self.schedule if f.injected})

    def handle(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, Any]:
        chosen: ScheduledFault | None = None
        with self._lock:
            for fault in self.schedule:
                if not fault.matches(method, path):
                    continue
                fault.seen += 1
                if chosen is None and fault.at <= fault.seen < fault.at + fault.times:
                    chosen = fault
            if chosen is not None:
                chosen.injected += 1
                self.fail_next(
                    method, f"^{re.escape(path)}$", chosen.status,
                    message=f"injected {chosen.kind}", after=chosen.after,
                )  # fmt: skip
        try:
            status, document = super().handle(method, path, query, content_type, body)
        except ApiProblem as problem:
            applied = chosen is not None and chosen.after
            self.timeline.add(KubeCall(method, path, body, problem.status,
                                       chosen.kind if chosen else None, applied))  # fmt: skip
            raise
        self.timeline.add(KubeCall(method, path, body, status, None, method != "GET"))
        return status, document


# --- the run store, failing at scheduled calls ------------------------------------------------


class FlakyStore:
    """A `RunStore` raising `StoreUnavailable` at the scheduled calls (1-based, over all calls
    but `description` and `close`), as a database that is down then would; the other calls go
    to `inner`."""

    def __init__(
        self, inner: RunStore, timeline: Timeline, fail_at: set[int] | None = None
    ) -> None:
        self.inner = inner
        self.timeline = timeline
        self.fail_at = set(fail_at or ())
        self.calls = 0
        self.failed = 0

    def _call(self, method: str) -> None:
        self.calls += 1
        if self.calls in self.fail_at:
            self.failed += 1
            self.timeline.add(StoreCall(method, ok=False))
            raise StoreUnavailable(f"injected: the run store is down ({method}, call {self.calls})")

    def _ran(self, method: str, run: Run | None = None) -> None:
        progress = ((run.answer or {}).get("rollout") if run is not None else None) or None
        self.timeline.add(StoreCall(
            method, ok=True,
            looks=run.looks if run is not None else None,
            verdict=run.verdict if run is not None else None,
            progress=dict(progress) if isinstance(progress, dict) else None,
        ))  # fmt: skip

    @property
    def description(self) -> str:
        return f"flaky {self.inner.description}"

    def start(self, run: Run) -> Run:
        self._call("start")
        stored = self.inner.start(run)
        self._ran("start", stored)
        return stored

    def get(self, run_id: str) -> Run | None:
        self._call("get")
        return self.inner.get(run_id)

    def find(self, key: RunKey) -> Run | None:
        self._call("find")
        return self.inner.find(key)

    def update(
        self, run_id: str, change: Callable[[Run], Run], *, events: EventsOf | None = None
    ) -> Run:
        self._call("update")
        run = self.inner.update(run_id, change, events=events)
        self._ran("update", run)
        return run

    def runs(self, *, limit: int = 100) -> list[Run]:
        self._call("runs")
        return self.inner.runs(limit=limit)

    def add_event(self, run_id: str, kind: str, body: dict[str, Any]) -> None:
        self._call("add_event")
        self.inner.add_event(run_id, kind, body)

    def events(self, run_id: str) -> list[dict[str, Any]]:
        self._call("events")
        return self.inner.events(run_id)

    def count(self) -> int:
        self._call("count")
        return self.inner.count()

    def expire(self, before: datetime) -> int:
        self._call("expire")
        return self.inner.expire(before)

    def ping(self) -> None:
        self._call("ping")
        self.inner.ping()

    def record_action(self, action: ActionRecord) -> tuple[ActionRecord, bool]:
        self._call("record_action")
        return self.inner.record_action(action)

    def finish_action(self, action: ActionRecord) -> None:
        self._call("finish_action")
        self.inner.finish_action(action)

    def pending_actions(self) -> list[ActionRecord]:
        self._call("pending_actions")
        return self.inner.pending_actions()

    def close(self) -> None:
        self.inner.close()


# --- Prometheus faults ---------------------------------------------------------------------------


class QuickFaultProxy(FaultProxy):
    """`FaultProxy` (whose answers, as every test server's, go out with TCP_NODELAY: a look's
    queries through it take milliseconds, not 40 ms each)."""

    def start(self) -> QuickFaultProxy:
        super().start()
        return self


# --- the clock ----------------------------------------------------------------------------------


class HookedClock(SimulatedClock):
    """The simulated clock (a sleep advances time at once); `hooks[n]` runs at the n-th sleep
    (1-based) and `every` at each, before the time moves."""

    def __init__(self, start: datetime, timeline: Timeline) -> None:
        super().__init__(start)
        self.timeline = timeline
        self.sleeps = 0
        self.hooks: dict[int, Callable[[], None]] = {}
        self.every: list[Callable[[int], None]] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        hook = self.hooks.get(self.sleeps)
        if hook is not None:
            hook()
        for each in self.every:
            each(self.sleeps)
        super().sleep(seconds)
        self.timeline.add(Sleep(seconds, self.now()))


# --- a real Prometheus over generated scenarios ------------------------------------------------


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"`{name}` is not on PATH (the Debian package `prometheus`; .ci/run)")
    return path


@contextmanager
def backfilled_prometheus(root: Path, scenarios: list[Scenario], port: int) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1:`port` holding the scenarios' data (backfilled with
    `promtool tsdb create-blocks-from openmetrics`); yields its URL."""
    openmetrics = root / "scenarios.om"
    write_openmetrics_file([generate(s) for s in scenarios], openmetrics)
    data_dir = root / "tsdb"
    created = subprocess.run(
        [_binary("promtool"), "tsdb", "create-blocks-from", "openmetrics", str(openmetrics),
         str(data_dir)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if created.returncode != 0:
        raise RuntimeError(f"promtool failed: {created.stdout[-2000:]}\n{created.stderr[-2000:]}")
    config = root / "prometheus.yml"
    config.write_text("scrape_configs: []\n")
    url = f"http://127.0.0.1:{port}"
    log = root / "prometheus.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [_binary("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
             "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{port}"],
            cwd=root, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                if requests.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus not ready: {log.read_text(errors='replace')[-2000:]}"
                )
            time.sleep(0.1)
        yield url
    finally:
        stop_process(process)

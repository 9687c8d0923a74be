"""The run service: find or start a run, look once within the budget, record the look.

Every way in (the web provider, the controller) drives runs through `RunService.look`, with
every dependency handed in: the analyses, the run store, a factory of metric sources, a clock,
the settings and the telemetry. Errors are the named domain errors of `analyzer.runs.errors`;
each way in maps them (the HTTP app to status codes).

Concurrency. Looks of the same run are serialised: in this process by a lock per run (held
while Prometheus is asked and the look is written), across replicas by the store's row lock
around the read-change-write of the look. A look that arrives while another look of its run is
in flight waits for it (within its own budget), then makes its own look on fresher data; every
successful look is counted exactly once, and no look is lost. A look that cannot get the run
within its budget raises `RunBusy` and counts nothing.

Budget. A look never takes longer than `look_budget` seconds from the moment the call arrived
(the caller may hand in that deadline: time queued before the look starts counts): each query
gets a quarter of the budget (or the analysis file's `prometheus.timeout` if shorter) and at
most one retry; at most `prometheus_concurrency` looks ask Prometheus at once (the others wait
their turn within their own budget, so a slow Prometheus slows answers but never breaks the
budget); the whole fetch-and-judge runs against the deadline, and the deadline is checked again
inside the store's transaction: a look past its budget raises `OverBudget` and is not counted.

Readiness. `readiness` probes the store (a rolled-back write: a full or read-only store is
reported) and each Prometheus in threads of its own, so probes never queue behind looks.

Expiry. Runs are deleted `run_ttl` after their last look, by the first look after each
`cleanup_every`.

Events. Each look is recorded as an event of its run (`analyzer.runs.events`): the first opens
the run's region, and a verdict that becomes pass or fail is a decision (which closes the region
the first time). The store keeps them for reports; the analysis' notifier only queues them.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from analyzer.analysis import fetch_observations, judge_observations, look_fetches
from analyzer.clock import CLOCK_SKEW, Clock, parse_time
from analyzer.notify import (
    EventKind,
    NopNotifier,
    Notifier,
    RunEvent,
    RunInfo,
    event_json,
    figures_of,
)
from analyzer.plan import AnalysisPlan
from analyzer.runs.errors import (
    BadInput,
    OverBudget,
    QueryRejected,
    RunBusy,
    RunError,
    RunExpired,
    SourceDown,
    StoreDown,
    UnknownAnalysis,
)
from analyzer.runs.events import RunJournal, look_event
from analyzer.runs.model import Look, Run, RunKey, advance, look_window, new_run
from analyzer.runs.sources import SourceFactory
from analyzer.runs.store import RunNotFound, RunStore, StoreUnavailable
from analyzer.runs.telemetry import Telemetry
from analyzer.spec import AnalysisSpec, SpecError, plan_analysis
from analyzer.verdicts import AnalysisReport
from metrics.errors import BadData, QueryError, SourceUnavailable
from metrics.source import (
    Fetch,
    MetricQuery,
    MetricSource,
    ReadsAhead,
    ReadsTogether,
    Series,
    Version,
    Window,
)

_log = structlog.get_logger()
PLACEHOLDER_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
MAX_VALUE_LENGTH = 253
_PLACEHOLDER = re.compile(PLACEHOLDER_NAME)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class RunSettings:
    """How the run service behaves (the `verdict serve` flags)."""

    look_budget: float = 8.0
    """Seconds a look may spend on Prometheus and judging, well inside Argo's 10 s timeout."""
    run_ttl: timedelta = timedelta(hours=24)
    """A run is deleted this long after its last look (finished and abandoned runs alike)."""
    cleanup_every: timedelta = timedelta(minutes=1)
    """Expired runs are deleted by the first look after this much time since the last cleanup."""
    max_start_age: timedelta = timedelta(days=7)
    """A new run's `start` may not lie further back than this."""
    clock_skew: timedelta = CLOCK_SKEW
    """A `start` this far in the future is taken as now (clocks differ a little)."""
    prometheus_concurrency: int = 16
    """At most this many looks fetch from Prometheus at once; the others wait (in budget)."""


@dataclass(frozen=True)
class LookRequest:
    """A request for one look (a web-provider call, a controller tick): the run's identity, an
    optional start, placeholder values."""

    analysis: str
    namespace: str
    rollout: str
    canary_hash: str
    stable_hash: str
    start: str | None = None
    extras: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> RunKey:
        return RunKey(self.analysis, self.namespace, self.rollout, self.canary_hash)

    def params(self) -> dict[str, str]:
        """Placeholder values: the extras, then the four identity values (which win)."""
        return {
            **self.extras,
            "namespace": self.namespace,
            "rollout": self.rollout,
            "canaryHash": self.canary_hash,
            "stableHash": self.stable_hash,
        }


class _Budgeted:
    """A `MetricSource` that refuses to start a fetch after the deadline and times each fetch.
    (It does not pass on the inner source's `answers_quickly`: a look's metrics are fetched
    three at a time whatever the server's speed, each checked against the deadline; except
    when a batch read with other looks already holds every answer of the look: then nothing
    is asked, and the fetches run one after another in the look's thread.)"""

    def __init__(self, inner: MetricSource, deadline: float, telemetry: Telemetry) -> None:
        self._inner = inner
        self._deadline = deadline
        self._telemetry = telemetry
        self._in_memory = False

    def answers_quickly(self) -> bool:
        return self._in_memory

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        if time.monotonic() >= self._deadline:
            raise OverBudget("the look budget ran out before every metric was fetched")
        started = time.perf_counter()
        try:
            return self._inner.fetch(query, version, matchers, window)
        finally:
            self._telemetry.query_seconds.observe(time.perf_counter() - started)

    def check(self) -> None:
        self._inner.check()

    def read_ahead(self, fetches: Sequence[Fetch]) -> None:
        if isinstance(self._inner, ReadsAhead) and time.monotonic() < self._deadline:
            self._inner.read_ahead(fetches)

    def read_together(self, fetches: Sequence[Fetch]) -> None:
        if isinstance(self._inner, ReadsTogether) and time.monotonic() < self._deadline:
            self._inner.read_together(fetches)
            self._in_memory = self._inner.answered(fetches)

    def answered(self, fetches: Sequence[Fetch]) -> bool:
        return isinstance(self._inner, ReadsTogether) and self._inner.answered(fetches)


class _RunLocks:
    """One lock per run id, created on demand and dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, run_id: str, timeout: float) -> Iterator[bool]:
        with self._guard:
            lock, users = self._locks.get(run_id, (threading.Lock(), 0))
            self._locks[run_id] = (lock, users + 1)
        acquired = lock.acquire(timeout=max(timeout, 0.0))
        try:
            yield acquired
        finally:
            if acquired:
                lock.release()
            with self._guard:
                lock, users = self._locks[run_id]
                if users <= 1:
                    del self._locks[run_id]
                else:
                    self._locks[run_id] = (lock, users - 1)


class RunService:
    """Looks at runs (see the module docstring)."""

    def __init__(
        self,
        *,
        analyses: Mapping[str, AnalysisSpec],
        store: RunStore,
        sources: SourceFactory,
        clock: Clock,
        settings: RunSettings,
        telemetry: Telemetry,
        notifiers: Mapping[str, Notifier] | None = None,
        way: str = "web",
    ) -> None:
        """`notifiers`: per analysis name (none: nobody is told); `way`: how these runs are
        driven, as events name it (web, controller)."""
        if settings.look_budget <= 0:
            raise ValueError("the look budget must be positive")
        self.analyses = dict(analyses)
        self.plans = {name: plan_analysis(spec) for name, spec in self.analyses.items()}
        self.notifiers = dict(notifiers or {})
        self.way = way
        self.store = store
        self.sources = sources
        self.clock = clock
        self.settings = settings
        self.telemetry = telemetry
        writes = getattr(store, "writes", None)
        if isinstance(writes, int):  # a store that counts its write transactions
            telemetry.count_store_writes(lambda: int(getattr(store, "writes", 0)))
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, settings.prometheus_concurrency), thread_name_prefix="verdict-look"
        )
        self._probes = ThreadPoolExecutor(max_workers=4, thread_name_prefix="verdict-probe")
        self._probing: dict[str, Future[None]] = {}
        self._probing_lock = threading.Lock()
        self._locks = _RunLocks()
        self._cleanup_lock = threading.Lock()
        self._last_cleanup: datetime | None = None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._probes.shutdown(wait=False, cancel_futures=True)

    # --- the look ----------------------------------------------------------------------

    def look(self, request: LookRequest, *, deadline: float | None = None) -> Look:
        """One look for the request's run. Raises the errors of `analyzer.runs.errors`.

        `deadline` (`time.monotonic()` seconds): when the answer is due; by default the look
        budget from now. Give the call's arrival + budget so that queueing counts.
        """
        started = time.monotonic()
        if deadline is None:
            deadline = started + self.settings.look_budget
        try:
            if started >= deadline:
                raise OverBudget(
                    "the call waited the whole look budget "
                    f"({self.settings.look_budget:g} s) before its look could start"
                )
            result = self._look(request, deadline)
        except RunError as error:
            # unknown names share one label: a caller must not create metric series at will
            known = request.analysis if request.analysis in self.analyses else "(unknown)"
            self.telemetry.errors.labels(known, error.code).inc()
            raise
        verdict = result.run.verdict or "inconclusive"
        self.telemetry.looks.labels(request.analysis).inc()
        self.telemetry.verdicts.labels(request.analysis, verdict).inc()
        self.telemetry.look_seconds.observe(time.monotonic() - started)
        return result

    def _look(self, request: LookRequest, deadline: float) -> Look:
        spec = self.analyses.get(request.analysis)
        if spec is None:
            known = ", ".join(sorted(self.analyses)) or "none"
            raise UnknownAnalysis(
                f"no analysis named {request.analysis!r} (known: {known})", field="analysis"
            )
        params = self._params(spec, request)
        now = self.clock.now()
        started_at = self._start(request.start, now)
        try:
            run = self.store.start(
                new_run(
                    request.key,
                    stable_hash=request.stable_hash,
                    params=params,
                    started_at=started_at,
                    now=now,
                )
            )
        except StoreUnavailable as error:
            raise _store_error(error) from None
        with structlog.contextvars.bound_contextvars(
            run=run.id,
            analysis=spec.name,
            namespace=request.namespace,
            rollout=request.rollout,
            canary=request.canary_hash,
        ):
            if run.params != params:
                _log.warning(
                    "placeholder values differ from the run's first call; the run keeps its own",
                    kept=run.params,
                    given=params,
                )
            with self._locks.hold(run.id, deadline - time.monotonic()) as acquired:
                if not acquired:
                    raise RunBusy(
                        f"another look of run {run.id} took the whole look budget "
                        f"({self.settings.look_budget:g} s); ask again",
                    )
                result, told = self._locked_look(spec, run, deadline)
            self._tell(spec, told)
            _log.info(
                "look answered",
                look=result.run.looks,
                verdict=result.run.verdict,
                score=result.run.score,
                seconds=round(time.monotonic() - (deadline - self.settings.look_budget), 4),
            )
        self._cleanup(self.clock.now())
        return result

    def _locked_look(
        self, spec: AnalysisSpec, run: Run, deadline: float
    ) -> tuple[Look, list[RunEvent]]:
        """The look, and its events (stored with it, in one write; the notifier is told after)."""
        now = self.clock.now()
        report = self._report(spec, run, now, deadline)
        outcome: list[Look] = []
        told: list[RunEvent] = []

        def change(current: Run) -> Run:
            if time.monotonic() > deadline:  # checked under the row lock: not counted
                raise OverBudget(
                    f"the look took longer than its budget ({self.settings.look_budget:g} s); "
                    "it is not counted"
                )
            look = advance(self.plans[spec.name], current, report, now)
            outcome.append(look)
            return look.run

        def events(before: Run, after: Run) -> list[tuple[str, dict[str, Any]]]:
            try:
                found = self._events(spec, before, outcome[-1])
                bodies = [(str(event.kind), event_json(event)) for event in found]
            except Exception as error:  # events must never change or fail a look's answer
                _log.error("run events not recorded", error=f"{type(error).__name__}: {error}")
                return []
            told[:] = found
            return bodies

        try:
            self.store.update(run.id, change, events=events)
        except OverBudget as error:
            _log.warning("look budget exceeded", error=str(error))
            raise
        except StoreUnavailable as error:
            raise _store_error(error) from None
        except RunNotFound:
            raise RunExpired(f"run {run.id} expired during the look; ask again") from None
        return outcome[-1], told

    def decided(
        self,
        run_id: str,
        outcome: str,
        reason: str,
        *,
        step: int | None = None,
        way: str | None = None,
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """Record a decision a way in took on a run (the controller's promote, pause, abort)
        as an event of the run (`extra`: more of it, e.g. the health gate's findings); never
        raises (problems are logged)."""
        try:
            run = self.store.get(run_id)
            if run is None:
                return
            spec = self.analyses.get(run.key.analysis)
            notifier = self.notifiers.get(run.key.analysis, NopNotifier())
            info = RunInfo(
                run.id, run.key.analysis, run.key.namespace, run.key.rollout, way or self.way
            )
            metrics = (run.answer or {}).get("metrics", []) if spec is not None else []
            RunJournal(self.store, notifier).record(
                RunEvent(
                    EventKind.DECISION,
                    info,
                    self.clock.now(),
                    step=step,
                    look=run.looks,
                    verdict=run.verdict,
                    outcome=outcome,
                    reason=reason,
                    score=run.score,
                    figures=figures_of(metrics),
                    extra=dict(extra or {}),
                )
            )
        except Exception as error:  # events must never change or fail a decision
            _log.error("decision not recorded", error=f"{type(error).__name__}: {error}")

    def _events(self, spec: AnalysisSpec, before: Run, look: Look) -> list[RunEvent]:
        """The look's events (module docstring), from the run before it and the look."""
        run = look.run
        info = RunInfo(run.id, spec.name, run.key.namespace, run.key.rollout, self.way)
        found: list[RunEvent] = []
        if before.looks == 0:
            found.append(RunEvent(EventKind.STARTED, info, run.started_at))
        event = look_event(info, look.report, time=run.updated_at, look=run.looks)
        found.append(event)
        verdict = run.verdict
        if verdict in ("pass", "fail") and verdict != before.verdict:
            if before.verdict not in ("pass", "fail"):
                found.append(
                    RunEvent(
                        EventKind.ENDED,
                        info,
                        run.updated_at,
                        look=run.looks,
                        verdict=verdict,
                        started=run.started_at,
                    )
                )
            found.append(
                RunEvent(
                    EventKind.DECISION,
                    info,
                    run.updated_at,
                    look=run.looks,
                    verdict=verdict,
                    outcome=verdict,
                    reason=run.reason,
                    score=run.score,
                    figures=event.figures,
                )
            )
        return found

    def _tell(self, spec: AnalysisSpec, events: list[RunEvent]) -> None:
        """Hand a look's stored events to the analysis' notifier (it only queues; never fails
        the look: problems are logged)."""
        notifier = self.notifiers.get(spec.name)
        if notifier is None:
            return
        for event in events:
            try:
                notifier.post(event)
            except Exception as error:
                _log.error("run event not told", error=f"{type(error).__name__}: {error}")

    def _report(
        self, spec: AnalysisSpec, run: Run, now: datetime, deadline: float
    ) -> AnalysisReport | None:
        window = look_window(run, now, spec.interval)
        if window is None:
            return None
        try:
            source = _Budgeted(self.sources(spec), deadline, self.telemetry)
            context = contextvars.copy_context()
            future = self._executor.submit(
                context.run,
                _fetch_and_judge,
                self.plans[spec.name],
                source,
                window,
                run.params,
                self.telemetry,
            )
            remaining = deadline - time.monotonic()
            try:
                return future.result(timeout=max(remaining, 0.0))
            except TimeoutError:
                future.cancel()
                raise OverBudget(
                    f"Prometheus and the judge did not finish within the look budget "
                    f"({self.settings.look_budget:g} s)"
                ) from None
        except OverBudget as error:
            _log.warning("look budget exceeded", error=str(error))
            raise
        except SourceUnavailable as error:
            _log.warning("prometheus unavailable", error=str(error))
            raise SourceDown(str(error)) from None
        except BadData as error:
            _log.warning("unusable data from prometheus", error=str(error))
            raise SourceDown(str(error), code="prometheus_bad_data") from None
        except QueryError as error:
            _log.error("prometheus rejected a query", error=str(error))
            raise QueryRejected(f"the analysis' query was rejected: {error}") from None
        except SpecError as error:
            raise BadInput(str(error), code="missing_placeholder") from None

    # --- input -------------------------------------------------------------------------

    def _params(self, spec: AnalysisSpec, request: LookRequest) -> dict[str, str]:
        for name, value in request.extras.items():
            if not _PLACEHOLDER.match(name):
                raise BadInput(
                    f"{name[:80]!r}: extra fields are placeholder values; their names are "
                    "letters, digits and '_' (not starting with a digit)",
                    field=name[:80],
                )
            if len(value) > MAX_VALUE_LENGTH or _CONTROL.search(value):
                raise BadInput(
                    f"{name}: a placeholder value has at most {MAX_VALUE_LENGTH} characters "
                    "and no control characters",
                    field=name,
                )
        params = request.params()
        missing = sorted(spec.placeholders() - params.keys())
        if missing:
            raise BadInput(
                f"analysis {spec.name!r} needs a value for {', '.join(missing)} "
                "(placeholders in its canary/baseline matchers): add it to the request",
                code="missing_placeholder",
                field=missing[0],
            )
        return params

    def _start(self, value: str | None, now: datetime) -> datetime:
        if value is None:
            return now
        try:
            start = parse_time(value)
        except ValueError as error:
            raise BadInput(f"start: {error}", code="invalid_start", field="start") from None
        if start > now + self.settings.clock_skew:
            raise BadInput(
                "start: lies in the future; leave it out to start now",
                code="invalid_start",
                field="start",
            )
        if start < now - self.settings.max_start_age:
            days = self.settings.max_start_age.total_seconds() / 86400
            raise BadInput(
                f"start: lies more than {days:g} days back; a run judges one rollout step",
                code="invalid_start",
                field="start",
            )
        return min(start, now)

    def readiness(self, *, timeout: float = 0.8) -> dict[str, str]:
        """Each dependency's state: `ok` or what is wrong. Keys: `store`, `prometheus <url>`.

        Probes run in threads of their own (never behind looks); a probe still running from an
        earlier call is waited for instead of starting another one.
        """
        checks: dict[str, str] = {}
        probes: dict[str, Callable[[], None]] = {"store": self.store.ping}
        for spec in self.analyses.values():
            try:
                source = self.sources(spec)
            except SourceUnavailable as error:
                checks[f"prometheus for {spec.name}"] = str(error)
                continue
            probes.setdefault(f"prometheus {getattr(source, 'url', spec.name)}", source.check)
        pending = {name: self._probe(name, probe) for name, probe in probes.items()}
        deadline = time.monotonic() + timeout
        for name, future in pending.items():
            try:
                future.result(timeout=max(deadline - time.monotonic(), 0.0))
                checks[name] = "ok"
            except TimeoutError:
                checks[name] = f"did not answer within {timeout:g} s"
            except (SourceUnavailable, StoreUnavailable) as error:
                checks[name] = str(error)
        return dict(sorted(checks.items(), key=lambda item: item[0] != "store"))

    def _probe(self, name: str, probe: Callable[[], None]) -> Future[None]:
        with self._probing_lock:
            running = self._probing.get(name)
            if running is not None and not running.done():
                return running
            future = self._probes.submit(contextvars.copy_context().run, probe)
            self._probing[name] = future
            return future

    # --- upkeep ------------------------------------------------------------------------

    def _cleanup(self, now: datetime) -> None:
        """Delete expired runs, at most once per `cleanup_every` (piggybacks on looks)."""
        with self._cleanup_lock:
            last = self._last_cleanup
            if last is not None and abs(now - last) < self.settings.cleanup_every:
                return
            self._last_cleanup = now
        try:
            removed = self.store.expire(now - self.settings.run_ttl)
        except StoreUnavailable as error:
            _log.warning("expired runs not cleaned up", error=str(error))
            return
        if removed:
            _log.info("expired runs deleted", runs=removed, ttl=str(self.settings.run_ttl))


def _fetch_and_judge(
    plan: AnalysisPlan,
    source: MetricSource,
    window: Window,
    params: dict[str, str],
    telemetry: Telemetry,
) -> AnalysisReport:
    """Runs in a worker thread, inside a copy of the call's logging context (run id bound)."""
    began = time.perf_counter()
    if isinstance(source, ReadsTogether):  # read with the looks of other runs, when any
        source.read_together(look_fetches(plan, window, params))
    observations = fetch_observations(plan, source, window, params)
    fetched = time.perf_counter()
    report = judge_observations(plan, observations, looks=[window.intervals], params=params)
    judged = time.perf_counter()
    telemetry.fetch_seconds.observe(fetched - began)
    telemetry.judge_seconds.observe(judged - fetched)
    _log.debug(
        "look judged",
        window_seconds=window.step.total_seconds(),
        fetch_seconds=round(fetched - began, 4),
        judge_seconds=round(judged - fetched, 4),
    )
    return report


def _store_error(error: StoreUnavailable) -> StoreDown:
    _log.error("run store unavailable", error=str(error))
    return StoreDown(str(error))

"""The fail-safe rules of the strategies that move traffic, over randomized fault schedules.

Each schedule runs one rollout in-process: the real strategy (canary, blue/green, rolling) over
the official Kubernetes client against the Kubernetes API test server, a real Prometheus
backfilled once per module with a healthy and a failing canary over a fixed past window (the
simulated clock starts inside it, so every look reads real data and every wait costs nothing),
and a real SQLite run store. Each schedule draws (from a fixed seed) the scenario and its faults:

* API answers: 500s, 409 storms and answers lost after the server applied the write, on the
  weight / selector / Deployment writes and on the reads (which request, and how many);
* Prometheus down or empty for some looks (`FaultProxy`, set at a given sleep of the clock);
* the run store unavailable from some call on, for some calls (`FlakyStore`).

On every schedule, on what the Kubernetes server recorded (in order with the store's calls):

* I1: a promotion (a VirtualService write giving the canary 100, a blue/green switch kept as
  promoted, a rolling update promoted) comes after a look recorded in the store with a pass;
* I2: after a fail (decision aborted, or the run stopped by an error once it started), stable
  holds all traffic (route 100/0, selector blue, the Deployment's old template, unpaused), unless
  the faults outlasted `rollbackDeadline`: then the outcome is `RestoreFailed` (exit 6), given
  only after the tries used up the deadline while the API was still failing;
* I3: a write that moves traffic forward (a canary weight above 0, the switch to green) is sent
  only after the store recorded it (the last store update before it succeeded and holds it as
  pending). Rolling never moves traffic forward itself (the Deployment controller does).

`onTimeout: promote` (an operator's explicit choice to promote undecided) is not drawn.
Stalled requests are left to the named cases at the end, which need a real read timeout.

Figures (schedules, faults injected per kind, decisions, promotions without a pass, aborts left on
the canary after the API recovered) are printed per test, and written as JSON to
`$VERDICT_RESULTS_DIR/failsafe-<test>.json` when that variable is set.
"""

from __future__ import annotations

import json
import os
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml
from kubernetes import client

from analyzer.runs.store import StoreUnavailable, open_store
from metrics.prometheus import PrometheusSource
from strategies.bluegreen import BlueGreenRollout, _labels
from strategies.canary import CanaryRollout
from strategies.kube.deployments import DeploymentOps
from strategies.kube.pods import PodGate
from strategies.kube.services import ServiceSwitch
from strategies.record import Outcome
from strategies.rolling import RollingRollout
from strategies.rollout_file import RolloutFile, load_rollout_file
from strategies.wiring import deps_over, run_rollout
from tests.canary_world import NS, weights
from tests.canary_world import install as install_canary
from tests.conftest import free_port
from tests.deployment_standin import APPS, DeploymentStandIn, template
from tests.helpers import example_analysis
from tests.kube_server import Stall
from tests.promdata import Scenario
from tests.reliability.failsafe_world import (
    FlakyStore,
    HookedClock,
    KubeCall,
    QuickFaultProxy,
    ScheduledFault,
    ScheduledKube,
    Sleep,
    StoreCall,
    Timeline,
    backfilled_prometheus,
)
from tests.reliability.fault_proxy import Fault, FaultProxy
from tests.test_bluegreen_live import BLUE, GREEN
from tests.test_bluegreen_live import install as install_bluegreen

pytestmark = pytest.mark.prometheus

HEALTHY, FAILING, SCANT = "failsafe-healthy", "failsafe-failing", "failsafe-scant"
RPS = 200.0
"""Canary requests a second of the healthy and the failing scenario (the baseline has three
times as many): enough for a healthy canary to pass within three looks of a minute. The scant
one is as healthy with one canary request a second: too few to show anything in one rollout
(undecided to the end, where `onTimeout` decides)."""
MAX_WAIT_S = 15.0
"""`RestorePolicy.max_wait`: the longest wait between two tries of a write back to stable."""

VS_PATH = r"/virtualservices/checkout$"
PODS_PATH = rf"/namespaces/{NS}/pods$"
SERVICE_PATH = rf"/namespaces/{NS}/services/checkout$"
DEPLOYMENT_PATH = r"/deployments/checkout$"
REPLICASETS_PATH = r"/replicasets$"


# --- the world, once per module ---------------------------------------------------------------


@dataclass
class Env:
    prometheus: str
    proxy: FaultProxy
    kube: ScheduledKube
    start: datetime
    """The scenarios' window start (40 minutes of data, ending 30 minutes before the module)."""
    root: Path
    files: dict[tuple[Any, ...], RolloutFile] = field(default_factory=dict)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("failsafe")
    end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=30)
    start = end - timedelta(minutes=40)
    scenarios = [
        Scenario(HEALTHY, start, end, canary_rps=RPS, baseline_rps=3 * RPS),
        Scenario(FAILING, start, end, canary_rps=RPS, baseline_rps=3 * RPS,
                 canary_error_probability=0.05),
        Scenario(SCANT, start, end, canary_rps=1.0, baseline_rps=3 * RPS),
    ]  # fmt: skip
    with backfilled_prometheus(root, scenarios, free_port()) as url:
        proxy = QuickFaultProxy(upstream=url).start()
        kube = ScheduledKube().start()
        try:
            yield Env(prometheus=url, proxy=proxy, kube=kube, start=start, root=root)
        finally:
            kube.stop()
            proxy.stop()


def rollout_file(env: Env, strategy: str, scenario: str, **rollout: Any) -> RolloutFile:
    """The example analysis over `scenario` (a look a minute) with a `rollout:` section."""
    key = (strategy, scenario, *sorted(rollout.items()))
    if key in env.files:
        return env.files[key]
    data: dict[str, Any] = example_analysis()
    data.update(
        name="checkout", prometheus={"url": env.proxy.url}, interval="60s",
        canary={"destination_service_name": f"{scenario}-canary"},
        baseline={"destination_service_name": f"{scenario}-stable"},
    )  # fmt: skip
    section: dict[str, Any] = {"strategy": strategy, "namespace": NS, "podReadyTimeout": "120s"}
    if strategy == "canary":
        section.update(
            virtualService="checkout", route="primary",
            stable={"host": "checkout", "subset": "stable"},
            canary={"host": "checkout", "subset": "canary"},
            canaryPods="app=checkout,track=canary", steps=[5, 10, 50, 100], stepDuration="180s",
        )  # fmt: skip
    elif strategy == "blueGreen":
        section.update(activeService="checkout", blue=BLUE, green=GREEN, validationPeriod="300s")
    else:
        section.update(deployment="checkout")
    section.update(rollout)
    data["rollout"] = section
    path = env.root / f"rollout-{len(env.files)}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    env.files[key] = load_rollout_file(path)
    return env.files[key]


# --- schedules --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kind: str
    method: str
    path: str
    status: int
    max_at: int
    """Faults start at a request number drawn from 1..max_at."""
    after: bool = False


TARGETS: dict[str, list[Target]] = {
    "canary": [
        Target("route-write-500", "PATCH", VS_PATH, 500, 6),
        Target("route-write-409", "PATCH", VS_PATH, 409, 6),
        Target("route-write-answer-lost", "PATCH", VS_PATH, 500, 6, after=True),
        Target("route-read-500", "GET", VS_PATH, 500, 16),
        Target("pods-read-500", "GET", PODS_PATH, 500, 14),
    ],
    "blueGreen": [
        Target("selector-write-500", "PATCH", SERVICE_PATH, 500, 3),
        Target("selector-write-409", "PATCH", SERVICE_PATH, 409, 3),
        Target("selector-write-answer-lost", "PATCH", SERVICE_PATH, 500, 3, after=True),
        Target("selector-read-500", "GET", SERVICE_PATH, 500, 5),
        Target("pods-read-500", "GET", PODS_PATH, 500, 6),
    ],
    "rolling": [
        Target("deployment-write-500", "PATCH", DEPLOYMENT_PATH, 500, 4),
        Target("deployment-write-409", "PATCH", DEPLOYMENT_PATH, 409, 4),
        Target("deployment-write-answer-lost", "PATCH", DEPLOYMENT_PATH, 500, 4, after=True),
        Target("deployment-read-500", "GET", DEPLOYMENT_PATH, 500, 14),
        Target("replicasets-read-500", "GET", REPLICASETS_PATH, 500, 1),
    ],
}
TIMES = (1, 1, 2, 3, 5, 8, 13, 30, 10_000)
"""How many requests in a row a fault takes (10,000: the API stays down)."""
PROMETHEUS_FAULTS = ("http_503", "drop", "empty")
SLEEPS = {"canary": 9, "blueGreen": 5, "rolling": 8}
"""A fault-free run's sleeps (one before each look): Prometheus faults start at one of them."""
STORE_CALLS = {"canary": 45, "blueGreen": 9, "rolling": 7}
"""About a fault-free run's store calls: the store goes down at one of them."""


@dataclass(frozen=True)
class Schedule:
    strategy: str
    seed: int
    scenario: str
    rollback_deadline: int
    on_timeout: str
    offset_minutes: int
    kube: tuple[tuple[Target, int, int], ...]
    """(target, first request number, how many)."""
    prometheus: tuple[str, int, int] | None
    """(fault kind, at which sleep of the clock it starts, how many queries it takes)."""
    store_down: tuple[int, int] | None
    """(first failing call, how many calls)."""

    def describe(self) -> str:
        kube = ", ".join(f"{t.kind} from request {at} x{n}" for t, at, n in self.kube) or "none"
        prom = "none" if self.prometheus is None else (
            f"{self.prometheus[0]} from sleep {self.prometheus[1]} x{self.prometheus[2]}"
        )  # fmt: skip
        store = "none" if self.store_down is None else (
            f"down from call {self.store_down[0]} x{self.store_down[1]}"
        )  # fmt: skip
        return (
            f"{self.strategy} seed {self.seed}: {self.scenario}, rollbackDeadline "
            f"{self.rollback_deadline}s, onTimeout {self.on_timeout}; API faults: {kube}; "
            f"Prometheus: {prom}; store: {store}"
        )


def draw(strategy: str, seed: int) -> Schedule:
    rng = random.Random(f"{strategy}/{seed}")
    scenario = rng.choices((HEALTHY, FAILING, SCANT), weights=(45, 30, 25))[0]
    count = rng.choices((0, 1, 2), weights=(4, 4, 2))[0]
    kube = tuple(
        (target, rng.randint(1, target.max_at), rng.choice(TIMES))
        for target in rng.sample(TARGETS[strategy], count)
    )
    prometheus = None
    if rng.random() < 0.2:
        prometheus = (
            rng.choice(PROMETHEUS_FAULTS),
            rng.randint(1, SLEEPS[strategy]),
            rng.choice((1, 3, 1000)),
        )
    store_down = None
    if rng.random() < 0.2:
        store_down = (rng.randint(1, STORE_CALLS[strategy]), rng.choice((1, 2, 4, 10_000)))
    return Schedule(
        strategy=strategy,
        seed=seed,
        scenario=scenario,
        rollback_deadline=rng.choice((20, 60, 120)),
        on_timeout=rng.choice(("pause", "abort")),
        offset_minutes=rng.randint(0, 15),
        kube=kube,
        prometheus=prometheus,
        store_down=store_down,
    )


# --- one schedule -------------------------------------------------------------------------------


@dataclass
class Result:
    schedule: Schedule
    outcome: Outcome | None
    code: int | str | None
    """The exit code of an error (`run_rollout`'s, 5 for the store): None when it decided."""
    timeline: Timeline
    logs: list[Any]
    faults: Counter[str]
    end_state: str
    on_stable: bool
    final_verdict: str | None
    """The run's verdict in the store at the end (None: no run)."""


def run_schedule(env: Env, schedule: Schedule, tmp: Path) -> Result:
    kube, proxy = env.kube, env.proxy
    kube.reset()
    proxy.clear()
    timeline = kube.timeline
    strategy = schedule.strategy
    standin: DeploymentStandIn | None = None
    if strategy == "canary":
        install_canary(kube)
    elif strategy == "blueGreen":
        install_bluegreen(kube)
    else:
        standin = DeploymentStandIn(kube, NS)
        standin.install(replicas=4)
    kube.schedule = [
        ScheduledFault(t.kind, t.method, t.path, t.status, at, n, after=t.after)
        for t, at, n in schedule.kube
    ]
    file = rollout_file(
        env, strategy, schedule.scenario,
        rollbackDeadline=f"{schedule.rollback_deadline}s", onTimeout=schedule.on_timeout,
    )  # fmt: skip
    clock = HookedClock(env.start + timedelta(minutes=schedule.offset_minutes), timeline)
    if schedule.prometheus is not None:
        kind, at, times = schedule.prometheus
        clock.hooks[at] = lambda: proxy.set(Fault(kind, times=times))
    if standin is not None:
        ticking = standin
        clock.every.append(lambda n: ticking.tick() if n % 2 == 0 else None)
    before = Counter(proxy.injected)
    fail_at: set[int] = set()
    if schedule.store_down is not None:
        first, count = schedule.store_down
        fail_at = set(range(first, first + count))
    inner = open_store(f"sqlite:///{tmp / f'{strategy}-{schedule.seed}.sqlite'}")
    store = FlakyStore(inner, timeline, fail_at)
    source = PrometheusSource(proxy.url, retries=0, timeout=5.0)
    api = kube.api_client()
    outcome: Outcome | None = None
    code: int | str | None = None
    try:
        with structlog.testing.capture_logs() as logs:
            rollout: Any
            if strategy == "canary":
                custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
                rollout = CanaryRollout(file, deps_over(file, custom, core, source, store, clock))
            elif strategy == "blueGreen":
                core = client.CoreV1Api(api)
                rollout = BlueGreenRollout(
                    file, switch=ServiceSwitch(core, namespace=NS, name="checkout"),
                    gate=PodGate(core, namespace=NS, selector=_labels(GREEN),
                                 ready_timeout=file.rollout.pod_ready_timeout, clock=clock),
                    source=source, store=store, clock=clock,
                )  # fmt: skip
            else:
                ops = DeploymentOps(
                    client.AppsV1Api(api), namespace=NS, name="checkout", clock=clock
                )
                rollout = RollingRollout(file, ops=ops, source=source, store=store, clock=clock)
            try:
                outcome, code = run_rollout(rollout)
            except StoreUnavailable:
                code = 5  # `verdict canary run`'s exit code for it
            except Exception as error:  # an error `run_rollout` does not map: itself a finding
                code = f"raised {type(error).__name__}: {error}"
        proxy.clear()
        faults = kube.injected() + (Counter(proxy.injected) - before)
        faults.update({"store-unavailable": store.failed} if store.failed else {})
        end_state, on_stable = _end_state(kube, strategy)
        runs = inner.runs()
        final_verdict = runs[0].verdict if runs else None
    finally:
        api.close()
        source.close()
        inner.close()
    return Result(schedule, outcome, code, timeline, list(logs), faults, end_state, on_stable,
                  final_verdict)  # fmt: skip


def _end_state(kube: ScheduledKube, strategy: str) -> tuple[str, bool]:
    if strategy == "canary":
        w = weights(kube)
        return f"route {w[0]}/{w[1]}", w == (100, 0)
    if strategy == "blueGreen":
        selector = dict(kube.get("", "v1", "services", NS, "checkout")["spec"]["selector"])
        return f"selector {selector}", selector == BLUE
    deployment = kube.get(*APPS, "deployments", NS, "checkout")
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    paused = bool(deployment["spec"].get("paused"))
    state = f"template {image}{' (paused)' if paused else ''}"
    return state, deployment["spec"]["template"] == template("checkout:1") and not paused


# --- the invariants -----------------------------------------------------------------------------


def _canary_weight(body: Any) -> int | None:
    for route in (body or {}).get("spec", {}).get("http") or []:
        for entry in route.get("route") or []:
            if entry.get("destination", {}).get("subset") == "canary":
                return int(entry.get("weight", 0))
    return None


def _selects_green(call: KubeCall) -> bool:
    body = call.body if isinstance(call.body, dict) else {}
    return bool(body.get("spec", {}).get("selector") == GREEN)


def _is_path(call: KubeCall, pattern: str) -> bool:
    return re.search(pattern, call.path) is not None


def check(result: Result, figures: Figures) -> list[str]:
    """The violations of I1, I2, I3 on one schedule (and the figures counted)."""
    s = result.schedule
    found: list[str] = []
    entries = result.timeline.entries
    decision = result.outcome.decision if result.outcome is not None else None
    figures.schedules[s.strategy] += 1
    figures.decisions[decision or f"error {str(result.code)[:40]}"] += 1
    figures.faults.update(result.faults)

    # I1: every promotion comes after a look recorded with a pass
    last_look_verdict: str | None = None
    looks = 0
    started = False
    for entry in entries:
        if isinstance(entry, StoreCall) and entry.ok and entry.method == "start":
            started = True
        if isinstance(entry, StoreCall) and entry.ok and (entry.looks or 0) > looks:
            looks, last_look_verdict = entry.looks or 0, entry.verdict
        if (
            s.strategy == "canary" and isinstance(entry, KubeCall) and entry.applied
            and entry.method == "PATCH" and _is_path(entry, VS_PATH)
            and _canary_weight(entry.body) == 100
        ):  # fmt: skip
            figures.promotions += 1
            if last_look_verdict != "pass":
                figures.promotions_without_pass += 1
                found.append(f"I1: canary 100 % written after a look with {last_look_verdict}")
    if s.strategy != "canary" and decision == "promoted":
        figures.promotions += 1
        if last_look_verdict != "pass" or result.final_verdict != "pass":
            figures.promotions_without_pass += 1
            found.append(
                f"I1: promoted with the last recorded look {last_look_verdict}, the stored run "
                f"{result.final_verdict}"
            )
        if s.strategy == "blueGreen" and result.on_stable:
            found.append("promoted, but the selector is back on blue")

    # nobody else writes in these schedules: a pause for a change "by someone else" would leave
    # traffic where the faults put it, unjudged
    if decision == "paused" and result.outcome and "someone else" in result.outcome.reason:
        found.append(
            f"paused for a change by someone else that nobody made, with {result.end_state}"
        )

    # I2: after a fail, stable holds all traffic, or RestoreFailed once the deadline is used up
    failed = result.code is not None or decision == "aborted"
    if failed and (started or s.strategy != "rolling"):
        figures.fails += 1
        if result.code == 6:
            figures.restore_failed += 1
            calls = [e for e in entries if isinstance(e, KubeCall)]
            if not calls or calls[-1].injected is None:
                found.append("I2: RestoreFailed, but the API answered the last call")
            tries = [e for e in result.logs if "trying again" in str(e.get("event"))]
            if len(tries) < 2 or tries[-1]["seconds"] < s.rollback_deadline - MAX_WAIT_S - 1:
                found.append(
                    f"I2: RestoreFailed after {len(tries)} tries, before rollbackDeadline "
                    f"{s.rollback_deadline}s was used up"
                )
        elif not result.on_stable:
            figures.aborts_left_on_canary += 1
            found.append(
                f"I2: {decision or 'stopped by an error'} (exit {result.code}) with "
                f"{result.end_state}: not back on stable, and no RestoreFailed"
            )

    # I3: a forward traffic move is sent only after the store recorded it as pending
    last_update: StoreCall | None = None
    for entry in entries:
        if isinstance(entry, StoreCall) and entry.method in ("start", "update"):
            last_update = entry
        if not isinstance(entry, KubeCall) or entry.method != "PATCH":
            continue
        pending: dict[str, Any] | None = None
        if s.strategy == "canary" and _is_path(entry, VS_PATH):
            weight = _canary_weight(entry.body)
            if weight:
                pending = {"stable": 100 - weight, "canary": weight}
        if s.strategy == "blueGreen" and _is_path(entry, SERVICE_PATH) and _selects_green(entry):
            pending = {"selector": GREEN}
        if pending is None:
            continue
        figures.forward_moves += 1
        recorded = (
            last_update is not None and last_update.ok
            and (last_update.progress or {}).get("pending") == pending
        )  # fmt: skip
        if not recorded:
            figures.unrecorded_moves += 1
            found.append(f"I3: {pending} sent without being recorded first ({last_update})")
    return found


@dataclass
class Figures:
    schedules: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    promotions: int = 0
    promotions_without_pass: int = 0
    fails: int = 0
    restore_failed: int = 0
    aborts_left_on_canary: int = 0
    forward_moves: int = 0
    unrecorded_moves: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "schedules": dict(self.schedules),
            "decisions": dict(self.decisions),
            "faultsInjected": dict(sorted(self.faults.items())),
            "promotions": self.promotions,
            "promotionsWithoutPass": self.promotions_without_pass,
            "fails": self.fails,
            "restoreFailed": self.restore_failed,
            "abortsLeftOnCanaryAfterTheApiRecovered": self.aborts_left_on_canary,
            "forwardMoves": self.forward_moves,
            "forwardMovesNotRecordedFirst": self.unrecorded_moves,
        }


CHUNKS = {"canary": 4, "blueGreen": 2, "rolling": 2}
PER_CHUNK = {"canary": 40, "blueGreen": 50, "rolling": 50}


@pytest.mark.parametrize(
    ("strategy", "chunk"),
    [(s, c) for s, n in CHUNKS.items() for c in range(n)],
    ids=[f"{s}-{c}" for s, n in CHUNKS.items() for c in range(n)],
)
def test_fault_schedules_keep_the_fail_safe_rules(
    env: Env, tmp_path: Path, strategy: str, chunk: int
) -> None:
    figures = Figures()
    violations: list[str] = []
    seeds = range(chunk * PER_CHUNK[strategy], (chunk + 1) * PER_CHUNK[strategy])
    for seed in seeds:
        schedule = draw(strategy, seed)
        result = run_schedule(env, schedule, tmp_path)
        for problem in check(result, figures):
            violations.append(f"{problem}\n    schedule: {schedule.describe()}\n    ended: "
                              f"{_ending(result)}")  # fmt: skip
    name = f"{strategy}-{chunk}"
    report = json.dumps(figures.as_json(), indent=1)
    print(f"\nfail-safe schedules {name}: {report}")
    results_dir = os.environ.get("VERDICT_RESULTS_DIR")
    if results_dir:
        Path(results_dir).mkdir(parents=True, exist_ok=True)
        (Path(results_dir) / f"failsafe-{name}.json").write_text(report)
    assert figures.schedules[strategy] == len(seeds)
    assert not violations, f"{len(violations)} violations:\n" + "\n".join(violations)
    assert figures.promotions_without_pass == 0 and figures.aborts_left_on_canary == 0
    assert figures.unrecorded_moves == 0
    # the schedules exercised what they are about: promotions, fails, faults of every kind
    assert figures.promotions > 0 and figures.fails > 0, figures.as_json()
    kinds = set(figures.faults)
    assert "store-unavailable" in kinds and kinds & set(PROMETHEUS_FAULTS), figures.as_json()
    assert kinds & {t.kind for t in TARGETS[strategy]}, figures.as_json()


def _ending(result: Result) -> str:
    outcome = result.outcome
    what = f"{outcome.decision}: {outcome.reason[:160]}" if outcome else f"exit {result.code}"
    sent = [
        f"{e.method} {e.path.rsplit('/', 1)[-1]} {e.status}{' (applied)' if e.applied else ''}"
        for e in result.timeline.entries
        if isinstance(e, KubeCall) and e.method != "GET"
    ]
    slept = sum(e.seconds for e in result.timeline.entries if isinstance(e, Sleep))
    return (f"{what}; {result.end_state}; writes the server recorded: {sent}; "
            f"{slept:g} s slept; faults {dict(result.faults)}")  # fmt: skip


# --- named cases --------------------------------------------------------------------------------


class Crash(BaseException):
    """The process killed (kill -9): no handler of Verdict's runs, nothing more is sent."""


class DyingRoutes:
    """The VirtualService API of a process that dies (`Crash`) or is interrupted
    (`KeyboardInterrupt`) at its `at`-th weight write: before the write is sent (it is recorded),
    or after the server applied it and before its answer is read (the answer is lost)."""

    def __init__(
        self, inner: Any, kube: ScheduledKube, *, at: int, when: str, error: type[BaseException]
    ) -> None:
        self.inner, self.kube, self.at, self.when, self.error = inner, kube, at, when, error
        self.patches = 0

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.get_namespaced_custom_object(*args, **kwargs)

    def patch_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        self.patches += 1
        if self.patches != self.at:
            return self.inner.patch_namespaced_custom_object(*args, **kwargs)
        if self.when == "before the write is sent":
            raise self.error()
        self.kube.fail_next("PATCH", VS_PATH, 500, message="the answer is lost", after=True)
        try:
            self.inner.patch_namespaced_custom_object(*args, **kwargs)
        except ApiException:
            raise self.error() from None
        raise AssertionError("the injected lost answer did not come")


@dataclass
class CanaryParts:
    rollout: CanaryRollout
    store: FlakyStore
    clock: HookedClock


def canary_parts(
    env: Env, scenario: str, store_url: str, *, clock: HookedClock | None = None,
    timeout: tuple[float, float] | None = None, routes: Any = None,
    on_look: Any = None, **rollout: Any,
) -> CanaryParts:  # fmt: skip
    """A canary rollout over the module's world (`routes` wraps the VirtualService API)."""
    file = rollout_file(env, "canary", scenario, **rollout)
    clock = clock or HookedClock(env.start, env.kube.timeline)
    store = FlakyStore(open_store(store_url), env.kube.timeline)
    api = env.kube.api_client(timeout=timeout)
    custom: Any = client.CustomObjectsApi(api)
    if routes is not None:
        custom = routes(custom)
    source = PrometheusSource(env.proxy.url, retries=0, timeout=5.0)
    deps = deps_over(file, custom, client.CoreV1Api(api), source, store, clock)
    return CanaryParts(CanaryRollout(file, deps, on_look=on_look), store, clock)


def _vs_writes(kube: ScheduledKube) -> list[tuple[int | None, int]]:
    """(canary weight, status) of every weight write the server received, in order."""
    return [
        (_canary_weight(e.body), e.status)
        for e in kube.timeline.entries
        if isinstance(e, KubeCall) and e.method == "PATCH" and _is_path(e, VS_PATH)
    ]


@pytest.fixture
def world(env: Env) -> Iterator[Env]:
    """The module's world, reset: a VirtualService at 100/0 and two Ready canary pods."""
    env.kube.reset()
    env.proxy.clear()
    install_canary(env.kube)
    yield env
    env.kube.reset()  # held requests dropped unanswered


def test_a_stalled_read_of_the_route_during_a_step_ends_with_traffic_back_on_stable(
    world: Env, tmp_path: Path
) -> None:
    """I4 and I2: the API hangs on the VirtualService in the middle of the first step (the
    client's read deadline is 2 s, and the client tries a GET four times); the run stops on
    the deadline and, once the API answers again, puts all traffic back on stable."""
    kube = world.kube
    stalls: list[Stall] = []

    def hang(event: Any) -> None:
        if (event.step, event.look) == (1, 1):  # the next read of the route is held, and retried
            stalls.extend(kube.stall_next("GET", VS_PATH) for _ in range(4))

    parts = canary_parts(world, HEALTHY, f"sqlite:///{tmp_path / 'r.sqlite'}",
                         timeout=(1.0, 2.0), on_look=hang)  # fmt: skip
    began = time.monotonic()
    outcome, code = run_rollout(parts.rollout)
    took = time.monotonic() - began
    assert (outcome, code) == (None, 4)  # unreachable: said, not waited on
    assert took < 30, f"a silent wait of {took:.0f} s"
    assert all(s.taken for s in stalls)
    assert weights(kube) == (100, 0)
    assert _vs_writes(kube) == [(5, 200), (0, 200)]
    run = parts.store.inner.runs()[0]
    progress = (run.answer or {})["rollout"]
    assert progress["state"] == "aborted" and progress["trafficRestored"] is True
    assert "unreachable" in progress["reason"] or "timed out" in progress["reason"]


CRASHES = [
    # (scenario, weight write the process dies at, expected end: decision, route)
    (HEALTHY, 1, "promoted"),  # the first step's 5 %
    (HEALTHY, 2, "promoted"),  # the second step's 10 %
    (FAILING, 1, "aborted"),  # the first step's 5 %
    (FAILING, 2, "aborted"),  # the write back to 0 after the fail at the first step
]


@pytest.mark.parametrize("when", ["before the write is sent", "after the server applied it"])
@pytest.mark.parametrize(("scenario", "at", "decision"), CRASHES,
                         ids=[f"{s.removeprefix('failsafe-')}-write{a}" for s, a, _ in CRASHES])  # fmt: skip
def test_a_crash_between_record_and_send_is_finished_or_rolled_back_on_the_next_start(
    world: Env, tmp_path: Path, scenario: str, at: int, decision: str, when: str
) -> None:
    """The process dies at a weight write it recorded as pending: before sending it, or after
    the server applied it and before the answer came back (kill -9: none of Verdict's handlers
    run). The next start of the same command finishes the rollout (a healthy canary promoted)
    or rolls it back (a failing one), and never moves traffic forward after the fail."""
    kube = world.kube
    store = f"sqlite:///{tmp_path / 'r.sqlite'}"
    first = canary_parts(
        world, scenario, store,
        routes=lambda api: DyingRoutes(api, kube, at=at, when=when, error=Crash),
    )  # fmt: skip
    with pytest.raises(Crash):
        first.rollout.run()
    crashed_at = weights(kube)
    written_before = len(_vs_writes(kube))
    again = canary_parts(world, scenario, store, clock=first.clock)
    outcome, code = run_rollout(again.rollout)
    after = [w for w, status in _vs_writes(kube)[written_before:] if status == 200]
    said = f"{outcome.decision}: {outcome.reason[:240]}" if outcome else f"exit {code}"
    ended = f"crashed at {crashed_at}; the next start: {said}; its weight writes {after}"
    if decision == "aborted" and at == 2:
        # the fail was found before the crash: never more traffic than at the crash (at the
        # first write no look has judged the canary yet, and the next start begins again)
        assert all(w is not None and w <= crashed_at[1] for w in after), ended
    assert weights(kube) == ((0, 100) if decision == "promoted" else (100, 0)), ended
    assert code is None and outcome is not None and outcome.decision == decision, ended


SIGTERM_POINTS = (
    [f"look {n}" for n in range(1, 10)]
    + [f"sleep {n}" for n in range(1, 10)]
    + [f"write {n} {when}" for n in range(1, 5) for when in ("before", "after")]
)


@pytest.mark.parametrize("point", SIGTERM_POINTS)
def test_sigterm_at_each_point_of_a_step_puts_traffic_back_on_stable(
    world: Env, tmp_path: Path, point: str
) -> None:
    """SIGTERM (`verdict canary run` turns it into KeyboardInterrupt) after each look of each
    of the three steps, during each wait before a look, and around each weight write (just
    before it is sent, just after the server applied it): all traffic back on stable, and the
    run recorded as interrupted with its traffic restored. A healthy canary, so that the signal
    is the only reason to go back."""
    kind, number, *rest = point.split()
    n = int(number)

    def on_look(event: Any) -> None:
        if kind == "look" and event.look == n:
            raise KeyboardInterrupt

    routes = None
    if kind == "write":
        when = "before the write is sent" if rest == ["before"] else "after the server applied it"
        routes = lambda api: DyingRoutes(api, world.kube, at=n, when=when, error=KeyboardInterrupt)  # noqa: E731
    parts = canary_parts(world, HEALTHY, f"sqlite:///{tmp_path / 'r.sqlite'}",
                         routes=routes, on_look=on_look)  # fmt: skip
    if kind == "sleep":

        def interrupt() -> None:
            raise KeyboardInterrupt

        parts.clock.hooks[n] = interrupt
    outcome, code = run_rollout(parts.rollout)
    assert code is None and outcome is not None
    assert (outcome.decision, outcome.reason) == (
        "interrupted", "interrupted: all traffic back on stable",
    ), outcome.reason  # fmt: skip
    assert weights(world.kube) == (100, 0)
    progress = (parts.store.inner.runs()[0].answer or {})["rollout"]
    assert (progress["state"], progress["trafficRestored"]) == ("interrupted", True)
    assert _vs_writes(world.kube)[-1] == (0, 200)


@pytest.mark.parametrize("sleep", range(1, 6))
def test_sigterm_during_the_blue_green_validation_switches_back_to_blue(
    env: Env, tmp_path: Path, sleep: int
) -> None:
    """SIGTERM while blue/green waits for each of its five looks: the selector back on blue."""
    kube = env.kube
    kube.reset()
    install_bluegreen(kube)
    file = rollout_file(env, "blueGreen", HEALTHY)
    clock = HookedClock(env.start, kube.timeline)

    def interrupt() -> None:
        raise KeyboardInterrupt

    clock.hooks[sleep] = interrupt
    store = FlakyStore(open_store(f"sqlite:///{tmp_path / 'r.sqlite'}"), kube.timeline)
    core = client.CoreV1Api(kube.api_client())
    rollout = BlueGreenRollout(
        file, switch=ServiceSwitch(core, namespace=NS, name="checkout"),
        gate=PodGate(core, namespace=NS, selector=_labels(GREEN), ready_timeout=60, clock=clock),
        source=PrometheusSource(env.proxy.url, retries=0), store=store, clock=clock,
    )  # fmt: skip
    outcome, code = run_rollout(rollout)
    assert code is None and outcome is not None
    assert (outcome.decision, outcome.reason) == (
        "interrupted",
        "interrupted: switched back to blue",
    )
    assert dict(kube.get("", "v1", "services", NS, "checkout")["spec"]["selector"]) == BLUE
    selectors = [e.body["spec"]["selector"].get("version") for e in kube.timeline.entries
                 if isinstance(e, KubeCall) and e.method == "PATCH" and e.status == 200]  # fmt: skip
    assert selectors == ["green", "blue"]

"""Controller mode across replicas: `verdict serve --watch --shards N`.

Rollouts are split into shards by a stable hash, each shard held by a Lease; each replica steers
the Rollouts of the shards it holds. The Lease logic alone runs in-process on short timings; the
rest runs three real `verdict serve` processes (kubeconfigs pointing at the Kubernetes API test
server, one PostgreSQL run store, a real Prometheus, the production Lease timings: 15 s duration,
5 s renewal, 2 s retry); the Argo stand-in moves the Rollouts as Argo would. What a replica
looked at is read from its own log (`look answered` / `no verdict this look`, with the Rollout's
name), what it sent from the API server's request log.

Per-replica capacity: a replica makes AT_ONCE looks at a time (`--prometheus-concurrency`), each
through a proxy that adds LATENCY_S to every query, so it can look at only so many Rollouts a
second; the Rollouts ask for twice that.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from analyzer.cli import app as cli_app
from analyzer.clock import SystemClock
from analyzer.runs import PrometheusSources, RunService, RunSettings, Telemetry
from analyzer.runs.store import open_store
from analyzer.spec import parse_analysis
from strategies.argo import ControllerApp, ControllerOptions
from strategies.argo.leader import LeaseElector
from strategies.argo.shards import ShardLeases, member_lease_name, shard_lease_name, shard_of
from strategies.kube.permissions import CONTROLLER, LEADER_ELECTION, SHARDS, Rule
from tests.argo_standin import ARGO, PAUSE_STEPS, ArgoStandIn, canary_rollout
from tests.conftest import free_port
from tests.helm import HelmError, template
from tests.helpers import REPO, example_analysis, stop_process, write_analysis
from tests.kube_server import KubeServer
from tests.live_exporter import live_prometheus
from tests.test_store import PostgresServer, postgres_server  # noqa: F401  (the fixture)

NS = "shop"
SOLO = "solo"
"""The namespace of the single replica the three are compared with."""
SHARDS_N = 3
LEASES = ("coordination.k8s.io", "v1", "leases")
BASE = "verdict-controller"
HELD_STEPS: list[dict[str, Any]] = [
    {"setWeight": 5},
    {"pause": {"duration": "10m"}},
    {"setWeight": 50},
    {"pause": {}},
]
"""A timed pause first: with no verdict (its Prometheus unreachable) Verdict pauses it at once."""
LOOKED = ("look answered", "no verdict this look")
STATUS = "verdict.dev/status"


# --- helpers -------------------------------------------------------------------------------


def names_by_shard(prefix: str, per_shard: int, shards: int = SHARDS_N) -> dict[int, list[str]]:
    """`per_shard` Rollout names in each shard."""
    out: dict[int, list[str]] = {i: [] for i in range(shards)}
    n = 0
    while any(len(names) < per_shard for names in out.values()):
        name = f"{prefix}-{n:03d}"
        n += 1
        names = out[shard_of(NS, name, shards)]
        if len(names) < per_shard:
            names.append(name)
    return out


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def holders(kube: KubeServer, shards: int = SHARDS_N) -> dict[int, str]:
    """Shard -> the identity holding its Lease now (expired or released Leases left out)."""
    now = datetime.now(UTC)
    out = {}
    for lease in kube.objects(*LEASES):
        found = re.fullmatch(rf"{BASE}-shard-(\d+)-of-{shards}", lease["metadata"]["name"])
        spec = lease.get("spec") or {}
        if found is None or not spec.get("holderIdentity") or not spec.get("renewTime"):
            continue
        if (now - _time(spec["renewTime"])).total_seconds() < spec["leaseDurationSeconds"]:
            out[int(found[1])] = spec["holderIdentity"]
    return out


def wait_until(condition: Callable[[], Any], seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(0.1)
    return time.monotonic() - started


@dataclass
class Replica:
    """A `verdict serve --watch` process and its JSON log."""

    process: subprocess.Popen[bytes]
    log: Path
    identity: str = ""
    _read: int = 0
    _lines: list[dict[str, Any]] = field(default_factory=list)

    def lines(self) -> list[dict[str, Any]]:
        with self.log.open("rb") as handle:
            handle.seek(self._read)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._read += len(complete)
        for raw in complete.splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if isinstance(line, dict):
                self._lines.append(line)
        return self._lines

    def looks(
        self, since: datetime, until: datetime | None = None, events: tuple[str, ...] = LOOKED
    ) -> list[tuple[datetime, str]]:
        """(time, Rollout) of every look this replica made in [since, until)."""
        out = []
        for line in self.lines():
            if line.get("event") not in events or "rollout" not in line:
                continue
            at = _time(line["timestamp"])
            if at >= since and (until is None or at < until):
                out.append((at, str(line["rollout"])))
        return out

    def said(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == event]


@pytest.fixture
def listen_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test's HTTP servers (the Kubernetes API test server, the Prometheus proxy) accept
    128 pending connections, as real servers do, not socketserver's 5: three replicas open
    dozens at once, and a refused connection would be a failed look, not a slow one."""
    import socketserver

    monkeypatch.setattr(socketserver.TCPServer, "request_queue_size", 128)


@pytest.fixture
def empty_prometheus(tmp_path: Path) -> Iterator[str]:
    """A real Prometheus with no series: every look is inconclusive (no data), and quick."""
    root = tmp_path / "prometheus"
    root.mkdir()
    with live_prometheus(root, []) as url:
        yield url


@pytest.fixture
def shared_store(postgres_server: PostgresServer) -> str:  # noqa: F811  (the fixture)
    """A database of its own on the session's PostgreSQL: the run store replicas share."""
    import psycopg

    name = f"shards_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_server.url.rsplit("/", 1)[0] + f"/{name}"


_PROXY = """
import socketserver, sys
from tests.reliability.fault_proxy import Fault, FaultProxy
socketserver.TCPServer.request_queue_size = 128
proxy = FaultProxy(upstream=sys.argv[1]).start()
proxy.set(Fault("latency", seconds=float(sys.argv[2])))
print(proxy.url, flush=True)
sys.stdin.read()  # until the test closes it
"""


@contextmanager
def latency_proxy(upstream: str, seconds: float) -> Iterator[str]:
    """`tests.reliability.fault_proxy` adding `seconds` to every query, in a process of its own
    (the replicas' queries add up to a hundred and more a second: not on the test's CPU)."""
    process = subprocess.Popen(
        [sys.executable, "-c", _PROXY, upstream, str(seconds)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stdin is not None
        url = process.stdout.readline().decode().strip()
        assert url.startswith("http://"), url
        yield url
    finally:
        if process.stdin is not None:
            process.stdin.close()
        stop_process(process)


@pytest.fixture
def replicas(
    tmp_path: Path, kube: KubeServer, shared_store: str
) -> Iterator[Callable[..., Replica]]:
    """Start `verdict serve --watch --shards 3` processes (or `shards`, in `namespace`) over one
    run store; stopped after."""
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    store = shared_store
    started: list[Replica] = []

    def start(config: Path, *flags: str, namespace: str = NS, shards: int = SHARDS_N) -> Replica:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--config", str(config), "--store", store, "--watch",
                 "--namespace", namespace, "--kubeconfig", str(kubeconfig),
                 "--lease-namespace", namespace, "--shards", str(shards), *flags],
                cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        replica = Replica(process, log)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        if replica.process.poll() is None:
            stop_process(replica.process)


def wait_started(*replicas: Replica) -> None:
    """Until each replica's controller runs (its identity logged)."""

    def ready() -> bool:
        for replica in replicas:
            if replica.process.poll() is not None:
                pytest.fail(f"verdict serve exited:\n{replica.log.read_text()[-3000:]}")
            if not replica.identity:
                found = replica.said("controller started")
                replica.identity = str(found[0]["identity"]) if found else ""
        return all(r.identity for r in replicas)

    wait_until(ready, 60, "verdict serve --watch started")


def add_rollouts(
    kube: KubeServer,
    argo: ArgoStandIn,
    names: list[str],
    *,
    analysis: str,
    steps: list[dict[str, Any]] = PAUSE_STEPS,
    namespace: str = NS,
) -> None:
    """Canary Rollouts opted in to `analysis`, each updating (paused at its first pause step)."""
    for name in names:
        kube.put(canary_rollout(name, namespace, analysis=analysis, steps=steps))
        argo.start_update(namespace, name, canary=f"{name}-c", stable=f"{name}-s")


def write_analyses(folder: Path, interval: str = "1s", **urls: str) -> Path:
    """One analysis per keyword (its name), reading that Prometheus, a look every `interval`."""
    folder.mkdir()
    for name, url in urls.items():
        data = example_analysis()
        data.update(name=name, prometheus={"url": url}, interval=interval)
        data["canary"] = {"destination_service_name": "{{ rollout }}-canary"}
        data["baseline"] = {"destination_service_name": "{{ rollout }}-stable"}
        write_analysis(folder / f"{name}.yaml", data)
    return folder


# --- the shard of a Rollout, and the shares -----------------------------------------------


def test_the_shard_of_a_rollout_is_sha256_of_its_name_and_spreads_evenly() -> None:
    import hashlib

    digest = hashlib.sha256(b"shop/checkout").digest()
    assert shard_of("shop", "checkout", 3) == int.from_bytes(digest[:8], "big") % 3
    assert shard_of("shop", "checkout", 1) == 0
    counts = [0] * 5
    for n in range(5000):
        counts[shard_of(f"ns-{n % 7}", f"service-{n}", 5)] += 1
    assert all(900 < c < 1100 for c in counts), counts  # 1000 each, within 10 %


def _leases(kube: KubeServer, who: str, shards: int, **kwargs: Any) -> ShardLeases:
    return ShardLeases(
        kube.api_client(), name=BASE, namespace=NS, identity=who, shards=shards,
        duration=2, renew=0.5, retry=0.2, **kwargs,
    )  # fmt: skip


@pytest.mark.parametrize(("shards", "shares"), [(3, [1, 1, 1]), (4, [1, 1, 2]), (2, [0, 1, 1])])
def test_replicas_share_the_shards_fairly_and_a_replica_alone_holds_them_all(
    kube: KubeServer, shards: int, shares: list[int]
) -> None:
    gained: list[tuple[str, int]] = []
    replicas = [
        _leases(kube, who, shards, on_gain=lambda i, who=who: gained.append((who, i)))
        for who in ("a", "b", "c")
    ]
    replicas[0].start()
    try:
        wait_until(lambda: len(replicas[0].held()) == shards, 5, "one replica holds all")
        for replica in replicas[1:]:
            replica.start()
        wait_until(
            lambda: (
                sorted(len(r.held()) for r in replicas) == shares
                and sorted(i for r in replicas for i in r.held()) == list(range(shards))
            ),
            10,
            f"{shards} shards shared {shares}",
        )
        time.sleep(1.0)  # and it stays so: no replica takes more than its share
        assert sorted(len(r.held()) for r in replicas) == shares
        assert set(holders(kube, shards).values()) <= {"a", "b", "c"}
        assert len(holders(kube, shards)) == shards
        # every shard taken was told (a take-over per shard held)
        for replica in replicas:
            for i in replica.held():
                assert (replica.identity, i) in gained
    finally:
        for replica in replicas:
            replica.stop()
    assert holders(kube, shards) == {}  # released when they stop
    members = [o for o in kube.objects(*LEASES) if "-member-" in o["metadata"]["name"]]
    assert members == []  # each replica deletes its member Lease when it stops
    allowed = {
        (rule.api_group, resource, verb)
        for rule in LEADER_ELECTION + SHARDS
        for resource in rule.resources
        for verb in rule.verbs
    }
    assert kube.permissions_used() <= allowed, kube.permissions_used() - allowed


def test_a_replica_stops_steering_a_shard_once_its_lease_is_not_renewed_and_takes_it_over_again(
    kube: KubeServer,
) -> None:
    gained: list[int] = []
    lost: list[int] = []
    a = _leases(kube, "a", 2, on_gain=gained.append, on_loss=lost.append)
    a.start()
    try:
        wait_until(lambda: a.held() == (0, 1), 5, "a holds both shards")
        assert sorted(gained) == [0, 1]
        kube.fail_next("PUT", r"/leases/", 500, times=25)  # no renewal lands for a while
        failing = time.monotonic()
        wait_until(lambda: a.held() == (), 5, "a stops holding")
        stopped = time.monotonic() - failing
        assert stopped < 2 + 0.5 + 0.5  # the 2 s Lease after its last renewal (every 0.5 s)
        wait_until(lambda: sorted(lost) == [0, 1], 2, "each loss told")
        wait_until(lambda: a.held() == (0, 1), 15, "taken again once renewals land")
        assert sorted(gained) == [0, 0, 1, 1]  # each taken again: a take-over each time
    finally:
        a.stop()


def test_a_new_layout_waits_while_the_old_one_holds_its_leases(kube: KubeServer) -> None:
    single = LeaseElector(kube.api_client(), name=BASE, namespace=NS, identity="old", duration=2)
    assert single.try_once()  # `--leader-elect` without shards, as before an upgrade
    new = _leases(kube, "new", 3)
    new.start()
    try:
        time.sleep(1.0)
        assert new.held() == ()  # two layouts never act at once
        single.release()  # the old replica stops
        wait_until(lambda: new.held() == (0, 1, 2), 5, "the new layout takes over")
        newer = _leases(kube, "newer", 4)  # then --shards 3 becomes --shards 4
        newer.start()
        try:
            time.sleep(1.0)
            assert newer.held() == () and new.held() == (0, 1, 2)  # the older layout acts on
            new.stop()
            wait_until(lambda: newer.held() == (0, 1, 2, 3), 5, "the newer layout takes over")
        finally:
            newer.stop()
    finally:
        new.stop()


def test_the_leases_of_a_replica_gone_for_ten_lease_durations_are_deleted(
    kube: KubeServer,
) -> None:
    quick = {"duration": 1, "renew": 0.3, "retry": 0.2}
    gone = ShardLeases(kube.api_client(), name=BASE, namespace=NS, identity="gone", shards=2,
                       **quick)  # fmt: skip
    alive = ShardLeases(kube.api_client(), name=BASE, namespace=NS, identity="alive", shards=2,
                        **quick)  # fmt: skip
    gone.start()
    alive.start()
    try:
        wait_until(lambda: len(holders(kube, 2)) == 2 and gone.held() != (), 5, "one shard each")
        gone.stop(release=False)  # dies: its member Lease stays behind
        died = time.monotonic()
        member = member_lease_name(BASE, "gone")
        wait_until(lambda: alive.held() == (0, 1), 5, "its shard taken")

        def names() -> set[str]:
            return {o["metadata"]["name"] for o in kube.objects(*LEASES)}

        assert member in names()
        wait_until(lambda: member not in names(), 20, "its member Lease deleted")
        assert time.monotonic() - died >= 10  # not before ten Lease durations
        assert {shard_lease_name(BASE, i, 2) for i in (0, 1)} <= names()  # the shards stay
    finally:
        alive.stop()


# --- three processes ----------------------------------------------------------------------

LATENCY_S = 0.5
"""Added to every Prometheus query by the proxy (a look makes about three rounds of queries)."""
AT_ONCE = 8
"""Looks a replica makes at once (`--prometheus-concurrency`): with the latency, its capacity."""
PER_SHARD = 16
INTERVAL = "2s"
"""Rollouts per shard and their interval: 8 looks a second asked for, twice a replica's capacity.
(A look's cost grows with the intervals its run has seen: at 2 s they stay few.)"""
WINDOW_S = 20.0
SETTLE_S = 8.0


def cadence(looks: list[tuple[datetime, str]]) -> float:
    """The median time between two looks at the same Rollout."""
    last: dict[str, datetime] = {}
    gaps = []
    for at, rollout in sorted(looks):
        if rollout in last:
            gaps.append((at - last[rollout]).total_seconds())
        last[rollout] = at
    return statistics.median(gaps) if gaps else float("inf")


@pytest.mark.prometheus
@pytest.mark.postgres
def test_three_replicas_steer_three_times_the_rollouts_of_one_each_rollout_by_one_replica(
    listen_backlog: None,
    kube: KubeServer,
    tmp_path: Path,
    replicas: Callable[..., Replica],
    empty_prometheus: str,
) -> None:
    """One replica carries what its capacity allows (PER_SHARD Rollouts, each looked at every
    few seconds instead of every INTERVAL); three replicas with `--shards 3` carry three times
    the Rollouts at the same cadence. Steered = looks a second. Both run side by side (the one
    replica, as today without shards, in a namespace of its own) over the same window, on the
    same machine: what slows one slows the other. A look costs more the longer since the last
    one and the older its run: both steer new updates at the same cadence."""
    # AT_ONCE looks at a time; a look waits for its turn as long as it takes (none dropped)
    flags = ("--prometheus-concurrency", str(AT_ONCE), "--look-budget", "60")
    by_shard = names_by_shard("svc", PER_SHARD)
    with latency_proxy(empty_prometheus, LATENCY_S) as url:
        config = write_analyses(tmp_path / "analyses", INTERVAL, fleet=url)
        argo = ArgoStandIn(kube).install()
        one = replicas(config, *flags, namespace=SOLO, shards=1)  # today's single replica
        fleet = [replicas(config, *flags) for _ in range(3)]
        wait_started(one, *fleet)
        spread = wait_until(lambda: len(set(holders(kube).values())) == 3, 40, "one shard each")
        add_rollouts(kube, argo, by_shard[0], analysis="fleet", namespace=SOLO)
        add_rollouts(
            kube, argo, [n for names in by_shard.values() for n in names], analysis="fleet"
        )
        time.sleep(SETTLE_S)
        since = datetime.now(UTC)
        time.sleep(WINDOW_S)
        until = datetime.now(UTC)
        held = holders(kube)
        alone = one.looks(since, until, ("look answered",))
        looks = {r.identity: r.looks(since, until, ("look answered",)) for r in fleet}
    three = sum(len(v) for v in looks.values())
    ratio = three / max(1, len(alone))
    per_replica = [round(len(v) / WINDOW_S, 2) for v in looks.values()]
    cadences = [round(cadence(v), 1) for v in looks.values()]
    print(
        f"looks a second: one replica {len(alone) / WINDOW_S:.2f} over {PER_SHARD} Rollouts "
        f"(a look each every {cadence(alone):.1f} s), three {three / WINDOW_S:.2f} "
        f"{per_replica} over {3 * PER_SHARD} (every {cadences} s); ratio {ratio:.2f}; shards "
        f"spread {spread:.1f} s after the replicas started"
    )
    assert len(alone) >= PER_SHARD  # the replica alone looked at its Rollouts
    assert ratio >= 2.7, f"three replicas looked {ratio:.2f} times as often as one"
    steered_by: dict[str, set[str]] = defaultdict(set)
    for who, seen in looks.items():
        for _, rollout in seen:
            steered_by[rollout].add(who)
    names = {n for shard in by_shard.values() for n in shard}
    assert set(steered_by) == names  # every Rollout looked at in the window
    for rollout, by in steered_by.items():  # by exactly one replica: the holder of its shard
        assert by == {held[shard_of(NS, rollout, SHARDS_N)]}, (rollout, by)


@pytest.mark.prometheus
@pytest.mark.postgres
def test_a_killed_replica_s_rollouts_are_looked_at_again_within_20_s_and_no_action_twice(
    listen_backlog: None,
    kube: KubeServer,
    tmp_path: Path,
    replicas: Callable[..., Replica],
    empty_prometheus: str,
    unreachable_url: str,
    shared_store: str,
) -> None:
    config = write_analyses(tmp_path / "analyses", fleet=empty_prometheus, held=unreachable_url)
    argo = ArgoStandIn(kube).install()
    watched = names_by_shard("svc", 2)
    paused = names_by_shard("held", 1)
    fleet = [replicas(config) for _ in range(3)]
    wait_started(*fleet)
    wait_until(lambda: len(set(holders(kube).values())) == 3, 40, "one shard each")
    held = holders(kube)
    shard = 0
    victim = next(r for r in fleet if r.identity == held[shard])
    survivors = [r for r in fleet if r is not victim]
    target = paused[shard][0]  # its pause is sent, carried out, and its sender killed
    add_rollouts(kube, argo, [n for names in watched.values() for n in names], analysis="fleet")
    add_rollouts(kube, argo, [n for names in paused.values() for n in names], analysis="held",
                 steps=HELD_STEPS)  # fmt: skip
    # the first look of a run has no window to judge (inconclusive: the decision is written on
    # the Rollout); the next one asks Prometheus, fails, and pauses it: that pause is held
    wait_until(lambda: STATUS in kube.get(*ARGO, NS, target)["metadata"].get("annotations", {}),
               20, "the first look")  # fmt: skip
    stall = kube.stall_next("PATCH", rf"/rollouts/{target}$")
    assert stall.arrived.wait(30), "no pause was sent"
    others = [names[0] for i, names in paused.items() if i != shard]
    wait_until(lambda: all(kube.get(*ARGO, NS, n)["spec"].get("paused") for n in others), 20,
               "the other replicas' pauses")  # fmt: skip
    victim.process.kill()  # SIGKILL: no Lease released, the pause recorded and not marked done
    killed_at, killed = datetime.now(UTC), time.monotonic()
    victim.process.wait(timeout=10)
    stall.release(apply=True)  # the request reached the API server before its sender died
    wait_until(lambda: kube.get(*ARGO, NS, target)["spec"].get("paused"), 5, "the pause applied")
    orphans = set(watched[shard] + paused[shard])

    def looked_again() -> set[str]:
        return {n for r in survivors for _, n in r.looks(killed_at) if n in orphans}

    wait_until(lambda: looked_again() == orphans, 30, "the killed replica's Rollouts looked at")
    took = time.monotonic() - killed
    first = {
        n: min(at for r in survivors for at, m in r.looks(killed_at) if m == n) for n in orphans
    }
    latest = max((at - killed_at).total_seconds() for at in first.values())
    new_holder = holders(kube)[shard]
    print(
        f"killed replica's Rollouts looked at again {latest:.1f} s after the kill "
        f"(seen by the test after {took:.1f} s); shard {shard} now held by {new_holder[-6:]}"
    )
    assert latest <= 20, f"looked at again after {latest:.1f} s"
    assert new_holder in {r.identity for r in survivors}
    time.sleep(3)  # a few more looks of every Rollout: nothing is sent twice
    actions = [
        (r.path.rsplit("/", 1)[-1] if not r.path.endswith("/status") else r.path, r.body)
        for r in kube.writes(plural="rollouts", method="PATCH")
        if set(r.body) != {"metadata"}
    ]
    assert sorted(actions) == sorted(
        (n, {"spec": {"paused": True}}) for names in paused.values() for n in names
    ), actions  # one pause per held Rollout (the killed replica's included), nothing else
    assert len(actions) == len(set(json.dumps(a, sort_keys=True) for a in actions))
    store = open_store(shared_store)
    try:
        journal = store.pending_actions()
        assert journal == []  # the new holder finished the pending pause
    finally:
        store.close()
    takers = [r for r in survivors if r.identity == new_holder]
    taken = [line for line in takers[0].said("shard taken over") if line["shard"] == shard]
    assert taken and taken[-1]["pending_actions"] == 1
    target_now = kube.get(*ARGO, NS, target)
    assert target_now["metadata"]["annotations"]["verdict.dev/paused"] == f"{target}-c:1"
    for survivor in survivors:
        assert survivor.process.poll() is None
    used = kube.permissions_used()
    allowed = {
        (rule.api_group, resource, verb)
        for rule in CONTROLLER + LEADER_ELECTION + SHARDS
        for resource in rule.resources
        for verb in rule.verbs
    }
    assert used <= allowed, used - allowed
    assert ("coordination.k8s.io", "leases", "list") in used


# --- one shard: the single leader, as before -----------------------------------------------


def test_one_shard_keeps_the_single_leader_lease_and_one_replica_steers_every_rollout(
    kube: KubeServer, tmp_path: Path, unreachable_url: str
) -> None:
    spec = example_analysis()
    spec.update(name="fleet", prometheus={"url": unreachable_url}, interval="1s")

    def service() -> RunService:  # a process of its own: its own metrics, the shared store
        store = open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
        return RunService(
            analyses={"fleet": parse_analysis(spec, "fleet")},
            store=store,
            sources=PrometheusSources(look_budget=2.0),
            clock=SystemClock(),
            settings=RunSettings(),
            telemetry=Telemetry(store.count),
        )

    argo = ArgoStandIn(kube).install()
    names = [n for shard in names_by_shard("svc", 2).values() for n in shard]
    add_rollouts(kube, argo, names, analysis="fleet")
    apps = [
        ControllerApp(
            kube.api_client(),
            service(),
            SystemClock(),
            ControllerOptions(
                namespaces=(NS,), leader_elect=True, lease_namespace=NS, identity=who
            ),
        )
        for who in ("replica-a", "replica-b")
    ]
    assert all(app.options.shards == 1 and app.shards is None for app in apps)
    apps[0].start()
    try:
        wait_until(
            lambda: apps[0].elector is not None and apps[0].elector.is_leader(), 5, "a leads"
        )
        apps[1].start()

        def steered() -> dict[str, set[str]]:
            out: dict[str, set[str]] = defaultdict(set)
            for r in kube.writes(plural="events", method="POST"):
                out[r.body["involvedObject"]["name"]].add(r.body["reportingInstance"])
            return out

        wait_until(lambda: set(steered()) == set(names), 15, "every Rollout steered")
        time.sleep(2)
        assert all(who == {"replica-a"} for who in steered().values()), steered()
        assert all(apps[1].controller.tick(NS, n) is None for n in names)  # b does not look
        leases = [o["metadata"]["name"] for o in kube.objects(*LEASES)]
        assert leases == [BASE]  # the one Lease of today: no shard or member Leases
        assert kube.get(*LEASES, NS, BASE)["spec"]["holderIdentity"] == "replica-a"
        assert ("coordination.k8s.io", "leases", "list") not in kube.permissions_used()
        used = kube.permissions_used()
        allowed = {
            (rule.api_group, resource, verb)
            for rule in CONTROLLER + LEADER_ELECTION
            for resource in rule.resources
            for verb in rule.verbs
        }
        assert used <= allowed, used - allowed
    finally:
        for app in apps:
            app.stop()
            app.controller.service.close()
    assert shard_lease_name(BASE, 0, 3) not in {
        o["metadata"]["name"] for o in kube.objects(*LEASES)
    }


# --- the command line and the chart --------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--watch", "--shards", "0"], "--shards: give a number between 1 and 256"),
        (["--watch", "--shards", "257"], "--shards: give a number between 1 and 256"),
        (["--shards", "3"], "--shards needs --watch"),
    ],
)
def test_bad_shard_flags_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    config = write_analysis(tmp_path / "a.yaml", example_analysis())
    result = CliRunner(env={"KUBECONFIG": None}).invoke(
        cli_app, ["serve", "--config", str(config), "--port", str(free_port()), *flags]
    )
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())


def _lease_rules(*groups: tuple[Rule, ...]) -> list[dict[str, Any]]:
    return [
        {"apiGroups": [r.api_group], "resources": list(r.resources), "verbs": list(r.verbs)}
        for group in groups
        for r in group
    ]


def test_the_chart_passes_the_shards_and_grants_the_lease_verbs_they_use() -> None:
    postgres = {"type": "postgresql", "postgresql": {"existingSecret": "verdict-db"}}
    objects = template({"replicaCount": 3, "store": postgres, "controller": {"shards": 3}})
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--shards") + 1] == "3"
    assert "--leader-elect" not in args  # the shards' Leases replace the single leader's
    roles = {o["metadata"]["name"]: o["rules"] for o in objects if o["kind"] == "Role"}
    assert roles["verdict-leader-election"] == _lease_rules(LEADER_ELECTION, SHARDS)
    one = template({"controller": {"shards": 2}})  # one pod may hold every shard too
    roles = {o["metadata"]["name"]: o["rules"] for o in one if o["kind"] == "Role"}
    assert roles["verdict-leader-election"] == _lease_rules(LEADER_ELECTION, SHARDS)
    today = template({"replicaCount": 3, "store": postgres})  # shards: 1, as before
    (deployment,) = [o for o in today if o["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--leader-elect" in args and "--shards" not in args
    roles = {o["metadata"]["name"]: o["rules"] for o in today if o["kind"] == "Role"}
    assert roles["verdict-leader-election"] == _lease_rules(LEADER_ELECTION)
    with pytest.raises(HelmError):
        template({"controller": {"shards": 0}})  # the values schema


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()

"""Shards across replicas: each Rollout belongs to one of N shards, each shard to one Lease.

* **Which shard.** `shard_of(namespace, name, shards)`: the first 8 bytes of
  sha256(`namespace/name`) as a number, modulo N. Stable across processes, versions and restarts
  (not Python's `hash`, which changes per process).
* **Who holds it.** Shard `i` of N is the `coordination.k8s.io/v1` Lease
  `<name>-shard-<i>-of-<N>`, taken, renewed and released as the single leader's Lease is
  (`strategies.argo.leader.LeaseElector`: 15 s duration, renewed every 5 s, tried every 2 s; a
  409 means another replica wrote first). A replica steers the Rollouts of the shards it holds,
  and stops the moment a shard's Lease is no longer renewed (15 s after its last renewal, or at
  once on a 409): `holds(i)` reads the time, not a flag set by a thread that may be stuck.
* **Fair shares.** Each replica keeps a member Lease (`<name>-member-<hash of identity>`, holder
  = identity) renewed as the shards are, so every replica counts the live replicas M. With
  lo = ⌊N/M⌋ and hi = ⌈N/M⌉, a replica takes a free shard while it holds fewer than lo, or fewer
  than hi when no replica holds fewer than lo; it gives shards back (down to hi, or to lo while
  another holds fewer than lo). A shard left free for a whole Lease duration is taken by anyone
  (no fair-share arithmetic ever strands a shard). A shard given back is first dropped here (no
  more acting on it), then released on a later pass once no action on its Rollouts is being
  sent (`busy`), at most one Lease duration later.
* **A replica that dies.** Its member and shard Leases are no longer renewed: 15 s after the last
  renewal the others see them free and the replicas under their new fair share take them at their
  next try (2 s): the Rollouts of a dead replica are steered again within 15 + 2 s, plus the new
  holder's look (`ControllerApp` makes the new holder finish the actions the old one left pending
  in the action journal first, then look at once).
* **Changing N.** Leases of another layout (another N, or the single leader's Lease `<name>`)
  that are still held keep this layout from acting: the layout that has held its Leases longest
  acts, the other waits until those Leases are released or expire (e.g. during a rolling update
  from `--shards 3` to `--shards 5`, or from `--leader-elect` to `--shards`). Leases of replicas
  and layouts gone for ten Lease durations are deleted.

Verbs: `strategies.kube.permissions.LEADER_ELECTION` (get, create, update) and `SHARDS` (list,
delete).
"""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from strategies.argo.leader import LeaseElector

_log = structlog.get_logger()

CONTROLLER_LABEL = "verdict.dev/controller"
"""On every Lease of the shards: the base Lease name (`--lease-name`, `verdict-controller`)."""
SHARDS_LABEL = "verdict.dev/shards"
"""The number of shards of the layout the Lease belongs to."""
ROLE_LABEL = "verdict.dev/lease"
"""`shard` or `member`."""
_CLEANUP_EVERY = 4
"""Lease durations between two looks for Leases to delete (60 s)."""
_GONE_AFTER = 10
"""Lease durations after which a Lease no longer held (of a member, or of another layout) is
deleted (150 s)."""


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard (0 … shards - 1) of the Rollout `namespace/name`."""
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_lease_name(base: str, index: int, shards: int) -> str:
    return f"{base}-shard-{index}-of-{shards}"


def member_lease_name(base: str, identity: str) -> str:
    return f"{base}-member-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class _Seen:
    """A Lease of the controller as listed."""

    name: str
    role: str
    shards: int
    holder: str
    held_for: float
    """Seconds since it was acquired (0 when not held)."""
    expired_for: float
    """Seconds since it expired or was released; 0 while held."""
    version: str

    @property
    def live(self) -> bool:
        return bool(self.holder) and self.expired_for == 0


def _seen(lease: Any, now: datetime, default_duration: float) -> _Seen:
    meta = lease.metadata
    labels = meta.labels or {}
    spec = lease.spec
    holder = (spec.holder_identity if spec is not None else None) or ""
    renewed = spec.renew_time or spec.acquire_time if spec is not None else None
    duration = float((spec.lease_duration_seconds if spec is not None else None) or 0)
    duration = duration or default_duration
    if renewed is None:
        expired_for = float("inf")
    else:
        expired_for = max(0.0, (now - renewed).total_seconds() - duration)
    if not holder:
        expired_for = max(expired_for, 1e-9)
    acquired = spec.acquire_time if spec is not None else None
    held_for = (now - acquired).total_seconds() if holder and acquired is not None else 0.0
    try:
        shards = int(labels.get(SHARDS_LABEL, "1"))
    except ValueError:
        shards = 0
    return _Seen(
        name=meta.name,
        role=labels.get(ROLE_LABEL, "shard"),
        shards=shards,
        holder=holder,
        held_for=held_for,
        expired_for=expired_for,
        version=str(meta.resource_version or ""),
    )


class ShardLeases:
    """Hold a fair share of the N shard Leases (module docstring). `on_gain(i)` / `on_loss(i)`
    are called from the Lease thread when shard `i` is taken / let go (keep them short);
    `busy(i)`: whether an action on a Rollout of shard `i` is being sent (then its release
    waits)."""

    def __init__(
        self,
        api_client: Any,
        *,
        name: str,
        namespace: str,
        identity: str,
        shards: int,
        duration: float = 15.0,
        renew: float = 5.0,
        retry: float = 2.0,
        on_gain: Callable[[int], None] | None = None,
        on_loss: Callable[[int], None] | None = None,
        busy: Callable[[int], bool] | None = None,
    ) -> None:
        from kubernetes import client

        if shards < 1:
            raise ValueError("shards must be at least 1")
        self._api = client.CoordinationV1Api(api_client)
        self._client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.shards = shards
        self.duration = duration
        self.renew = renew
        self.retry = retry
        self._on_gain = on_gain
        self._on_loss = on_loss
        self._busy = busy or (lambda index: False)
        labels = {CONTROLLER_LABEL: name, SHARDS_LABEL: str(shards)}
        self._electors = [
            LeaseElector(
                api_client,
                name=shard_lease_name(name, i, shards),
                namespace=namespace,
                identity=identity,
                duration=duration,
                renew=renew,
                retry=retry,
                on_change=functools.partial(self._changed, i),
                labels={**labels, ROLE_LABEL: "shard"},
            )
            for i in range(shards)
        ]
        self._member = LeaseElector(
            api_client,
            name=member_lease_name(name, identity),
            namespace=namespace,
            identity=identity,
            duration=duration,
            renew=renew,
            retry=retry,
            labels={**labels, ROLE_LABEL: "member"},
        )
        self._lock = threading.Lock()
        self._leaving: dict[int, float] = {}  # shard -> when it was given back (monotonic)
        self._free_since: dict[int, float] = {}  # shard -> first seen free (monotonic)
        self._said: tuple[tuple[int, ...], int, bool] | None = None
        # shard -> the holding of its Lease (`LeaseElector.term`) `on_gain` was called for (and
        # not `on_loss` since): a shard counts as held only for a holding that was told
        self._told: dict[int, int] = {}
        self._cleaned = 0.0
        # the replicas' order of trying free shards differs, so they rarely race for one
        self._offset = int(hashlib.sha256(identity.encode()).hexdigest(), 16) % shards
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- what this replica holds (any thread) ------------------------------------------------

    def holds(self, index: int) -> bool:
        """Whether this replica steers shard `index` now: its Lease renewed less than a Lease
        duration ago, that holding told (`on_gain` returned), and not given back."""
        term = self._electors[index].term()
        with self._lock:
            return term is not None and self._told.get(index) == term and index not in self._leaving

    def holds_rollout(self, namespace: str, name: str) -> bool:
        return self.holds(shard_of(namespace, name, self.shards))

    def held(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.shards) if self.holds(i))

    # --- life -----------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="verdict-shards", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop taking and renewing shards; with `release`, clear their Leases (and delete the
        member Lease) so the other replicas take them at their next try. Without: as a replica
        that dies, the Leases expire 15 s after their last renewal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if not release:
            return
        with self._lock:
            self._leaving.clear()
        for elector in self._electors:
            elector.release()
        try:
            self._api.delete_namespaced_lease(self._member.name, self.namespace)
        except Exception:
            self._member.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_once()
            except Exception as error:  # the API server is down: keep trying, step down in time
                _log.warning("shard leases not renewed", error=str(error)[:300])
                self._tell_expiries()
            self._stop.wait(self.retry)

    # --- one pass ---------------------------------------------------------------------------

    def try_once(self) -> tuple[int, ...]:
        """Renew, give back, release and take shards once; return the shards held after."""
        self._tell_expiries()  # a shard that expired is told lost before it can be taken again
        # the member Lease is renewed first, and every shard held with it: a replica that dies
        # is no longer counted by the time its shards are free, so the others take them at once
        renew_all = self._due(self._member)
        if renew_all:
            self._member.try_once()
        for elector in self._electors:  # renew what is held (or being given back)
            if elector.is_leader() and (renew_all or self._due(elector)):
                elector.try_once()
        now = datetime.now(UTC)
        listed = self._api.list_namespaced_lease(
            self.namespace, label_selector=f"{CONTROLLER_LABEL}={self.name}"
        )
        seen = [_seen(lease, now, self.duration) for lease in listed.items or []]
        single = self._single_leader(now)
        if single is not None:
            seen.append(single)
        self._release_given_back()
        waiting = self._other_layout_acts(seen)
        mine = [i for i in range(self.shards) if self.holds(i)]
        if waiting:
            self._give_back(mine)
        else:
            self._share(seen, mine)
        if time.monotonic() - self._cleaned >= self.duration * _CLEANUP_EVERY:
            self._cleaned = time.monotonic()
            self._clean(seen)
        self._tell_expiries()
        held = self.held()
        members = len(self._members(seen))
        said = (held, members, bool(waiting))
        if said != self._said:
            self._said = said
            _log.info(
                "shards held",
                shards=list(held),
                of=self.shards,
                replicas=members,
                waiting_for=waiting or None,
                identity=self.identity,
            )
        return held

    def _due(self, elector: LeaseElector) -> bool:
        ago = elector.renewed_ago()
        return ago is None or ago >= self.renew

    def _single_leader(self, now: datetime) -> _Seen | None:
        """The single leader's Lease (`--leader-elect` without shards), when it exists."""
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        found = _seen(lease, now, self.duration)
        return _Seen(found.name, "shard", 1, found.holder, found.held_for, found.expired_for, "")

    def _members(self, seen: Iterable[_Seen]) -> set[str]:
        alive = {
            s.holder for s in seen if s.role == "member" and s.shards == self.shards and s.live
        }
        return alive | {self.identity}

    def _other_layout_acts(self, seen: list[_Seen]) -> str:
        """The Leases of another layout that are held, when that layout has held its Leases
        longer than this one (then this one waits); "" when this layout may act."""
        layouts: dict[int, float] = {}
        for s in seen:
            if s.role == "shard" and s.live:
                layouts[s.shards] = max(layouts.get(s.shards, 0.0), s.held_for)
        others = {n: held for n, held in layouts.items() if n != self.shards}
        if not others:
            return ""
        ours = layouts.get(self.shards, 0.0)
        # the longest-held layout acts; ties go to the smaller shard count
        first = max(layouts.items(), key=lambda item: (item[1], -item[0]))[0]
        if first == self.shards:
            return ""
        names = sorted(
            s.name for s in seen if s.role == "shard" and s.live and s.shards != self.shards
        )
        _log.debug("another layout acts", held_for=others, ours=ours)
        return ", ".join(names)

    def _share(self, seen: list[_Seen], mine: list[int]) -> None:
        members = self._members(seen)
        lo, hi = self.shards // len(members), -(-self.shards // len(members))
        holders: dict[int, str] = {}
        for s in seen:
            if s.role == "shard" and s.shards == self.shards and s.live:
                index = _index_of(s.name, self.name, self.shards)
                if index is not None:
                    holders[index] = s.holder
        counts = {member: 0 for member in members}
        for holder in holders.values():
            if holder in counts:
                counts[holder] += 1
        hungry = any(n < lo for member, n in counts.items() if member != self.identity)
        extra = max(0, len(mine) - hi)
        if hungry:  # enough for the replicas under their share, at most down to lo
            need = sum(lo - n for member, n in counts.items() if member != self.identity and n < lo)
            extra = max(extra, min(len(mine) - lo, need))
        if extra > 0:  # give back the highest shards first
            self._give_back(sorted(mine, reverse=True)[:extra])
            return
        clock = time.monotonic()
        free = [
            i for i in range(self.shards) if i not in holders and not self._electors[i].is_leader()
        ]
        with self._lock:
            leaving = set(self._leaving)
            for i in list(self._free_since):
                if i not in free:
                    del self._free_since[i]
            for i in free:
                self._free_since.setdefault(i, clock)
        held = len(mine)
        order = sorted(free, key=lambda i: (i - self._offset) % self.shards)
        for i in order:
            if i in leaving:
                continue
            stranded = clock - self._free_since.get(i, clock) >= self.duration
            if not (held < lo or (held < hi and not hungry) or stranded):
                continue
            if self._electors[i].try_once():
                held += 1

    def _give_back(self, shards: Iterable[int]) -> None:
        with self._lock:
            for i in shards:
                if i not in self._leaving:
                    self._leaving[i] = time.monotonic()
                    _log.info("shard given back; released once its actions end", shard=i)

    def _release_given_back(self) -> None:
        clock = time.monotonic()
        with self._lock:
            leaving = dict(self._leaving)
        for i, since in leaving.items():
            waited = clock - since
            if waited < self.retry * 0.9 or (self._busy(i) and waited < self.duration):
                continue
            self._electors[i].release()
            with self._lock:
                self._leaving.pop(i, None)

    def _clean(self, seen: list[_Seen]) -> None:
        """Delete the Leases of replicas and layouts gone for a while."""
        gone = self.duration * _GONE_AFTER
        for s in seen:
            ours = s.role == "shard" and s.shards == self.shards
            if ours or s.version == "" or s.expired_for < gone:
                continue
            options = self._client.V1DeleteOptions(
                preconditions=self._client.V1Preconditions(resource_version=s.version)
            )
            try:
                self._api.delete_namespaced_lease(s.name, self.namespace, body=options)
                _log.info("lease of a replica or layout gone deleted", lease=s.name)
            except Exception as error:
                _log.debug("lease not deleted", lease=s.name, error=str(error)[:200])

    def _changed(self, index: int, held: bool) -> None:
        """A shard's Lease was taken or let go (called by its elector when it writes). A shard
        taken counts as held once `on_gain` has returned: `on_gain` comes first."""
        if held:
            term = self._electors[index].term()
            with self._lock:
                lapsed = index in self._told  # taken again before its lapse was told
            if lapsed:
                self._changed(index, False)
            if term is None:
                return
            if self._on_gain is not None:
                self._on_gain(index)
            with self._lock:
                self._told[index] = term
            return
        with self._lock:
            if self._told.pop(index, None) is None:
                return
        if self._on_loss is not None:
            self._on_loss(index)

    def _tell_expiries(self) -> None:
        """`on_loss` for the shards whose Lease expired without a write (not renewed in time)."""
        with self._lock:
            told = dict(self._told)
        for i, term in sorted(told.items()):
            if self._electors[i].term() != term:
                self._changed(i, False)


def _index_of(lease: str, base: str, shards: int) -> int | None:
    prefix, suffix = f"{base}-shard-", f"-of-{shards}"
    if not (lease.startswith(prefix) and lease.endswith(suffix)):
        return None
    middle = lease[len(prefix) : len(lease) - len(suffix)]
    return int(middle) if middle.isdigit() and int(middle) < shards else None

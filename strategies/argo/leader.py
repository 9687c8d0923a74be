"""Leader election with a `coordination.k8s.io/v1` Lease: one replica acts, the others wait.

The holder renews the Lease every `renew` seconds (5 s); it is the leader while its last renewal
is younger than `duration` (15 s). The others try every `retry` seconds (2 s) and take the Lease
over when its holder has not renewed it for `duration`. A replica that stops releases the Lease
(holder cleared), so another takes over at its next try. Writes use the Lease's
resourceVersion: two replicas racing for it cannot both win (the loser gets 409). The holder
counts its 15 s from the moment it read the clock it wrote into the Lease (before sending), so
it steps down no later than the others may take over. `strategies.argo.shards` holds many such
Leases (one per shard) with this class. Verbs: get, create, update
(`strategies.kube.permissions.LEADER_ELECTION`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

_log = structlog.get_logger()


class LeaseElector:
    def __init__(
        self,
        api_client: Any,
        *,
        name: str,
        namespace: str,
        identity: str,
        duration: float = 15.0,
        renew: float = 5.0,
        retry: float = 2.0,
        on_change: Callable[[bool], None] | None = None,
        labels: dict[str, str] | None = None,
    ) -> None:
        """`labels`: put on the Lease (when created, and when missing on a Lease written)."""
        from kubernetes import client

        self._api = client.CoordinationV1Api(api_client)
        self._client = client
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.duration = duration
        self.renew = renew
        self.retry = retry
        self._on_change = on_change
        self.labels = dict(labels or {})
        self._renewed_at: float | None = None  # monotonic time of our last successful renewal
        self._term = 0  # times this replica took the Lease (each start of holding it)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def is_leader(self) -> bool:
        with self._lock:
            return (
                self._renewed_at is not None and time.monotonic() - self._renewed_at < self.duration
            )

    def term(self) -> int | None:
        """Which holding of the Lease this is (it grows each time this replica takes it), or
        None when it does not hold it: a holding that lapsed and was taken again is another."""
        with self._lock:
            held = (
                self._renewed_at is not None and time.monotonic() - self._renewed_at < self.duration
            )
            return self._term if held else None

    def renewed_ago(self) -> float | None:
        """Seconds since this replica last took or renewed the Lease (None: never, or let go)."""
        with self._lock:
            return None if self._renewed_at is None else time.monotonic() - self._renewed_at

    def release(self) -> None:
        """Stop holding the Lease now, and clear its holder so another replica takes it at once."""
        held = self.is_leader()
        self._set(None)
        if held:
            self._release()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="verdict-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.is_leader():
            self._release()
        self._set(None)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_once()
            except Exception as error:  # the API server is down: keep trying, step down in time
                _log.warning("lease not renewed", lease=self.name, error=str(error)[:300])
                self._set(self._renewed_at)
            self._stop.wait(self.renew if self.is_leader() else self.retry)

    def try_once(self) -> bool:
        """Acquire or renew the Lease once; return whether this replica holds it."""
        from kubernetes.client.exceptions import ApiException

        started = time.monotonic()  # the Lease says `now`: count from no later than that
        now = datetime.now(UTC)
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            return self._create(now, started)
        spec = lease.spec or self._client.V1LeaseSpec()
        holder = spec.holder_identity or ""
        renewed = spec.renew_time or spec.acquire_time
        duration = float(spec.lease_duration_seconds or self.duration)
        if holder == self.identity:
            spec.renew_time = now
        elif holder and renewed is not None and now - renewed < timedelta(seconds=duration):
            self._set(None)
            return False
        else:
            spec.holder_identity = self.identity
            spec.acquire_time = now
            spec.renew_time = now
            spec.lease_duration_seconds = int(self.duration)
            spec.lease_transitions = int(spec.lease_transitions or 0) + 1
        lease.spec = spec
        if self.labels and lease.metadata is not None:
            lease.metadata.labels = {**(lease.metadata.labels or {}), **self.labels}
        try:
            self._api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as error:
            if error.status == 409:  # another replica wrote first
                self._set(None)
                return False
            raise
        self._set(started)
        return True

    def _create(self, now: datetime, started: float) -> bool:
        from kubernetes.client.exceptions import ApiException

        lease = self._client.V1Lease(
            metadata=self._client.V1ObjectMeta(
                name=self.name, namespace=self.namespace, labels=self.labels or None
            ),
            spec=self._client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=int(self.duration),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self._api.create_namespaced_lease(self.namespace, lease)
        except ApiException as error:
            if error.status == 409:
                self._set(None)
                return False
            raise
        self._set(started)
        return True

    def _release(self) -> None:
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec and lease.spec.holder_identity == self.identity:
                lease.spec.holder_identity = None
                lease.spec.renew_time = None
                self._api.replace_namespaced_lease(self.name, self.namespace, lease)
                _log.info("lease released", lease=self.name, identity=self.identity)
        except Exception as error:
            _log.warning("lease not released", lease=self.name, error=str(error)[:300])

    def _set(self, renewed_at: float | None) -> None:
        with self._lock:
            was = (
                self._renewed_at is not None and time.monotonic() - self._renewed_at < self.duration
            )
            self._renewed_at = renewed_at
            now = renewed_at is not None and time.monotonic() - renewed_at < self.duration
            if now and not was:
                self._term += 1
        if was != now:
            _log.info("leadership changed", leader=now, identity=self.identity, lease=self.name)
            if self._on_change is not None:
                self._on_change(now)

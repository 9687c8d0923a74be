"""Controller mode wired for `verdict serve --watch`: the watch, the controller, the elector or
the shards' Leases.

With `shards` > 1 (`--shards`), every replica watches every Rollout but steers only those of the
shards it holds (`strategies.argo.shards`). When it takes a shard it first finishes or drops the
actions the shard's previous holder left pending in the action journal, and only then looks at
the shard's Rollouts (at once, not at their next interval), so no action is sent twice across
the hand-over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from analyzer.clock import Clock
from analyzer.runs import RunService
from strategies.argo.controller import Controller, ControllerSettings, default_identity
from strategies.argo.gate import HASH_LABEL, RolloutHealth
from strategies.argo.leader import LeaseElector
from strategies.argo.rollouts import ArgoRollouts
from strategies.argo.shards import ShardLeases, shard_of
from strategies.argo.telemetry import ControllerTelemetry
from strategies.argo.watch import RolloutWatch
from strategies.kube.pod_watch import PodWatch

_log = structlog.get_logger()


@dataclass(frozen=True)
class ControllerOptions:
    namespaces: tuple[str, ...] = ()
    """Namespaces to watch; empty: all."""
    leader_elect: bool = False
    lease_name: str = "verdict-controller"
    lease_namespace: str = "default"
    identity: str = field(default_factory=default_identity)
    lease_duration: float = 15.0
    lease_renew: float = 5.0
    lease_retry: float = 2.0
    watch_pods: bool = True
    """Keep the Rollouts' pods from a watch (`watch` on pods) instead of listing them at every
    look; a look lists them while the watch does not run."""
    shards: int = 1
    """Shards of the Rollouts, each held by a Lease, shared fairly by the replicas; 1: one
    leader for all (with `leader_elect`) or no Lease at all."""
    settings: ControllerSettings = field(default_factory=ControllerSettings)


class ControllerApp:
    """Starts and stops the controller's parts; `readiness` reports the watch for `/readyz`."""

    def __init__(
        self, api_client: Any, service: RunService, clock: Clock, options: ControllerOptions
    ) -> None:
        self.options = options
        self.telemetry = ControllerTelemetry(service.telemetry.registry)
        self.elector: LeaseElector | None = None
        self.shards: ShardLeases | None = None
        self._shard_lock = threading.Lock()
        self._generation: dict[int, int] = {}  # shard -> times taken (a take-over per time)
        self._ready: set[int] = set()  # shards taken over: their journal read
        if options.shards > 1:
            self.shards = ShardLeases(
                api_client,
                name=options.lease_name,
                namespace=options.lease_namespace,
                identity=options.identity,
                shards=options.shards,
                duration=options.lease_duration,
                renew=options.lease_renew,
                retry=options.lease_retry,
                on_gain=self._gained,
                on_loss=self._lost,
                busy=lambda index: self.controller.acting(self._of(index)),
            )
        elif options.leader_elect:
            self.elector = LeaseElector(
                api_client,
                name=options.lease_name,
                namespace=options.lease_namespace,
                identity=options.identity,
                duration=options.lease_duration,
                renew=options.lease_renew,
                retry=options.lease_retry,
                on_change=self._leadership,
            )
        self.pods = (
            PodWatch(api_client, label=HASH_LABEL, namespaces=options.namespaces)
            if options.watch_pods
            else None
        )
        self.controller = Controller(
            service=service,
            actuator=ArgoRollouts(api_client, instance=options.identity),
            clock=clock,
            telemetry=self.telemetry,
            settings=options.settings,
            is_leader=self.elector.is_leader if self.elector else (lambda: True),
            health=RolloutHealth(api_client, watched=self.pods),
            owns=self.shards.holds_rollout if self.shards else None,
            ready=self._shard_ready if self.shards else None,
        )
        self.watch = RolloutWatch(
            api_client,
            namespaces=options.namespaces,
            on_change=self.controller.observe,
            on_delete=self.controller.forget,
        )

    def start(self) -> None:
        self.controller.start()
        if self.shards is not None:
            self.telemetry.leader.set(0)
            self.shards.start()
        elif self.elector is not None:
            self.telemetry.leader.set(0)
            self.elector.start()
        else:
            self._leadership(True)
        if self.pods is not None:
            self.pods.start()
        self.watch.start()
        _log.info(
            "controller started",
            namespaces=list(self.options.namespaces) or "all",
            leader_election=self.options.leader_elect,
            shards=self.options.shards,
            identity=self.options.identity,
        )

    def stop(self) -> None:
        self.watch.stop()
        self.controller.stop()
        if self.pods is not None:
            self.pods.stop()
        if self.elector is not None:
            self.elector.stop()
        if self.shards is not None:
            self.shards.stop()

    def readiness(self) -> dict[str, str]:
        return self.watch.health()

    def _leadership(self, leader: bool) -> None:
        self.telemetry.leader.set(1 if leader else 0)
        if leader:  # finish what a previous leader (or this process, killed) left pending
            threading.Thread(target=self.controller.recover, daemon=True).start()

    # --- shards ------------------------------------------------------------------------------

    def _of(self, index: int) -> Callable[[str, str], bool]:
        shards = self.options.shards
        return lambda namespace, name: shard_of(namespace, name, shards) == index

    def _shard_ready(self, namespace: str, name: str) -> bool:
        """Whether ticks may act on the Rollout: its shard taken over (the journal read)."""
        index = shard_of(namespace, name, self.options.shards)
        with self._shard_lock:
            return index in self._ready

    def _gained(self, index: int) -> None:
        with self._shard_lock:
            generation = self._generation.get(index, 0) + 1
            self._generation[index] = generation
            self._ready.discard(index)  # no tick acts on it before its journal is read
        self.telemetry.leader.set(1)
        threading.Thread(
            target=self._take_over, args=(index, generation),
            name=f"verdict-shard-{index}", daemon=True,
        ).start()  # fmt: skip

    def _take_over(self, index: int, generation: int) -> None:
        """Read the journal for the shard's Rollouts (finish or drop what is pending), then
        look at them; tried again while the shard is held and the store cannot be read."""
        assert self.shards is not None
        told = time.monotonic() + self.options.lease_retry
        while not self.shards.holds(index):  # held once the Lease thread is back from `_gained`
            if time.monotonic() > told:
                return
            time.sleep(0.01)
        while self.shards.holds(index):
            with self._shard_lock:
                if self._generation.get(index) != generation:
                    return  # let go and taken again since: that take-over does it
            try:
                pending = self.controller.recover(
                    lambda record: (
                        shard_of(record.namespace, record.rollout, self.options.shards) == index
                    )
                )
            except Exception as error:
                _log.error(
                    "shard not taken over; trying again", shard=index, error=str(error)[:300]
                )
                time.sleep(self.options.lease_retry)
                continue
            with self._shard_lock:
                if self._generation.get(index) != generation:
                    return
                self._ready.add(index)
            self.controller.look_now(self._of(index))
            _log.info("shard taken over", shard=index, pending_actions=pending)
            return

    def _lost(self, index: int) -> None:
        assert self.shards is not None
        with self._shard_lock:
            self._ready.discard(index)
        self.telemetry.leader.set(1 if self.shards.held() else 0)
        _log.info("shard lost", shard=index)

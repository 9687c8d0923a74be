"""Controller mode wired for `verdict serve --watch`: the watch, the controller, the elector."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import structlog

from analyzer.clock import Clock
from analyzer.runs import RunService
from strategies.argo.controller import Controller, ControllerSettings, default_identity
from strategies.argo.gate import RolloutHealth
from strategies.argo.leader import LeaseElector
from strategies.argo.rollouts import ArgoRollouts
from strategies.argo.telemetry import ControllerTelemetry
from strategies.argo.watch import RolloutWatch

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
    settings: ControllerSettings = field(default_factory=ControllerSettings)


class ControllerApp:
    """Starts and stops the controller's parts; `readiness` reports the watch for `/readyz`."""

    def __init__(
        self, api_client: Any, service: RunService, clock: Clock, options: ControllerOptions
    ) -> None:
        self.options = options
        self.telemetry = ControllerTelemetry(service.telemetry.registry)
        self.elector: LeaseElector | None = None
        if options.leader_elect:
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
        self.controller = Controller(
            service=service,
            actuator=ArgoRollouts(api_client, instance=options.identity),
            clock=clock,
            telemetry=self.telemetry,
            settings=options.settings,
            is_leader=self.elector.is_leader if self.elector else (lambda: True),
            health=RolloutHealth(api_client),
        )
        self.watch = RolloutWatch(
            api_client,
            namespaces=options.namespaces,
            on_change=self.controller.observe,
            on_delete=self.controller.forget,
        )

    def start(self) -> None:
        self.controller.start()
        if self.elector is not None:
            self.telemetry.leader.set(0)
            self.elector.start()
        else:
            self._leadership(True)
        self.watch.start()
        _log.info(
            "controller started",
            namespaces=list(self.options.namespaces) or "all",
            leader_election=self.options.leader_elect,
            identity=self.options.identity,
        )

    def stop(self) -> None:
        self.watch.stop()
        self.controller.stop()
        if self.elector is not None:
            self.elector.stop()

    def readiness(self) -> dict[str, str]:
        return self.watch.health()

    def _leadership(self, leader: bool) -> None:
        self.telemetry.leader.set(1 if leader else 0)
        if leader:  # finish what a previous leader (or this process, killed) left pending
            threading.Thread(target=self.controller.recover, daemon=True).start()

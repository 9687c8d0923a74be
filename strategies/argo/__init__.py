"""Controller mode: watch Argo Rollouts and promote, pause or abort them on the analysis' verdict.

`decide` (pure) turns a verdict and a Rollout's status into an action; `Controller` schedules a
job per updating Rollout and acts exactly once per decision; `RolloutWatch` finds the Rollouts;
`LeaseElector` lets one replica act, `ShardLeases` splits the Rollouts across replicas (a Lease
per shard, `shard_of`); `ControllerApp` wires them for `verdict serve --watch`.
"""

from strategies.argo.app import ControllerApp, ControllerOptions
from strategies.argo.controller import Controller, ControllerSettings, default_identity
from strategies.argo.decide import (
    ANALYSIS_ANNOTATION,
    STATUS_ANNOTATION,
    Action,
    Decision,
    Policy,
    RolloutView,
    decide,
    rollout_view,
)
from strategies.argo.leader import LeaseElector
from strategies.argo.shards import ShardLeases, shard_of
from strategies.argo.telemetry import ControllerTelemetry
from strategies.argo.watch import RolloutWatch

__all__ = [
    "ANALYSIS_ANNOTATION",
    "STATUS_ANNOTATION",
    "Action",
    "Controller",
    "ControllerApp",
    "ControllerOptions",
    "ControllerSettings",
    "ControllerTelemetry",
    "Decision",
    "LeaseElector",
    "Policy",
    "RolloutView",
    "RolloutWatch",
    "ShardLeases",
    "decide",
    "default_identity",
    "rollout_view",
    "shard_of",
]

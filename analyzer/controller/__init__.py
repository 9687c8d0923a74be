"""Controller mode: watch Argo Rollouts and promote, pause or abort them on the analysis' verdict.

`decide` (pure) turns a verdict and a Rollout's status into an action; `Controller` schedules a
job per updating Rollout and acts exactly once per decision; `RolloutWatch` finds the Rollouts;
`LeaseElector` lets one replica act; `ControllerApp` wires them for `verdict serve --watch`.
"""

from analyzer.controller.app import ControllerApp, ControllerOptions
from analyzer.controller.controller import Controller, ControllerSettings, default_identity
from analyzer.controller.decide import (
    ANALYSIS_ANNOTATION,
    STATUS_ANNOTATION,
    Action,
    Decision,
    Policy,
    RolloutView,
    decide,
    rollout_view,
)
from analyzer.controller.leader import LeaseElector
from analyzer.controller.telemetry import ControllerTelemetry
from analyzer.controller.watch import RolloutWatch

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
    "decide",
    "default_identity",
    "rollout_view",
]

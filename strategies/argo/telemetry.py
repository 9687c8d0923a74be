"""The controller's own metrics, in the web provider's registry (one `/metrics`).

* `verdict_controller_actions_total{kind,outcome}`: actions on Rollouts by kind (promote, pause,
  abort) and outcome (sent; already: the Rollout showed it; dropped: no longer wanted; per try
  that failed and is tried again: conflict, a 409; error, any other error or no answer in time;
  failed: did not land before the action deadline);
* `verdict_controller_leader`: 1 while this replica acts (holds the Lease, or no election), else 0;
* `verdict_controller_rollouts`: updating Rollouts with a job.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ControllerTelemetry:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "verdict_controller_actions_total",
            "Actions on Argo Rollouts, by kind and outcome.",
            ["kind", "outcome"],
            registry=registry,
        )
        self.leader = Gauge(
            "verdict_controller_leader",
            "1 while this replica is the one that acts, else 0.",
            registry=registry,
        )
        self.jobs = Gauge(
            "verdict_controller_rollouts",
            "Updating Rollouts this replica has a job for.",
            registry=registry,
        )

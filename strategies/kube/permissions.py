"""The one list of Kubernetes API permissions Verdict uses.

Every call Verdict makes to the Kubernetes API is covered by a rule here, grouped by the
feature that needs it. The Helm chart's RBAC is rendered from this list (see
``charts/verdict``) and the chart tests compare the rendered rules with it, so the two
cannot drift. Print it with ``python -m strategies.kube.permissions``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """One RBAC rule: verbs on resources of one API group ("" is the core group)."""

    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


# Controller mode: watch Argo Rollouts, promote / pause (main resource) and abort /
# promote (the /status subresource), and record each decision as an Event; the health gate
# reads the new version's pods (kept from a watch, listed while it does not run), their Events
# and the Argo CD Application (`argoproj.io` applications; a Role here covers an Application
# kept in a namespace Verdict acts in).
CONTROLLER: tuple[Rule, ...] = (
    Rule("argoproj.io", ("rollouts",), ("get", "list", "watch", "patch")),
    Rule("argoproj.io", ("rollouts/status",), ("get", "patch")),
    Rule("argoproj.io", ("applications",), ("get",)),
    Rule("", ("pods",), ("list", "watch")),
    Rule("", ("events",), ("create", "patch", "list", "watch")),
)

# Leader election between replicas (coordination.k8s.io/v1 Lease).
LEADER_ELECTION: tuple[Rule, ...] = (
    Rule("coordination.k8s.io", ("leases",), ("get", "create", "update")),
)

# Shards across replicas (`--shards`): each replica lists the Leases of the shards and of the
# replicas, and deletes its own member Lease when it stops (and those of replicas long gone).
SHARDS: tuple[Rule, ...] = (Rule("coordination.k8s.io", ("leases",), ("list", "delete")),)

# Standalone strategies: Istio VirtualService weights (canary), Service selectors
# (blue/green), Deployments and their ReplicaSets (rolling), the health gate (all three: pods,
# their Events, the Argo CD Application when the analysis names one).
STRATEGIES: tuple[Rule, ...] = (
    Rule("networking.istio.io", ("virtualservices",), ("get", "list", "watch", "patch")),
    Rule("", ("services",), ("get", "patch")),
    Rule("apps", ("deployments",), ("get", "list", "watch", "patch")),
    Rule("apps", ("replicasets",), ("get", "list")),
    Rule("", ("pods",), ("get", "list", "watch")),
    Rule("", ("events",), ("create", "patch", "list", "watch")),
    Rule("argoproj.io", ("applications",), ("get",)),
)

GROUPS: dict[str, tuple[Rule, ...]] = {
    "controller": CONTROLLER,
    "leaderElection": LEADER_ELECTION,
    "shards": SHARDS,
    "strategies": STRATEGIES,
}


def as_json() -> str:
    """The rule groups as JSON (``{"controller": [{"apiGroup", "resources", "verbs"}], ...}``)."""
    return json.dumps(
        {
            name: [
                {"apiGroup": r.api_group, "resources": list(r.resources), "verbs": list(r.verbs)}
                for r in rules
            ]
            for name, rules in GROUPS.items()
        },
        indent=2,
    )


def main() -> None:
    sys.stdout.write(as_json() + "\n")


if __name__ == "__main__":
    main()

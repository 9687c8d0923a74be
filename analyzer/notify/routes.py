"""Who hears which kind of decision: the default routes of the `notifications:` entries.

Each notification target reaches an **audience** (its `audience:`; without one, Slack and
webhooks reach the team that ships, PagerDuty the engineer on call). A target that names no
`on:` hears the kinds of decision `DEFAULT_ROUTES` sends to its audience: the product brief's
operating rules (image pull → the team, readiness → on call, resources → the platform team, a
failed sync → the commit's author), shipped as configuration. A target's `on:` (outcomes)
replaces its audience's route.

The team that ships hears every kind (it is its rollout); on call hears every failure (so
PagerDuty, without `on:`, pages on `TRIGGERS` and resolves on a promotion); the platform team
hears only what its platform causes (pods Pending for resources, an incident both versions
share); the author of the commit hears what Argo CD says of the sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from analyzer.notify.events import OUTCOMES

AUDIENCES = ("team", "on-call", "platform", "author")
"""Who a target reaches: the team that ships, the engineer on call, the platform team, the
author of the Git commit being deployed."""

KINDS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "metric-fail": ("fail", "aborted", "abort-failed", "rolled-back", "switched-back"),
        "image-pull": ("image-pull", "crash-loop", "config-error"),
        "readiness": ("readiness", "restarts", "degraded"),
        "pending": ("pending",),
        "sync-failure": ("sync-failed",),
        "out-of-sync": ("out-of-sync",),
        "shared-incident": ("shared-incident",),
        "promotion": ("promoted", "pass"),
        "rollback-verified": ("rollback-verified",),
        "rollback-not-recovered": ("rollback-not-recovered",),
        "progress": ("paused", "resumed", "interrupted"),
    }
)
"""Each kind of decision and its outcomes (`analyzer.notify.events.OUTCOMES`, each in one kind)."""

DEFAULT_ROUTES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "metric-fail": ("team", "on-call"),
        "image-pull": ("team", "on-call"),
        "readiness": ("team", "on-call"),
        "pending": ("team", "platform"),
        "sync-failure": ("team", "on-call", "author"),
        "out-of-sync": ("team", "author"),
        "shared-incident": ("team", "platform"),
        "promotion": ("team", "on-call"),
        "rollback-verified": ("team",),
        "rollback-not-recovered": ("team", "on-call"),
        "progress": ("team",),
    }
)
"""The shipped routes: each kind of decision and the audiences that hear it when their target
names no `on:` (the README's "Who hears what")."""


def default_audience(target_type: str) -> str:
    """The audience of a target that names none: PagerDuty pages on call, the others the team."""
    return "on-call" if target_type == "pagerduty" else "team"


def routed_outcomes(
    audience: str, routes: Mapping[str, tuple[str, ...]] = DEFAULT_ROUTES
) -> frozenset[str] | None:
    """The outcomes `routes` send to `audience`; None when that is every outcome (the target
    then hears every decision, outcomes added later included)."""
    outcomes = frozenset(
        outcome
        for kind, audiences in routes.items()
        if audience in audiences
        for outcome in KINDS[kind]
    )
    return None if outcomes >= frozenset(OUTCOMES) else outcomes

"""The named errors of the standalone strategies' Kubernetes parts (callers match on these)."""

from __future__ import annotations

from typing import Any


class KubeUnreachable(Exception):
    """The Kubernetes API did not answer (or answered a server error)."""


class RouterError(Exception):
    """The VirtualService cannot be routed as configured (missing, no such route, ...)."""


class TrafficChanged(RouterError):
    """Someone else changed the route's weights during the run."""


class PodsUnhealthy(Exception):
    """The new version failed the health gate (its pods, or its Argo CD Application); the
    message says which pod and why, `findings` holds the gate's failing findings
    (`strategies.health.Finding`)."""

    def __init__(self, message: str, findings: tuple[Any, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings


class ServiceError(Exception):
    """The Service cannot be switched as configured."""


class SelectorChanged(ServiceError):
    """The Service's selector is not the one Verdict expects (someone else changed it)."""


class DeploymentError(Exception):
    """The Deployment cannot be followed or rolled back as asked."""

"""The named errors of the standalone strategies' Kubernetes parts (callers match on these)."""

from __future__ import annotations


class KubeUnreachable(Exception):
    """The Kubernetes API did not answer (or answered a server error)."""


class RouterError(Exception):
    """The VirtualService cannot be routed as configured (missing, no such route, ...)."""


class TrafficChanged(RouterError):
    """Someone else changed the route's weights during the run."""


class PodsUnhealthy(Exception):
    """The canary's pods failed the health gate; the message says which pod and why."""


class ServiceError(Exception):
    """The Service cannot be switched as configured."""


class SelectorChanged(ServiceError):
    """The Service's selector is not the one Verdict expects (someone else changed it)."""


class DeploymentError(Exception):
    """The Deployment cannot be followed or rolled back as asked."""

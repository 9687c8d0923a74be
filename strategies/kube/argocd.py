"""The Argo CD Application that deploys a workload, read for the health gate (its sync status).

Which Application: the one the analysis file names (`argocd: {application, namespace}`), else
the one the workload says manages it: its `argocd.argoproj.io/instance` label (`name`, or
`namespace_name` when Applications live in several namespaces), or the app name in its
`argocd.argoproj.io/tracking-id` annotation (`name:group/kind:namespace/name`). Applications
are read with `get` on `applications.argoproj.io` (see `strategies.kube.permissions`); what
they mean for the rollout is `strategies.health.classify_application`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from strategies.health import Finding, classify_application
from strategies.kube.client import NETWORK_ERRORS
from strategies.kube.errors import KubeUnreachable

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "applications"
INSTANCE_LABEL = "argocd.argoproj.io/instance"
TRACKING_ANNOTATION = "argocd.argoproj.io/tracking-id"
DEFAULT_NAMESPACE = "argocd"

_log = structlog.get_logger()


@dataclass(frozen=True)
class AppRef:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def app_of(
    workload: Mapping[str, Any],
    *,
    named: str | None = None,
    namespace: str | None = None,
) -> AppRef | None:
    """The Application of `workload` (an API object): `named` when given, else its instance
    label or tracking annotation; None when nothing names one."""
    where = namespace or DEFAULT_NAMESPACE
    if named:
        return AppRef(where, named)
    meta = workload.get("metadata") or {}
    label = str((meta.get("labels") or {}).get(INSTANCE_LABEL) or "")
    if label:
        if "_" in label:  # apps in any namespace: `<namespace>_<name>`
            ns, _, name = label.partition("_")
            return AppRef(ns, name)
        return AppRef(where, label)
    tracking = str((meta.get("annotations") or {}).get(TRACKING_ANNOTATION) or "")
    if ":" in tracking:
        app = tracking.split(":", 1)[0]
        if "_" in app:
            ns, _, name = app.partition("_")
            return AppRef(ns, name)
        return AppRef(where, app)
    return None


class NoApplication(Exception):
    """`argocd:` is configured but nothing names the Application (no name, no label)."""


class ApplicationGate:
    """Reads one Application and turns it into health findings (`findings(now)`). `ref` is the
    Application, or a function that finds it at the first read (from the workload's labels)."""

    def __init__(self, api: Any, ref: AppRef | Callable[[], AppRef | None]) -> None:
        self._api = api
        self._find = ref if callable(ref) else None
        self._ref = ref if isinstance(ref, AppRef) else None

    @property
    def ref(self) -> AppRef:
        if self._ref is None:
            assert self._find is not None
            found = self._find()
            if found is None:
                raise NoApplication(
                    "argocd: no Application is named and the workload carries no "
                    f"{INSTANCE_LABEL} label: give argocd.application"
                )
            self._ref = found
        return self._ref

    def read(self) -> dict[str, Any] | None:
        """The Application as the API returns it; None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            found: Any = self._api.get_namespaced_custom_object(
                GROUP, VERSION, self.ref.namespace, PLURAL, self.ref.name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise KubeUnreachable(
                f"reading the Argo CD Application {self.ref}: the API answered {error.status} "
                f"{error.reason}"
            ) from None
        except NETWORK_ERRORS as error:
            raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
        return dict(found)

    def findings(self, now: datetime) -> tuple[Finding, ...]:
        app = self.read()
        if app is None:
            _log.warning("the Argo CD Application does not exist", application=str(self.ref))
            return ()
        return classify_application(app, now=now)

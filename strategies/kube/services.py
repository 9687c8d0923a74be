"""Blue/green switching: a Service's selector moved from one label set to another in one write.

The write is a JSON merge patch of `spec.selector` carrying the `metadata.resourceVersion` read
(409 on a change meanwhile: read again); a selector that is neither what Verdict expects nor
what it writes is someone else's change, reported (`SelectorChanged`) and not overwritten.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from strategies.kube.client import NETWORK_ERRORS
from strategies.kube.errors import KubeUnreachable, SelectorChanged, ServiceError

__all__ = ["SelectorChanged", "ServiceError", "ServiceSwitch", "selector_patch"]

MERGE_PATCH = "application/merge-patch+json"
_RETRIES = 5


class CoreServices(Protocol):
    def read_namespaced_service(self, name: str, namespace: str, **kwargs: Any) -> Any: ...
    def patch_namespaced_service(
        self, name: str, namespace: str, body: Any, **kwargs: Any
    ) -> Any: ...


def selector_patch(current: dict[str, str], target: dict[str, str], rv: str) -> dict[str, Any]:
    """The merge patch turning `current` into `target` (keys not in target removed)."""
    selector: dict[str, str | None] = {k: None for k in current if k not in target}
    selector.update(target)
    return {"metadata": {"resourceVersion": rv}, "spec": {"selector": selector}}


class ServiceSwitch:
    def __init__(self, api: Any, *, namespace: str, name: str) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.where = f"Service {namespace}/{name}"

    def _read(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            found = self.api.read_namespaced_service(
                self.name, self.namespace, _preload_content=False
            )
        except ApiException as error:
            if error.status == 404:
                raise ServiceError(f"{self.where} does not exist") from None
            raise KubeUnreachable(f"{self.where}: the API answered {error.status}") from None
        except NETWORK_ERRORS as error:
            raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
        service: dict[str, Any] = json.loads(found.data)
        return service

    def selector(self) -> dict[str, str]:
        return dict(self._read().get("spec", {}).get("selector") or {})

    def switch(self, expected: dict[str, str], target: dict[str, str]) -> None:
        """Move the selector from `expected` to `target` (nothing to do if already there)."""
        from kubernetes.client.exceptions import ApiException

        for _ in range(_RETRIES):
            service = self._read()
            current = dict(service.get("spec", {}).get("selector") or {})
            if current == target:
                return
            if current != expected:
                raise SelectorChanged(
                    f"{self.where} selects {current}, not {expected} as Verdict left it: "
                    "changed by someone else; not overwritten"
                )
            body = selector_patch(current, target, service["metadata"]["resourceVersion"])
            try:
                self.api.patch_namespaced_service(
                    self.name, self.namespace, body, _content_type=MERGE_PATCH
                )
            except ApiException as error:
                if error.status == 409:
                    continue
                raise KubeUnreachable(
                    f"{self.where}: the selector write got {error.status} {error.reason}"
                ) from None
            except NETWORK_ERRORS as error:
                raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
            return
        raise KubeUnreachable(f"{self.where}: still conflicting after {_RETRIES} fresh reads")

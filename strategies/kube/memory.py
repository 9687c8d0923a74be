"""An in-memory Kubernetes for the demo: the few calls the standalone strategies make.

It answers as the official client's `CustomObjectsApi` and `CoreV1Api` do for those calls (the
same `ApiException`s, merge patches with optimistic concurrency on `metadata.resourceVersion`),
so `verdict demo` runs the very strategy code that runs against a cluster.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Object = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


@dataclass(frozen=True)
class _Listed:
    data: bytes


def _api_error(status: int, reason: str) -> Exception:
    from kubernetes.client.exceptions import ApiException

    return ApiException(status=status, reason=reason)


def _selected(obj: Object, selector: str) -> bool:
    labels = obj.get("metadata", {}).get("labels") or {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class MemoryKube:
    """Objects by (plural, namespace, name); `on_write(callback)` sees every stored change."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Object] = {}
        self._rv = 0
        self._listeners: list[Callable[[str, Object], None]] = []

    def on_write(self, callback: Callable[[str, Object], None]) -> None:
        self._listeners.append(callback)

    def put(self, plural: str, obj: Object) -> Object:
        meta = obj.setdefault("metadata", {})
        self._rv += 1
        meta["resourceVersion"] = str(self._rv)
        key = (plural, meta.get("namespace", "default"), meta["name"])
        self._objects[key] = copy.deepcopy(obj)
        for listener in self._listeners:
            listener(plural, copy.deepcopy(obj))
        return copy.deepcopy(obj)

    # --- CustomObjectsApi ---------------------------------------------------------------

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Object:
        found = self._objects.get((plural, namespace, name))
        if found is None:
            raise _api_error(404, "Not Found")
        return copy.deepcopy(found)

    def patch_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        body: Any,
        **kwargs: Any,
    ) -> Object:
        current = self.get_namespaced_custom_object(group, version, namespace, plural, name)
        expected = (body.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != current["metadata"]["resourceVersion"]:
            raise _api_error(409, "Conflict")
        return self.put(plural, merge_patch(current, body))

    # --- CoreV1Api ----------------------------------------------------------------------

    def list_namespaced_pod(self, namespace: str, **kwargs: Any) -> _Listed:
        selector = str(kwargs.get("label_selector") or "")
        items = [
            copy.deepcopy(o)
            for (plural, ns, _), o in sorted(self._objects.items())
            if plural == "pods" and ns == namespace and _selected(o, selector)
        ]
        return _Listed(json.dumps({"kind": "PodList", "items": items}).encode())

    def list_namespaced_event(self, namespace: str, **kwargs: Any) -> _Listed:
        items = [
            copy.deepcopy(o)
            for (plural, ns, _), o in sorted(self._objects.items())
            if plural == "events" and ns == namespace
        ]
        return _Listed(json.dumps({"kind": "EventList", "items": items}).encode())

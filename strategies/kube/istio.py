"""The Istio router: the canary's share of one VirtualService route, read and written.

Only the named HTTP route's two destinations change (stable and canary, by host and optional
subset); other routes and fields are left as they are, and the two weights always add up to 100.

Writes are JSON merge patches of `spec.http` carrying the `metadata.resourceVersion` that was
read, so the API server refuses (409) a write over a change made meanwhile. A 409 is retried on a
fresh read, but only if that read still shows the weights Verdict last wrote (or found at the
start): a VirtualService someone else changed mid-run raises `TrafficChanged` and is not
overwritten.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

from strategies.kube.client import NETWORK_ERRORS
from strategies.kube.errors import KubeUnreachable, RouterError, TrafficChanged

__all__ = ["Destination", "IstioRouter", "RouterError", "TrafficChanged", "Weights", "read_weights"]

GROUP = "networking.istio.io"
VERSION = "v1beta1"
PLURAL = "virtualservices"
MERGE_PATCH = "application/merge-patch+json"
_RETRIES = 5


@dataclass(frozen=True)
class Destination:
    host: str
    subset: str | None = None

    def matches(self, destination: dict[str, Any]) -> bool:
        return destination.get("host") == self.host and destination.get("subset") == self.subset

    def as_dict(self) -> dict[str, str]:
        return {"host": self.host, **({"subset": self.subset} if self.subset else {})}


@dataclass(frozen=True)
class Weights:
    stable: int
    canary: int

    def as_dict(self) -> dict[str, int]:
        return {"stable": self.stable, "canary": self.canary}


class CustomObjects(Protocol):
    """The part of `kubernetes.client.CustomObjectsApi` the router uses."""

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> Any: ...

    def patch_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        name: str,
        body: Any,
        **kwargs: Any,
    ) -> Any: ...


def _route_index(vs: dict[str, Any], route: str | None, where: str) -> int:
    routes = vs.get("spec", {}).get("http") or []
    if route is None:
        if len(routes) != 1:
            raise RouterError(
                f"{where} has {len(routes)} http routes: name the one to split with rollout.route"
            )
        return 0
    for i, r in enumerate(routes):
        if r.get("name") == route:
            return i
    names = ", ".join(str(r.get("name")) for r in routes) or "none"
    raise RouterError(f"{where} has no http route named {route!r} (routes: {names})")


def read_weights(
    vs: dict[str, Any], route: str | None, stable: Destination, canary: Destination, where: str
) -> Weights:
    """The stable and canary weights of the route (a lone destination without weight is 100)."""
    entries = vs["spec"]["http"][_route_index(vs, route, where)].get("route") or []
    found: dict[str, int] = {}
    others = 0
    for entry in entries:
        destination = entry.get("destination", {})
        weight = int(entry.get("weight", 100 if len(entries) == 1 else 0))
        if stable.matches(destination):
            found["stable"] = weight
        elif canary.matches(destination):
            found["canary"] = weight
        else:
            others += weight
    if "stable" not in found:
        raise RouterError(f"{where}: the route has no destination {stable.as_dict()} (stable)")
    if others:
        raise RouterError(
            f"{where}: the route sends {others} % to destinations other than stable and canary"
        )
    return Weights(stable=found["stable"], canary=found.get("canary", 0))


def weights_patch(
    vs: dict[str, Any],
    route: str | None,
    stable: Destination,
    canary: Destination,
    canary_percent: int,
    where: str,
) -> dict[str, Any]:
    """The merge patch setting the route to 100 - canary_percent / canary_percent."""
    if not 0 <= canary_percent <= 100:
        raise ValueError("the canary weight lies between 0 and 100")
    http = copy.deepcopy(vs["spec"]["http"])
    index = _route_index(vs, route, where)
    entries = http[index].setdefault("route", [])
    if not any(canary.matches(e.get("destination", {})) for e in entries):
        entries.append({"destination": canary.as_dict(), "weight": 0})
    for entry in entries:
        destination = entry.get("destination", {})
        if stable.matches(destination):
            entry["weight"] = 100 - canary_percent
        elif canary.matches(destination):
            entry["weight"] = canary_percent
    return {
        "metadata": {"resourceVersion": vs["metadata"]["resourceVersion"]},
        "spec": {"http": http},
    }


class IstioRouter:
    """The canary's and stable's weights of one VirtualService route (see the module doc)."""

    def __init__(
        self,
        api: CustomObjects,
        *,
        namespace: str,
        name: str,
        route: str | None,
        stable: Destination,
        canary: Destination,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = name
        self.route = route
        self.stable = stable
        self.canary = canary
        self.where = f"VirtualService {namespace}/{name}"
        self.expected: Weights | None = None
        """The weights Verdict last wrote or found at the start; None: not read yet."""
        self._pending: Weights | None = None
        """The weights of a write whose answer was not seen (interrupted): may be in place."""

    def _read(self) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            vs = self._api.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, self.name
            )
        except ApiException as error:
            if error.status == 404:
                raise RouterError(f"{self.where} does not exist") from None
            if error.status in (401, 403):
                raise RouterError(
                    f"{self.where}: not allowed to read it ({error.reason})"
                ) from None
            raise KubeUnreachable(f"{self.where}: the API answered {error.status}") from None
        except NETWORK_ERRORS as error:
            raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
        return dict(vs)

    def current(self) -> Weights:
        """The route's weights as they are now (no check against what Verdict wrote)."""
        return read_weights(self._read(), self.route, self.stable, self.canary, self.where)

    def adopt(self) -> Weights:
        """Read the route and take its weights as the expected ones (the run's start)."""
        self.expected = self.current()
        return self.expected

    def verify(self) -> Weights:
        """The current weights; `TrafficChanged` if they are not what Verdict left."""
        vs = self._read()
        weights = read_weights(vs, self.route, self.stable, self.canary, self.where)
        self._check(weights)
        return weights

    def _check(self, weights: Weights) -> None:
        if self.expected is not None and weights not in (self.expected, self._pending):
            raise TrafficChanged(
                f"{self.where} route {self.route or '(only)'} was changed by someone else: it "
                f"sends {weights.stable}/{weights.canary} (stable/canary), Verdict left "
                f"{self.expected.stable}/{self.expected.canary}; not overwritten"
            )

    def weight(self) -> int:
        return self.current().canary

    def set_weight(self, canary_percent: int) -> None:
        from kubernetes.client.exceptions import ApiException

        for _ in range(_RETRIES):
            vs = self._read()
            weights = read_weights(vs, self.route, self.stable, self.canary, self.where)
            self._check(weights)
            body = weights_patch(
                vs, self.route, self.stable, self.canary, canary_percent, self.where
            )
            self._pending = Weights(stable=100 - canary_percent, canary=canary_percent)
            try:
                self._api.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, PLURAL, self.name, body,
                    _content_type=MERGE_PATCH,
                )  # fmt: skip
            except ApiException as error:
                if error.status == 409:
                    continue  # changed meanwhile: read again
                if error.status in (400, 403, 404, 422):
                    raise RouterError(
                        f"{self.where}: the weight write was refused ({error.status} "
                        f"{error.reason})"
                    ) from None
                raise KubeUnreachable(f"{self.where}: the API answered {error.status}") from None
            except NETWORK_ERRORS as error:
                raise KubeUnreachable(f"the Kubernetes API is unreachable: {error}") from None
            self.expected, self._pending = self._pending, None
            return
        raise KubeUnreachable(f"{self.where}: still conflicting after {_RETRIES} fresh reads")

"""A Kubernetes API server for tests: in-process HTTP, the REST dialect the official client speaks.

No API server can be installed on the test machines, so Verdict's Kubernetes code (which uses the
official `kubernetes` client for real) is tested against this one. It keeps objects in memory and
speaks, for any resource registered by (group, version, plural):

* `GET` of one object, `GET` of a collection (a list; `labelSelector` terms `a=b`, `a==b`,
  `a!=b`, `a` and `!a`, and `fieldSelector` `metadata.name=` honoured), in one namespace or
  across all namespaces;
* watches (`?watch=true`): the events since `resourceVersion` (or `ADDED` for every object when
  none is given), streamed as chunked JSON lines until `timeoutSeconds` or the server stops; a
  `resourceVersion` older than the last `compact()` gets the `ERROR` event with a 410 `Status`,
  as a real server answers "too old resource version";
* `POST` (create; `generateName` honoured; 409 `AlreadyExists`), `PUT` (replace), `DELETE`;
* `PATCH` with `application/merge-patch+json` (RFC 7386), `application/json-patch+json`
  (RFC 6902, `test` included) and `application/strategic-merge-patch+json` (taken as a merge
  patch: lists are replaced whole; Verdict's patches touch no merge-keyed lists);
* the `/status` subresource: for a resource registered with `status=True`, a write to the main
  resource keeps the stored `status` and a write to `/status` changes only `status`;
  `metadata.generation` grows when `spec` changes (as for CRDs with a status subresource);
* optimistic concurrency: a write whose body carries `metadata.resourceVersion` that is not the
  stored one gets 409 `Conflict`;
* every Argo Rollouts object written (`argoproj.io` kinds) is validated against the CRD schemas in
  `tests/data/argo-rollouts/` (strict: unknown keys are errors), every Argo CD Application against
  Argo CD's CRD in `tests/data/argo-cd/`, every VirtualService against
  `VIRTUAL_SERVICE_SCHEMA` (integer weights 0..100 on routes with a destination host); an invalid
  one gets 422 and is kept in `server.rejected`. Register a schema for other resources with
  `Resource(schema=...)`.

Every request is recorded (`server.requests`: method, path, query, content type, parsed body,
status answered; 0 for a request dropped unanswered), so tests assert the exact patches a
feature sent (`server.writes(...)`), and `server.permissions_used()` gives the (group, resource,
verb) of every call, to hold against `strategies.kube.permissions`.

Tests drive the world around the code under test without HTTP: `put` / `get` / `modify` change
objects as a controller would (with resource versions and watch events), `react(callback)` runs a
callback after every write made over HTTP (a stand-in for Argo's controller), and
`fail_next(method, path, status)` makes the next matching requests fail (e.g. a 409 from a
concurrent writer, a 500; with `after=True` once carried out), and `stall_next(method, path)`
holds one until the test releases it (to kill the sender meanwhile).

Use the `kube` fixture (tests/conftest.py), or `with KubeServer() as server:`; give the code a
client from `server.api_client()` or a kubeconfig from `server.write_kubeconfig(path)`.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema
import yaml

from tests.crds import CRD_FILES, application_schema, crd_schema

Object = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
_WATCH_LIMIT_S = 60.0  # a watch without timeoutSeconds ends after this long (clients re-watch)


@dataclass(frozen=True)
class Resource:
    """A kind of object the server keeps, addressed by (group, version, plural).

    `status`: whether it has the `/status` subresource. `schema`: a JSON Schema every object
    written must satisfy (Argo kinds get their CRD schema without asking).
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = True
    schema: dict[str, Any] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def validator(self) -> jsonschema.Draft7Validator | None:
        if self.schema is not None:
            return jsonschema.Draft7Validator(self.schema)
        if self.group == "argoproj.io" and self.kind in CRD_FILES:
            return jsonschema.Draft7Validator(crd_schema(CRD_FILES[self.kind]))
        if self.group == "argoproj.io" and self.kind == "Application":
            return jsonschema.Draft7Validator(application_schema())
        return None


VIRTUAL_SERVICE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "hosts": {"type": "array", "items": {"type": "string"}},
                "gateways": {"type": "array", "items": {"type": "string"}},
                "http": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "route": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["destination"],
                                    "properties": {
                                        "destination": {
                                            "type": "object",
                                            "required": ["host"],
                                            "properties": {
                                                "host": {"type": "string"},
                                                "subset": {"type": "string"},
                                                "port": {
                                                    "type": "object",
                                                    "properties": {"number": {"type": "integer"}},
                                                },
                                            },
                                        },
                                        "weight": {
                                            "type": "integer",
                                            "minimum": 0,
                                            "maximum": 100,
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}
"""The shape of an Istio VirtualService that Verdict's routers read and write (`spec.hosts`,
`spec.http[].route[]` with `destination.host` and integer `weight` 0..100): Istio publishes no
CRD schema for it (its validation is a webhook), so this is the part it checks that matters."""

DEFAULT_RESOURCES: tuple[Resource, ...] = (
    Resource("argoproj.io", "v1alpha1", "rollouts", "Rollout"),
    Resource("argoproj.io", "v1alpha1", "analysisruns", "AnalysisRun", status=False),
    Resource("argoproj.io", "v1alpha1", "analysistemplates", "AnalysisTemplate", status=False),
    Resource(
        "argoproj.io",
        "v1alpha1",
        "clusteranalysistemplates",
        "ClusterAnalysisTemplate",
        namespaced=False,
        status=False,
    ),
    Resource(
        "networking.istio.io",
        "v1beta1",
        "virtualservices",
        "VirtualService",
        status=False,
        schema=VIRTUAL_SERVICE_SCHEMA,
    ),
    Resource(
        "networking.istio.io",
        "v1",
        "virtualservices",
        "VirtualService",
        status=False,
        schema=VIRTUAL_SERVICE_SCHEMA,
    ),
    Resource("networking.istio.io", "v1beta1", "destinationrules", "DestinationRule"),
    Resource("", "v1", "services", "Service"),
    Resource("", "v1", "pods", "Pod"),
    Resource("", "v1", "events", "Event", status=False),
    Resource("", "v1", "namespaces", "Namespace", namespaced=False),
    Resource("apps", "v1", "deployments", "Deployment"),
    Resource("apps", "v1", "replicasets", "ReplicaSet"),
    Resource("events.k8s.io", "v1", "events", "Event", status=False),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", status=False),
    # Argo CD (its CRD has no status subresource: the controller writes the whole object)
    Resource("argoproj.io", "v1alpha1", "applications", "Application", status=False),
)


@dataclass(frozen=True)
class Recorded:
    """One request as it arrived. `body` is the parsed JSON (None without a body)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    status: int = 0

    @property
    def subresource(self) -> str | None:
        parts = self.path.rstrip("/").split("/")
        return "status" if parts[-1] == "status" and len(parts) > 5 else None


@dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    status: int
    times: int
    message: str
    after: bool = False


@dataclass
class Stall:
    """A request held by the server (`KubeServer.stall_next`): `arrived` is set when it comes;
    it waits until `release(apply=...)`: applied and answered, or dropped unanswered (as when
    its sender died before the server acted on it)."""

    method: str
    path: re.Pattern[str]
    arrived: threading.Event = field(default_factory=threading.Event)
    _released: threading.Event = field(default_factory=threading.Event)
    apply: bool = False
    taken: bool = False

    def release(self, *, apply: bool) -> None:
        self.apply = apply
        self._released.set()


@dataclass
class _Event:
    rv: int
    type: str
    resource: Resource
    namespace: str
    obj: Object


class ApiProblem(Exception):
    """An error answer: HTTP status, Kubernetes `reason`, message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass
class KubeServer:
    """See the module docstring. Start with `start()` (or `with`), stop with `stop()`."""

    resources: list[Resource] = field(default_factory=lambda: list(DEFAULT_RESOURCES))
    requests: list[Recorded] = field(default_factory=list)
    rejected: list[tuple[Object, list[str]]] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        self._objects: dict[tuple[str, str, str], Object] = {}
        self._events: list[_Event] = []
        self._compacted = 0
        self._rv = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._faults: list[_Fault] = []
        self._stalls: list[Stall] = []
        self._reactors: list[Callable[[KubeServer, Resource, Object], None]] = []
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._watching = 0

    # --- life ------------------------------------------------------------------------

    def start(self) -> KubeServer:
        server = self

        class Handler(_Handler):
            kube = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            self._changed.notify_all()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> KubeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients -----------------------------------------------------------------------

    def api_client(self, timeout: tuple[float, float] | None = None) -> Any:
        """Verdict's Kubernetes client (`strategies.kube.client.DeadlineApiClient`: the official
        client with a deadline on every call) for this server (no authentication)."""
        from kubernetes import client

        from strategies.kube.api import DEFAULT_TIMEOUT, DeadlineApiClient

        configuration = client.Configuration()
        configuration.host = self.url
        return DeadlineApiClient(configuration, timeout=timeout or DEFAULT_TIMEOUT)

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """A kubeconfig file whose current context is this server."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {"token": "test-token"}}],
            "contexts": [
                {
                    "name": "test",
                    "context": {"cluster": "test", "user": "test", "namespace": namespace},
                }
            ],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- the world, without HTTP ---------------------------------------------------------

    def resource(self, group: str, version: str, plural: str) -> Resource:
        for r in self.resources:
            if (r.group, r.version, r.plural) == (group, version, plural):
                return r
        raise ApiProblem(404, "NotFound", f"the server could not find {group}/{version} {plural}")

    def resource_of(self, obj: Object) -> Resource:
        api_version = str(obj.get("apiVersion", ""))
        group, _, version = api_version.rpartition("/")
        for r in self.resources:
            if (r.group, r.version, r.kind) == (group, version, obj.get("kind")):
                return r
        raise KeyError(f"no resource for {api_version} {obj.get('kind')}")

    def put(self, obj: Object) -> Object:
        """Create or replace `obj` (apiVersion/kind/metadata.name[/namespace] set), as a
        controller would; status included. Returns the stored copy."""
        resource = self.resource_of(obj)
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace", "default") if resource.namespaced else ""
        with self._lock:
            current = self._objects.get(self._key(resource, namespace, meta["name"]))
            if current is None:
                return self._create(resource, namespace, copy.deepcopy(obj))
            return self._store(resource, namespace, current, copy.deepcopy(obj), "all")

    def get(self, group: str, version: str, plural: str, namespace: str, name: str) -> Object:
        """The stored object (a copy); KeyError when there is none."""
        resource = self.resource(group, version, plural)
        with self._lock:
            found = self._objects.get(self._key(resource, namespace, name))
            if found is None:
                raise KeyError(f"{plural} {namespace}/{name}")
            return copy.deepcopy(found)

    def objects(self, group: str, version: str, plural: str) -> list[Object]:
        resource = self.resource(group, version, plural)
        with self._lock:
            return [
                copy.deepcopy(o)
                for k, o in sorted(self._objects.items())
                if k[0] == self._rkey(resource)
            ]

    def modify(
        self,
        group: str,
        version: str,
        plural: str,
        namespace: str,
        name: str,
        change: Callable[[Object], None],
    ) -> Object:
        """Change a stored object in place with `change(obj)` (spec, status, metadata alike),
        as another controller would: new resourceVersion, a MODIFIED watch event."""
        resource = self.resource(group, version, plural)
        with self._lock:
            current = self._objects[self._key(resource, namespace, name)]
            new = copy.deepcopy(current)
            change(new)
            return self._store(resource, namespace, current, new, "all")

    def react(self, callback: Callable[[KubeServer, Resource, Object], None]) -> None:
        """Call `callback(server, resource, stored object)` after every write over HTTP (in the
        request's thread, before the answer is sent): a stand-in for another controller."""
        self._reactors.append(callback)

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        message: str = "injected failure",
        after: bool = False,
    ) -> None:
        """The next `times` requests with `method` whose path matches the regular expression
        `path` (searched) get `status` (409 answers `Conflict`, like a lost update). With
        `after`, the request is carried out first and only its answer is the failure (an answer
        lost on the way back)."""
        with self._lock:
            self._faults.append(
                _Fault(method.upper(), re.compile(path), status, times, message, after)
            )

    def stall_next(self, method: str, path: str) -> Stall:
        """Hold the next request with `method` whose path matches `path` (see `Stall`)."""
        stall = Stall(method.upper(), re.compile(path))
        with self._lock:
            self._stalls.append(stall)
        return stall

    def _stall_for(self, method: str, path: str) -> Stall | None:
        with self._lock:
            for stall in self._stalls:
                if not stall.taken and stall.method == method and stall.path.search(path):
                    stall.taken = True
                    return stall
        return None

    def compact(self) -> None:
        """Forget the watch history: a watch from an older resourceVersion now gets 410."""
        with self._lock:
            self._compacted = self._rv
            self._events.clear()

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def writes(
        self, *, plural: str | None = None, name: str | None = None, method: str | None = None
    ) -> list[Recorded]:
        """Recorded writes (POST, PUT, PATCH, DELETE), optionally only those to `plural` (and
        the object `name`, subresources included) or with `method`."""
        out = []
        for r in list(self.requests):
            if r.method not in ("POST", "PUT", "PATCH", "DELETE"):
                continue
            if method is not None and r.method != method:
                continue
            parts = r.path.strip("/").split("/")
            if plural is not None and plural not in parts:
                continue
            if name is not None and (plural is None or _after(parts, plural) != name):
                continue
            out.append(r)
        return out

    def permissions_used(self) -> set[tuple[str, str, str]]:
        """(API group, resource or resource/subresource, RBAC verb) of every request received:
        what a Role must allow for the calls the tests made."""
        used = set()
        for r in list(self.requests):
            resource, _, name, sub = self._route(r.path)
            if r.method == "GET":
                verb = (
                    "watch"
                    if r.query.get("watch") in ("true", "1", "True")
                    else ("get" if name is not None else "list")
                )
            else:
                verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[
                    r.method
                ]
            plural = resource.plural + (f"/{sub}" if sub else "")
            used.add((resource.group, plural, verb))
        return used

    def watchers(self) -> int:
        """How many watches are streaming right now."""
        with self._lock:
            return self._watching

    # --- storage -----------------------------------------------------------------------

    @staticmethod
    def _rkey(resource: Resource) -> str:
        # the versions of one group/plural share their objects (v1 and v1beta1 VirtualServices)
        return f"{resource.group}/{resource.plural}"

    def _key(self, resource: Resource, namespace: str, name: str) -> tuple[str, str, str]:
        return (self._rkey(resource), namespace, name)

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _validate(self, resource: Resource, obj: Object) -> None:
        validator = resource.validator()
        if validator is None:
            return
        found = sorted(validator.iter_errors(obj), key=lambda e: [str(p) for p in e.path])
        if found:
            lines = [f"{list(p.path)}: {p.message}" for p in found]
            self.rejected.append((copy.deepcopy(obj), lines))
            raise ApiProblem(
                422,
                "Invalid",
                f"{resource.kind} {obj.get('metadata', {}).get('name')} is invalid: "
                + "; ".join(lines),
            )

    def _create(self, resource: Resource, namespace: str, obj: Object) -> Object:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise ApiProblem(422, "Invalid", "metadata.name or generateName is required")
            meta["name"] = prefix + uuid.uuid4().hex[:5]
        key = self._key(resource, namespace, meta["name"])
        if key in self._objects:
            raise ApiProblem(
                409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists'
            )
        obj["apiVersion"] = resource.api_version
        obj["kind"] = resource.kind
        if resource.namespaced:
            meta["namespace"] = namespace
        meta.pop("resourceVersion", None)
        meta["uid"] = str(uuid.uuid4())
        meta["generation"] = 1
        meta["creationTimestamp"] = _now()
        self._validate(resource, obj)
        meta["resourceVersion"] = str(self._next_rv())
        self._objects[key] = obj
        self._event("ADDED", resource, namespace, obj)
        return copy.deepcopy(obj)

    def _store(
        self, resource: Resource, namespace: str, current: Object, new: Object, part: str
    ) -> Object:
        """Write `new` over `current`. `part`: `main` (status kept), `status` (only status
        taken), or `all` (a controller's own write)."""
        given_rv = new.get("metadata", {}).get("resourceVersion")
        if given_rv not in (None, "") and str(given_rv) != current["metadata"]["resourceVersion"]:
            raise ApiProblem(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {resource.plural} "{current["metadata"]["name"]}": '
                "the object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        if resource.status and part == "main":
            new = {k: v for k, v in new.items() if k != "status"}
            if "status" in current:
                new["status"] = copy.deepcopy(current["status"])
        elif resource.status and part == "status":
            status = new.get("status")
            new = {k: copy.deepcopy(v) for k, v in current.items() if k != "status"}
            if status is not None:
                new["status"] = status
        meta = new.setdefault("metadata", {})
        old_meta = current["metadata"]
        for fixed in ("uid", "creationTimestamp", "name"):
            meta[fixed] = old_meta[fixed]
        if resource.namespaced:
            meta["namespace"] = namespace
        new["apiVersion"] = current["apiVersion"]
        new["kind"] = current["kind"]
        generation = int(old_meta.get("generation", 1))
        if new.get("spec") != current.get("spec"):
            generation += 1
        meta["generation"] = generation
        meta["resourceVersion"] = old_meta["resourceVersion"]
        self._validate(resource, new)
        if new == current:
            return copy.deepcopy(current)  # a no-op write changes nothing (same resourceVersion)
        meta["resourceVersion"] = str(self._next_rv())
        self._objects[self._key(resource, namespace, meta["name"])] = new
        self._event("MODIFIED", resource, namespace, new)
        return copy.deepcopy(new)

    def _delete(self, resource: Resource, namespace: str, name: str) -> Object:
        key = self._key(resource, namespace, name)
        current = self._objects.pop(key, None)
        if current is None:
            raise ApiProblem(404, "NotFound", f'{resource.plural} "{name}" not found')
        current["metadata"]["resourceVersion"] = str(self._next_rv())
        self._event("DELETED", resource, namespace, current)
        return copy.deepcopy(current)

    def _event(self, kind: str, resource: Resource, namespace: str, obj: Object) -> None:
        rv = int(obj["metadata"]["resourceVersion"])
        self._events.append(_Event(rv, kind, resource, namespace, copy.deepcopy(obj)))
        self._changed.notify_all()

    def _matches(
        self, resource: Resource, namespace: str | None, obj: Object, query: dict[str, str]
    ) -> bool:
        meta = obj["metadata"]
        if self._rkey(resource) != self._rkey(self.resource_of(obj)):
            return False
        if namespace is not None and resource.namespaced and meta.get("namespace") != namespace:
            return False
        labels = meta.get("labels") or {}
        for term in filter(None, query.get("labelSelector", "").split(",")):
            if "!=" in term:  # `a!=b`
                key, _, value = term.partition("!=")
                if labels.get(key) == value:
                    return False
            elif "=" in term:  # `a=b`, `a==b`
                key, _, value = term.partition("=")
                if labels.get(key) != value.lstrip("="):
                    return False
            elif term.startswith("!"):  # `!a`: no label a
                if term[1:] in labels:
                    return False
            elif term not in labels:  # `a`: a label a, whatever its value
                return False
        for term in filter(None, query.get("fieldSelector", "").split(",")):
            key, _, value = term.partition("=")
            if key == "metadata.name" and meta.get("name") != value.lstrip("="):
                return False
            if key == "metadata.namespace" and meta.get("namespace") != value.lstrip("="):
                return False
        return True

    # --- request handling (called by the handler) --------------------------------------

    def _fault_for(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.method == method and fault.path.search(path) and fault.times > 0:
                    fault.times -= 1
                    return fault
        return None

    def handle(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, Any]:
        """Answer a non-watch request: (status, JSON document)."""
        fault = self._fault_for(method, path)
        if fault is not None:
            if fault.after:
                self._handle(method, path, query, content_type, body)
            reason = {409: "Conflict", 404: "NotFound", 410: "Gone"}.get(fault.status, "Injected")
            raise ApiProblem(fault.status, reason, fault.message)
        return self._handle(method, path, query, content_type, body)

    def _handle(
        self, method: str, path: str, query: dict[str, str], content_type: str, body: Any
    ) -> tuple[int, Any]:
        resource, namespace, name, sub = self._route(path)
        with self._lock:
            if method == "GET" and name is None:
                return 200, self._list(resource, namespace, query)
            if method == "GET":
                return 200, self._read(resource, namespace or "", name)
            if method == "POST" and name is None:
                if not isinstance(body, dict):
                    raise ApiProblem(400, "BadRequest", "the body must be a JSON object")
                created = self._create(resource, namespace or "", copy.deepcopy(body))
            else:
                created = None
        if created is not None:
            self._react(resource, created)
            return 201, created
        with self._lock:
            if name is None:
                raise ApiProblem(405, "MethodNotAllowed", f"{method} on a collection")
            if sub not in (None, "status") or (sub == "status" and not resource.status):
                raise ApiProblem(404, "NotFound", f"no subresource {sub!r} of {resource.plural}")
            part = "status" if sub == "status" else "main"
            if method == "DELETE":
                return 200, self._delete(resource, namespace or "", name)
            current = self._objects.get(self._key(resource, namespace or "", name))
            if current is None:
                raise ApiProblem(404, "NotFound", f'{resource.plural} "{name}" not found')
            if method == "PUT":
                if not isinstance(body, dict):
                    raise ApiProblem(400, "BadRequest", "the body must be a JSON object")
                stored = self._store(resource, namespace or "", current, copy.deepcopy(body), part)
            elif method == "PATCH":
                patched = apply_patch(current, body, content_type)
                if isinstance(body, dict):
                    # a merge patch's resourceVersion is a precondition; otherwise the current
                    patched.setdefault("metadata", {})["resourceVersion"] = body.get(
                        "metadata", {}
                    ).get("resourceVersion", current["metadata"]["resourceVersion"])
                stored = self._store(resource, namespace or "", current, patched, part)
            else:
                raise ApiProblem(405, "MethodNotAllowed", f"{method} is not supported")
        self._react(resource, stored)
        return 200, stored

    def _react(self, resource: Resource, obj: Object) -> None:
        for reactor in list(self._reactors):
            reactor(self, resource, obj)

    def _route(self, path: str) -> tuple[Resource, str | None, str | None, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["api"] and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiProblem(404, "NotFound", f"no such path: {path}")
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = self.resource(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if resource.namespaced and name is not None and namespace is None:
            raise ApiProblem(404, "NotFound", f"{resource.plural} are namespaced: {path}")
        return resource, namespace, name, sub

    def _read(self, resource: Resource, namespace: str, name: str) -> Object:
        found = self._objects.get(self._key(resource, namespace, name))
        if found is None:
            raise ApiProblem(404, "NotFound", f'{resource.plural} "{name}" not found')
        return _as_version(found, resource)

    def _list(self, resource: Resource, namespace: str | None, query: dict[str, str]) -> Object:
        items = [
            _as_version(o, resource)
            for _, o in sorted(self._objects.items())
            if self._matches(resource, namespace, o, query)
        ]
        return {
            "apiVersion": resource.api_version,
            "kind": f"{resource.kind}List",
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }

    def watch(self, path: str, query: dict[str, str], send: Callable[[Object], None]) -> None:
        """Stream watch events to `send` until the timeout, the server's stop, or a send fails."""
        resource, namespace, name, _ = self._route(path)
        if name is not None:
            query = {**query, "fieldSelector": f"metadata.name={name}"}
        timeout = float(query.get("timeoutSeconds") or _WATCH_LIMIT_S)
        deadline = time.monotonic() + min(timeout, _WATCH_LIMIT_S)
        with self._lock:
            self._watching += 1
            given = query.get("resourceVersion", "")
            if given in ("", "0"):
                since = self._rv
                backlog = [
                    {"type": "ADDED", "object": _as_version(o, resource)}
                    for _, o in sorted(self._objects.items())
                    if self._matches(resource, namespace, o, query)
                ]
            else:
                since = int(given)
                backlog = []
                if since < self._compacted:
                    backlog = [_gone(since)]
        try:
            for event in backlog:
                send(event)
            if backlog and backlog[0]["type"] == "ERROR":
                return
            while not self._stopping.is_set():
                with self._changed:
                    pending = [e for e in self._events if e.rv > since]
                    if not pending:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return
                        self._changed.wait(timeout=min(left, 0.5))
                        continue
                    since = pending[-1].rv
                    out = [
                        {"type": e.type, "object": _as_version(e.obj, resource)}
                        for e in pending
                        if self._matches(resource, namespace, e.obj, query)
                    ]
                for event in out:
                    send(event)
        finally:
            with self._lock:
                self._watching -= 1


def _after(parts: list[str], plural: str) -> str | None:
    index = parts.index(plural)
    return parts[index + 1] if index + 1 < len(parts) else None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_version(obj: Object, resource: Resource) -> Object:
    out = copy.deepcopy(obj)
    out["apiVersion"] = resource.api_version
    return out


def _gone(since: int) -> Object:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {since}",
            "reason": "Expired",
            "code": 410,
        },
    }


def status_body(status: int, reason: str, message: str) -> Object:
    """A Kubernetes `Status` error document."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": status,
    }


# --- patches ---------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise ApiProblem(422, "Invalid", f"JSON pointer must start with '/': {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, tokens: list[str]) -> Any:
    node = doc
    for token in tokens[:-1]:
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def json_patch(target: Object, operations: Any) -> Object:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test); 422 when one fails."""
    if not isinstance(operations, list):
        raise ApiProblem(400, "BadRequest", "a JSON patch is a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        try:
            kind, tokens = op["op"], _pointer(op["path"])
            if kind == "test":
                node = doc
                for token in tokens:
                    node = node[int(token)] if isinstance(node, list) else node[token]
                if node != op["value"]:
                    raise ApiProblem(422, "Invalid", f"test failed at {op['path']}")
                continue
            if kind in ("move", "copy"):
                source = _pointer(op["from"])
                node = doc
                for token in source:
                    node = node[int(token)] if isinstance(node, list) else node[token]
                value = copy.deepcopy(node)
                if kind == "move":
                    doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
                doc = json_patch(doc, [{"op": "add", "path": op["path"], "value": value}])
                continue
            if not tokens:
                if kind in ("add", "replace"):
                    doc = copy.deepcopy(op["value"])
                    continue
                raise ApiProblem(422, "Invalid", "cannot remove the whole document")
            parent, last = _parent(doc, tokens), tokens[-1]
            if kind == "add":
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    parent.insert(index, copy.deepcopy(op["value"]))
                else:
                    parent[last] = copy.deepcopy(op["value"])
            elif kind == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif kind == "replace":
                key: Any = int(last) if isinstance(parent, list) else last
                if not isinstance(parent, list) and key not in parent:
                    raise KeyError(last)
                parent[key] = copy.deepcopy(op["value"])
            else:
                raise ApiProblem(422, "Invalid", f"unknown JSON patch op {kind!r}")
        except (KeyError, IndexError, ValueError, TypeError) as error:
            raise ApiProblem(
                422, "Invalid", f"JSON patch op {op!r} does not apply: {error!r}"
            ) from None
    return doc


def apply_patch(target: Object, body: Any, content_type: str) -> Object:
    kind = content_type.split(";")[0].strip()
    if kind == JSON_PATCH:
        return json_patch(target, body)
    if kind in (MERGE_PATCH, STRATEGIC_MERGE_PATCH):
        if not isinstance(body, dict):
            raise ApiProblem(400, "BadRequest", "a merge patch is a JSON object")
        patched = merge_patch(target, body)
        assert isinstance(patched, dict)
        return patched
    raise ApiProblem(415, "UnsupportedMediaType", f"unsupported patch type {content_type!r}")


# --- HTTP -------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    kube: KubeServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    """TCP_NODELAY on the answers, as a real API server answers: an answer is written as its
    head and then its body, and without it each request of a kept-alive connection waits for
    the client's delayed ACK (40 ms)."""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _parse(self) -> tuple[str, dict[str, str], str, Any]:
        split = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = self.headers.get("Content-Type", "")
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        return split.path, query, content_type, body

    def _send(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        path, query, content_type, body = self._parse()
        method = self.command
        if method == "GET" and query.get("watch") in ("true", "1", "True"):
            self.kube.requests.append(Recorded(method, path, query, content_type, body, 200))
            self._watch(path, query)
            return
        stall = self.kube._stall_for(method, path)
        if stall is not None:
            stall.arrived.set()
            stall._released.wait(timeout=300)
            if not stall.apply:
                self.kube.requests.append(Recorded(method, path, query, content_type, body, 0))
                self.close_connection = True
                return
        try:
            status, document = self.kube.handle(method, path, query, content_type, body)
        except ApiProblem as problem:
            status, document = (
                problem.status,
                status_body(problem.status, problem.reason, problem.message),
            )
        self.kube.requests.append(Recorded(method, path, query, content_type, body, status))
        self._send(status, document)

    def _watch(self, path: str, query: dict[str, str]) -> None:
        try:
            self.kube._route(path)
        except ApiProblem as problem:
            self._send(problem.status, status_body(problem.status, problem.reason, problem.message))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(event: Object) -> None:
            line = json.dumps(event).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        try:
            self.kube.watch(path, query, send)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass  # the client went away
        self.close_connection = True

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_PATCH = _serve
    do_DELETE = _serve


def objects_in(path: str) -> Iterator[Object]:
    """The YAML documents of a file (examples, manifests)."""
    yield from (d for d in yaml.safe_load_all(Path(path).read_text()) if d)

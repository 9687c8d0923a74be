"""An HTTP stand-in for Grafana's annotations API that checks every request against the docs.

Grafana cannot be installed here, so tests point Verdict at this server. It speaks the documented
`/api/annotations` contract (see `analyzer/notify/grafana.py` and
`tests/data/grafana/annotations.schema.json`):

* `POST /api/annotations` → `{"message": "Annotation added", "id": N}`;
* `PATCH /api/annotations/:id` → `{"message": "Annotation patched"}` (404 for an unknown id);
* `GET /api/annotations?tags=...` → the stored annotations (for the tests' own checks).

Every request is checked: method and path, `Authorization: Bearer <token>`, JSON body against the
schema (types, epoch milliseconds, tags a list of strings), `timeEnd` not before `time`. A request
that breaks the contract is answered 400 and listed in `violations`; tests assert that list is
empty. `mode` makes it misbehave: `ok`, `error` (500 to everything), `hang` (never answers until
the test ends).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jsonschema

from tests.local_http import StateServer, serving

_SCHEMA = json.loads(
    (Path(__file__).parent / "data" / "grafana" / "annotations.schema.json").read_text()
)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class GrafanaStandIn:
    token: str = "glsa_test_token"
    mode: str = "ok"
    requests: list[Recorded] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    annotations: dict[int, dict[str, Any]] = field(default_factory=dict)
    released: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        """Block until `count` requests arrived (or fail the test after `timeout`)."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} requests to Grafana, got {len(self.requests)}")

    def by_tag(self, *tags: str) -> list[dict[str, Any]]:
        with self.lock:
            return [a for a in self.annotations.values() if set(tags) <= set(a.get("tags", []))]


class _Handler(BaseHTTPRequestHandler):
    server: StateServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode(errors="replace")

    def _handle(self, method: str) -> None:
        state = self.server.state
        body = self._body() if method in ("POST", "PATCH", "PUT") else None
        path = urlsplit(self.path).path
        with state.lock:
            state.requests.append(Recorded(method, self.path, dict(self.headers.items()), body))
        if state.mode == "hang":
            state.released.wait(60)
            return
        if state.mode == "error":
            self._answer(500, {"message": "internal server error"})
            return
        problem = self._check(method, path, body)
        if problem is not None:
            status, message = problem
            if status == 400:
                with state.lock:
                    state.violations.append(f"{method} {self.path}: {message}")
            self._answer(status, {"message": message})
            return
        if method == "GET":
            query = parse_qs(urlsplit(self.path).query)
            self._answer(200, state.by_tag(*query.get("tags", [])))
            return
        with state.lock:
            if method == "POST":
                annotation_id = len(state.annotations) + 1
                state.annotations[annotation_id] = {"id": annotation_id, **body}
                self._answer(200, {"message": "Annotation added", "id": annotation_id})
                return
            annotation_id = int(path.rsplit("/", 1)[1])
            state.annotations[annotation_id].update(body)
        self._answer(200, {"message": "Annotation patched"})

    def _check(self, method: str, path: str, body: Any) -> tuple[int, str] | None:
        state = self.server.state
        if self.headers.get("Authorization") != f"Bearer {state.token}":
            return 401, "Unauthorized: expected Authorization: Bearer <service account token>"
        if method == "GET" and path == "/api/annotations":
            return None
        if method == "POST" and path == "/api/annotations":
            schema = _SCHEMA["post"]
        elif method == "PATCH" and path.startswith("/api/annotations/"):
            ident = path.rsplit("/", 1)[1]
            if not ident.isdigit():
                return 400, f"annotation id {ident!r} is not a number"
            with state.lock:
                if int(ident) not in state.annotations:
                    return 404, "Annotation not found"
            schema = _SCHEMA["patch"]
        else:
            return 400, f"{method} {path} is not an annotations endpoint Verdict should use"
        if "json" not in (self.headers.get("Content-Type") or ""):
            return 400, "Content-Type must be application/json"
        try:
            jsonschema.validate(body, {**schema, "$defs": _SCHEMA["$defs"]})
        except jsonschema.ValidationError as error:
            return 400, f"body breaks the documented contract: {error.message}"
        time, end = body.get("time"), body.get("timeEnd")
        if time is not None and end is not None and end < time:
            return 400, "timeEnd is before time"
        return None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


@contextmanager
def running(state: GrafanaStandIn) -> Iterator[GrafanaStandIn]:
    """The stand-in serving `state` (its `url` set) until the block ends."""
    with serving(_Handler, state) as url:
        state.url = url
        try:
            yield state
        finally:
            state.released.set()  # held requests of the `hang` mode end before the server stops

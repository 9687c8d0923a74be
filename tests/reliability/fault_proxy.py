"""A fault-injecting HTTP proxy between Verdict and a real Prometheus.

Every request is forwarded to the real server; the active faults change what Verdict sees:

* `latency`: wait `seconds` before forwarding;
* `drop`: close the connection without an answer;
* `http_500`, `http_503`: a Prometheus-style error answer;
* `truncated`: the real JSON answer cut in half (with a matching Content-Length);
* `malformed`: a 200 answer that is not JSON at all;
* `nan`, `inf`: every sample value of the real answer replaced by `NaN` / `+Inf`;
* `empty`: the real answer with its result emptied (`[]`);
* `warnings`: the real answer with `"warnings": [...]` added (a partial answer of Thanos,
  Cortex, Mimir);
* `stale`: the query evaluated `stale_seconds` earlier than asked (frozen data).

A fault applies to the queries whose text contains `match` (every query when empty), for the
next `times` requests (all while active when None). `injected` counts altered answers per kind,
`requests` every request seen (the Prometheus query rate of a run), `most_at_once` the most
requests in the proxy at one time.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

KINDS = (
    "latency",
    "drop",
    "http_500",
    "http_503",
    "truncated",
    "malformed",
    "nan",
    "inf",
    "empty",
    "warnings",
    "stale",
)


@dataclass
class Fault:
    kind: str
    match: str = ""
    seconds: float = 1.0
    stale_seconds: float = 600.0
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}")


@dataclass
class FaultProxy:
    """See the module docstring. Change `faults` with `set` / `clear` at any time."""

    upstream: str
    url: str = ""
    faults: list[Fault] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    queries: list[str] = field(default_factory=list)
    most_at_once: int = 0
    _at_once: int = field(default=0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    def set(self, *faults: Fault) -> None:
        with self._lock:
            self.faults = list(faults)

    def clear(self) -> None:
        self.set()

    def take(self, query: str) -> list[Fault]:
        """The faults that apply to this query (and count one use of each)."""
        with self._lock:
            self.requests += 1
            self.queries.append(query)
            chosen = []
            for fault in self.faults:
                if fault.match and fault.match not in query:
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                chosen.append(fault)
            return chosen

    def arrived(self) -> None:
        with self._lock:
            self._at_once += 1
            self.most_at_once = max(self.most_at_once, self._at_once)

    def left(self) -> None:
        with self._lock:
            self._at_once -= 1

    def count(self, kind: str) -> None:
        with self._lock:
            self.injected[kind] += 1

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # an answer is not held for the client's delayed ACK (40 ms)

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._handle(self.rfile.read(length) if length else b"")

    def _handle(self, body: bytes) -> None:
        self.owner.arrived()
        try:
            self._answer(body)
        finally:
            self.owner.left()

    def _answer(self, body: bytes) -> None:
        parts = urlsplit(self.path)
        params = parse_qsl(parts.query) + parse_qsl(body.decode("utf-8", "replace"))
        query = " ".join(v for k, v in params if k == "query")
        faults = self.owner.take(query)
        kinds = {f.kind: f for f in faults}
        if "latency" in kinds:
            time.sleep(kinds["latency"].seconds)
            self.owner.count("latency")
        if "drop" in kinds:
            self.owner.count("drop")
            self.close_connection = True
            return
        for kind, status in (("http_500", 500), ("http_503", 503)):
            if kind in kinds:
                self.owner.count(kind)
                error = {"status": "error", "errorType": "internal", "error": f"injected {kind}"}
                self._send(status, json.dumps(error).encode())
                return
        if "malformed" in kinds:
            self.owner.count("malformed")
            self._send(200, b"<html><body>502 Bad Gateway (not JSON)</body></html>", "text/html")
            return
        if "stale" in kinds:
            shift = kinds["stale"].stale_seconds
            params = [(k, f"{float(v) - shift:.3f}" if k == "time" else v) for k, v in params]
            self.owner.count("stale")
        status, payload = self._forward(parts.path, params)
        if status == 200 and kinds.keys() & {"nan", "inf", "empty", "warnings", "truncated"}:
            payload = self._alter(payload, kinds)
        self._send(status, payload)

    def _forward(self, path: str, params: list[tuple[str, str]]) -> tuple[int, bytes]:
        upstream = urlsplit(self.owner.upstream)
        connection = http.client.HTTPConnection(
            upstream.hostname or "127.0.0.1", upstream.port or 80, timeout=30
        )
        try:
            connection.request(
                "POST",
                path,
                body=urlencode(params),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            response = connection.getresponse()
            return response.status, response.read()
        except OSError as error:  # the real server is down: pass that on as a dropped connection
            text = json.dumps({"status": "error", "errorType": "unavailable", "error": str(error)})
            return 502, text.encode()
        finally:
            connection.close()

    def _alter(self, payload: bytes, kinds: dict[str, Fault]) -> bytes:
        document = json.loads(payload)
        result = document.get("data", {}).get("result")
        if "empty" in kinds and isinstance(result, list):
            document["data"]["result"] = []
            self.owner.count("empty")
        for kind, text in (("nan", "NaN"), ("inf", "+Inf")):
            if kind in kinds and isinstance(result, list) and result:
                for series in result:
                    if "value" in series:
                        series["value"][1] = text
                    for point in series.get("values", []):
                        point[1] = text
                self.owner.count(kind)
        if "warnings" in kinds:
            document["warnings"] = ["partial response: store 10.0.0.7:10901 unavailable"]
            self.owner.count("warnings")
        altered = json.dumps(document).encode()
        if "truncated" in kinds:
            self.owner.count("truncated")
            altered = altered[: len(altered) // 2]
        return altered

    def _send(self, status: int, payload: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

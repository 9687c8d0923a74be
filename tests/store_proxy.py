"""An HTTP proxy in front of a real metric store (Prometheus or VictoriaMetrics) that plays the
gateway of a multi-tenant store (Mimir, Cortex, Thanos behind an auth proxy): it refuses a
request without the headers it requires, and records every request's headers and query.

* `required`: header name -> the value every request must carry (`X-Scope-OrgID: tenant-a`);
* `token_file`: the bearer token every request must carry (`Authorization: Bearer <token>`),
  read from this file at each request (rewrite the file to rotate the token);
* a refused request gets HTTP 401 with a Prometheus-style error that repeats the credentials it
  was given (as careless gateways do, so tests can check that Verdict masks them);
* `drop_series`: a `label="value"` pair; series with it are left out of every raw-sample
  (matrix) answer, as a store that lost part of its samples would (a real disagreement
  between the samples read and the store's own `increase()`).

Everything else is forwarded to `upstream` as it came (form body, `Content-Type`), and the
upstream answer is sent back as it came.
"""

from __future__ import annotations

import http.client
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Seen:
    """One request as the proxy received it: lower-cased header names."""

    headers: dict[str, str]
    query: str
    refused: bool


@dataclass
class StoreProxy:
    upstream: str
    required: dict[str, str] = field(default_factory=dict)
    token_file: Path | None = None
    drop_series: tuple[str, str] | None = None
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)

    def missing(self, headers: dict[str, str]) -> list[str]:
        """What a request with `headers` lacks (empty: it may pass)."""
        lacking = [
            name for name, value in self.required.items() if headers.get(name.lower()) != value
        ]
        if self.token_file is not None:
            token = self.token_file.read_text().strip()
            if headers.get("authorization") != f"Bearer {token}":
                lacking.append("Authorization")
        return lacking

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def queries(self) -> list[str]:
        with self._lock:
            return [s.query for s in self.seen]

    def start(self) -> StoreProxy:
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

    def __enter__(self) -> StoreProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    owner: StoreProxy
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
        parts = urlsplit(self.path)
        params = parse_qsl(parts.query) + parse_qsl(body.decode("utf-8", "replace"))
        query = " ".join(v for k, v in params if k == "query")
        headers = {name.lower(): value for name, value in self.headers.items()}
        lacking = self.owner.missing(headers)
        self.owner.record(Seen(headers=headers, query=query, refused=bool(lacking)))
        if lacking:
            given = ", ".join(headers.get(name.lower(), "none") for name in lacking)
            error = {
                "status": "error",
                "errorType": "unauthorized",
                "error": f"missing or wrong {', '.join(lacking)}: got {given}",
            }
            self._send(401, json.dumps(error).encode())
            return
        status, payload = self._forward(self.path, body, self.headers.get("Content-Type"))
        if status == 200 and self.owner.drop_series is not None:
            payload = self._dropped(payload, *self.owner.drop_series)
        self._send(status, payload)

    def _forward(self, path: str, body: bytes, content_type: str | None) -> tuple[int, bytes]:
        upstream = urlsplit(self.owner.upstream)
        connection = http.client.HTTPConnection(
            upstream.hostname or "127.0.0.1", upstream.port or 80, timeout=60
        )
        try:
            headers = {"Content-Type": content_type} if content_type else {}
            connection.request("POST" if body else "GET", path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    @staticmethod
    def _dropped(payload: bytes, label: str, value: str) -> bytes:
        document = json.loads(payload)
        data = document.get("data", {})
        if data.get("resultType") != "matrix":
            return payload
        data["result"] = [s for s in data["result"] if s.get("metric", {}).get(label) != value]
        return json.dumps(document).encode()

    def _send(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

"""A threaded HTTP server on a free loopback port for the stand-ins of services tests talk to."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests


class StateServer(ThreadingHTTPServer):
    """A server whose handlers reach the test's state object as `self.server.state`."""

    daemon_threads = True
    state: Any


@contextmanager
def serving(
    handler: type[BaseHTTPRequestHandler], state: Any, tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve `handler` over `state` until the block ends, over TLS with `tls`; yields the
    base URL. Answers go out with TCP_NODELAY: an answer written as its head and then its body
    is not held for the client's delayed ACK (40 ms a request)."""
    quick = type(handler.__name__, (handler,), {"disable_nagle_algorithm": True})
    server = StateServer(("127.0.0.1", 0), quick)
    server.state = state
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


Rewrite = Callable[[str, dict[str, Any]], bool]


class _RewritingHandler(BaseHTTPRequestHandler):
    """Forwards a GET or a form POST to the upstream Prometheus; `rewrite(query, answer)` may change the JSON
    answer in place and returns whether it did (then the changed answer is sent)."""

    def do_GET(self) -> None:
        self._forward(b"")

    def do_POST(self) -> None:
        self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _forward(self, form: bytes) -> None:
        upstream_url, rewrite, seen = self.server.state  # type: ignore[attr-defined]
        upstream = requests.request(
            self.command,
            upstream_url + self.path,
            data=form or None,
            headers={"Content-Type": "application/x-www-form-urlencoded"} if form else None,
            timeout=30,
        )
        body = upstream.content
        params = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        params.update(urllib.parse.parse_qs(form.decode()))
        query = params.get("query", [""])[0]
        data = upstream.json()
        if seen is not None:
            seen.append(({name: values[0] for name, values in params.items()}, data))
        if rewrite(query, data):
            body = json.dumps(data).encode()
        self.send_response(upstream.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


Forwarded = tuple[dict[str, str], dict[str, Any]]
"""A request's parameters (query, time, ...) and the upstream's JSON answer to it."""


@contextmanager
def rewriting_prometheus(
    upstream_url: str, rewrite: Rewrite, seen: list[Forwarded] | None = None
) -> Iterator[str]:
    """A proxy to a real Prometheus whose answers `rewrite` may change; yields its base URL.
    `seen` gets every request forwarded, with the answer it got, in order."""
    with serving(_RewritingHandler, (upstream_url, rewrite, seen)) as url:
        yield url


@dataclass
class Recording:
    """The proxy of `recording_prometheus`: its URL and what went through it, in order."""

    url: str
    sent: list[Forwarded]

    @property
    def queries(self) -> list[str]:
        return [params.get("query", "") for params, _ in self.sent]


@contextmanager
def recording_prometheus(upstream_url: str) -> Iterator[Recording]:
    """A proxy to a real Prometheus that records every query and its answer, unchanged."""
    sent: list[Forwarded] = []
    with rewriting_prometheus(upstream_url, lambda query, answer: False, sent) as url:
        yield Recording(url, sent)

"""A local HTTP receiver for webhook and Slack notifications: records each JSON POST."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import StateServer, serving


@dataclass
class HookReceiver:
    status: int = 200
    bodies: list[Any] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.bodies) >= count:
                    return list(self.bodies)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} notifications, got {len(self.bodies)}")


class _Handler(BaseHTTPRequestHandler):
    server: StateServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        state = self.server.state
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with state.lock:
            state.bodies.append(json.loads(raw))
            state.headers.append(dict(self.headers.items()))
        self.send_response(state.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")


@contextmanager
def running(state: HookReceiver) -> Iterator[HookReceiver]:
    """The receiver serving `state` until the block ends; `state.url` is where to post."""
    with serving(_Handler, state) as url:
        state.url = f"{url}/hook"
        yield state

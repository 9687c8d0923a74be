"""A threaded HTTP server on a free loopback port for the stand-ins of services tests talk to."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class StateServer(ThreadingHTTPServer):
    """A server whose handlers reach the test's state object as `self.server.state`."""

    daemon_threads = True
    state: Any


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], state: Any) -> Iterator[str]:
    """Serve `handler` over `state` until the block ends; yields the base URL."""
    server = StateServer(("127.0.0.1", 0), handler)
    server.state = state
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""Caps on what one HTTP request may carry, checked before any work is done, and its arrival.

* `BodyLimit`: an ASGI middleware that answers 413 with a JSON error to a body over
  `MAX_BODY_BYTES` (by its Content-Length, or by counting a chunked body) before the app sees it.
* `MAX_EXTRAS`: at most this many placeholder values per call (each value is already capped
  in length); more answers 422.
* `has_lone_surrogate`: JSON may spell lone UTF-16 surrogates (`"\\ud800"`), which no UTF-8
  answer or store can hold; such strings are refused with 422 at the edge.
* `StampArrival` / `arrival`: when a request arrived, so that a look's budget counts the time
  the call waited for a thread.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_BODY_BYTES = 16 * 1024
"""A verdict call's body is a few hundred bytes; 16 KiB leaves room for placeholder values."""
MAX_EXTRAS = 32
"""Placeholder values per call (extra body keys or query parameters)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_ARRIVED = "verdict_arrived"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def has_lone_surrogate(text: str) -> bool:
    """Whether `text` holds a UTF-16 surrogate code point (cannot be encoded as UTF-8)."""
    return bool(_SURROGATE.search(text))


class StampArrival:
    """ASGI middleware: notes when a request arrived (`arrival`), so that a look's budget
    counts the time it waited for a thread."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[_ARRIVED] = time.monotonic()
        await self.app(scope, receive, send)


def arrival(request: Any) -> float:
    """`time.monotonic()` when `request` (a Starlette request) arrived; now if not stamped."""
    state = request.scope.get("state") or {}
    return float(state.get(_ARRIVED, time.monotonic()))


class BodyLimit:
    """ASGI middleware: a body over `max_bytes` is answered 413 before the app reads it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            text = length.decode("latin-1").strip()
            if not text.isdigit():
                await _answer(send, 400, "bad_request", "Content-Length is not a number")
                return
            if int(text) > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Send, max_bytes: int) -> None:
    await _answer(
        send,
        413,
        "body_too_large",
        f"the body is larger than {max_bytes} bytes; a call needs far less",
    )


async def _answer(send: Send, status: int, code: str, message: str) -> None:
    payload = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))
    body = payload.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

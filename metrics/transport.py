"""The HTTP transport of the Prometheus source: one urllib3 connection pool per source.

The environment is read once, when the transport is made, as requests would read it for the
source's URL: the proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, with `NO_PROXY`), the CA bundle
(`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, else certifi's) and `~/.netrc` credentials (used unless
the source's own headers carry an `Authorization`, or it has a bearer token file). A query then
costs one urllib3 request: about a third of the client CPU a `requests.Session` spends on it,
which matters when an analysis sends a dozen queries to a Prometheus that answers each in a
millisecond or two.

A bearer token file (`BearerTokenFile`) is read when a request is sent, not when the transport
is made: a token that is rotated in place (a Kubernetes projected service account token, a
Vault agent's file) is sent from the next request on. The token goes only into the request's
`Authorization` header; no error message or log line carries it.
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
import urllib.parse
from collections import deque
from typing import Any

import certifi
import requests.utils
import urllib3
from urllib3.util.retry import Retry

# connections kept open to the server: `verdict serve` asks about 16 looks at once, each of a
# few queries side by side (more at once open extra connections, closed after their answer)
_POOL_CONNECTIONS = 64
# how many of the latest requests `typical_seconds` looks at
_RECENT_REQUESTS = 16
DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024
"""The most of an answer's body a transport reads (after gzip): a raw-sample page of a large
fleet is tens of megabytes."""
_READ_CHUNK = 1024 * 1024
_MAX_ERROR_BODY = 64 * 1024  # of an error answer, only its start is read (and shown cut short)


class HTTPFailure(Exception):
    """An answer other than 200 OK (after any retries), with the server's error text."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status
        self.text = text


class TokenUnreadable(Exception):
    """The bearer token file cannot be read, or holds no token (the path is named; the file's
    content never is)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read the bearer token file {path}: {reason}")
        self.path = path
        self.reason = reason


class BearerTokenFile:
    """A bearer token kept in a file, read at request time: the file is looked at (`stat`)
    at each request and read again whenever it changed (another file put in its place, as
    Kubernetes swaps a projected token's link, or the same file rewritten)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int, int] | None = None
        self._token = ""

    def token(self) -> str:
        """The token as the file holds it now (surrounding white space left out); raises
        `TokenUnreadable`."""
        try:
            stat = os.stat(self.path)
            seen = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            with self._lock:
                if seen != self._seen:
                    with open(self.path, encoding="utf-8") as file:
                        self._token = file.read().strip()
                    self._seen = seen
                token = self._token
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TokenUnreadable(self.path, reason) from None
        if not token:
            raise TokenUnreadable(self.path, "the file is empty")
        if any(c in token for c in "\r\n\0"):
            raise TokenUnreadable(self.path, "the token holds a line break or a NUL character")
        return token


class BodyTooLarge(Exception):
    """An answer whose body is longer than the transport's `max_body_bytes` (not read further)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the answer is larger than {limit} bytes")
        self.limit = limit


class Transport:
    """Form-encoded POSTs to one server; raises `HTTPFailure` on an error status,
    `BodyTooLarge` past `max_body_bytes` of answer (the rest is not read: the connection is
    closed), and urllib3's own errors (`urllib3.exceptions.HTTPError`) or `OSError` when the
    server cannot be reached."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retry: Retry,
        headers: dict[str, str],
        max_error_text: int = 500,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        bearer_token_file: str | None = None,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be positive")
        self._bearer = BearerTokenFile(bearer_token_file) if bearer_token_file else None
        self.url = url.rstrip("/")
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._retry = retry
        self._max_error_text = max_error_text
        self.max_body_bytes = max_body_bytes
        self._headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
        authorization = any(name.lower() == "authorization" for name in self._headers)
        if authorization and self._bearer is not None:
            raise ValueError("give an Authorization header or a bearer token file, not both")
        if not authorization and self._bearer is None:
            netrc = requests.utils.get_netrc_auth(self.url)
            if netrc is not None:
                self._headers.update(urllib3.make_headers(basic_auth=":".join(netrc)))
        self._pool = _pool_manager(self.url)
        # seconds each of the latest requests took, answer read (failed ones too)
        self._recent: deque[float] = deque(maxlen=_RECENT_REQUESTS)

    def typical_seconds(self, at_least: int = 1) -> float | None:
        """The median time of the latest requests, from sending to the whole answer read:
        the server's round trip and its work on them (None before `at_least` requests)."""
        recent = list(self._recent)
        return statistics.median(recent) if recent and len(recent) >= at_least else None

    def post_form(self, path: str, fields: dict[str, str]) -> bytes:
        """The body of the answer to a form-encoded POST of `fields` to `path`."""
        began = time.monotonic()
        try:
            return self._post_form(path, fields)
        finally:
            self._recent.append(time.monotonic() - began)

    def _post_form(self, path: str, fields: dict[str, str]) -> bytes:
        headers = self._headers
        if self._bearer is not None:
            headers = {**headers, "Authorization": f"Bearer {self._bearer.token()}"}
        response = self._pool.request(
            "POST",
            self.url + path,
            body=form_encoded(fields),
            headers=headers,
            timeout=self._timeout,
            retries=self._retry,
            preload_content=False,
        )
        read_whole = False
        try:
            if response.status != 200:
                raise HTTPFailure(response.status, self._error_text(response))
            body = self._body(response)
            read_whole = True
            return body
        finally:
            if not read_whole:  # an answer left half read: its connection cannot serve another
                response.close()
            response.release_conn()

    def _body(self, response: urllib3.BaseHTTPResponse) -> bytes:
        """The answer's body, decoded, read in chunks up to `max_body_bytes`."""
        length = response.headers.get("Content-Length", "")
        encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
        if not encoded and length.isdigit() and int(length) > self.max_body_bytes:
            raise BodyTooLarge(self.max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.stream(_READ_CHUNK, decode_content=True):
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            chunks.append(chunk)
        return b"".join(chunks)

    def _error_text(self, response: urllib3.BaseHTTPResponse) -> str:
        """Prometheus' error (`errorType: error`) or the answer's text, cut short."""
        start = response.read(_MAX_ERROR_BODY, decode_content=True)
        text = start.decode("utf-8", "replace").strip()
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("error"):
            kind = body.get("errorType")
            text = f"{kind}: {body['error']}" if kind else str(body["error"])
        if len(text) > self._max_error_text:
            text = text[: self._max_error_text] + "..."
        return text or response.reason or "no error text"

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.clear()


_FORM_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def form_encoded(fields: dict[str, str]) -> str:
    """`urllib.parse.urlencode(fields)`, the same text, made by one `str.replace` per character
    to escape instead of a Python step per character: a batched look's query is some 10 KiB
    of PromQL, and escaping it character by character cost about 1 ms a request."""
    return "&".join(f"{_form_part(str(k))}={_form_part(str(v))}" for k, v in fields.items())


def _form_part(text: str) -> str:
    if not text.isascii():
        return urllib.parse.quote_plus(text)
    escape = set(text) - _FORM_SAFE
    if not escape:
        return text
    if "%" in escape:  # first, so that no escape made below is escaped again
        text = text.replace("%", "%25")
        escape.discard("%")
    space = " " in escape
    escape.discard(" ")
    for char in escape:
        text = text.replace(char, f"%{ord(char):02X}")
    return text.replace(" ", "+") if space else text  # last: "+" itself is escaped above


def _pool_manager(url: str) -> urllib3.PoolManager:
    """A pool for `url`: through the environment's proxy for it, verifying TLS against the
    environment's CA bundle."""
    verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    )
    tls: dict[str, Any] = {"cert_reqs": "CERT_REQUIRED"}
    tls["ca_cert_dir" if os.path.isdir(verify) else "ca_certs"] = verify
    proxy = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    if not proxy:
        return urllib3.PoolManager(maxsize=_POOL_CONNECTIONS, **tls)
    if proxy.lower().startswith("socks"):
        from urllib3.contrib.socks import SOCKSProxyManager  # needs PySocks, as with requests

        return SOCKSProxyManager(proxy, maxsize=_POOL_CONNECTIONS, **tls)
    user, password = requests.utils.get_auth_from_url(proxy)
    proxy_headers = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
    return urllib3.ProxyManager(
        proxy if "://" in proxy else f"http://{proxy}",
        proxy_headers=proxy_headers,
        maxsize=_POOL_CONNECTIONS,
        **tls,
    )

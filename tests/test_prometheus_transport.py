"""The Prometheus source's HTTP transport reads the environment as requests would: `~/.netrc`
credentials, the CA bundle, a proxy and its credentials. Tested against local HTTP(S) servers."""

from __future__ import annotations

import base64
import http.server
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from metrics.errors import SourceUnavailable
from metrics.prometheus import PrometheusSource
from tests.local_http import serving

VECTOR = b'{"status":"success","data":{"resultType":"vector","result":[]}}'


class _Recording(http.server.BaseHTTPRequestHandler):
    """Answers every query with an empty vector and keeps each request's path and headers
    (names in lower case) in the server's state, a list."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        seen = self.server.state  # type: ignore[attr-defined]
        seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(VECTOR)))
        self.end_headers()
        self.wfile.write(VECTOR)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _server(tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, list[tuple[str, dict[str, str]]]]]:
    seen: list[tuple[str, dict[str, str]]] = []
    with serving(_Recording, seen, tls) as url:
        yield int(url.rsplit(":", 1)[1]), seen


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_netrc_credentials_are_sent_unless_the_headers_carry_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login reader password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with _server() as (port, seen):
        url = f"http://127.0.0.1:{port}"
        PrometheusSource(url, retries=0).check()
        PrometheusSource(url, retries=0, headers={"Authorization": "Bearer t0ken"}).check()
    assert [headers.get("authorization") for _, headers in seen] == [
        _basic("reader", "s3cret"),
        "Bearer t0ken",
    ]


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_tls_is_verified_against_the_environments_ca_bundle(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with _server(context) as (port, seen):
        url = f"https://127.0.0.1:{port}"
        with pytest.raises(SourceUnavailable, match="TLS failed"):
            PrometheusSource(url, retries=0).check()  # not signed by a known authority
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        PrometheusSource(url, retries=0).check()
    assert [path for path, _ in seen] == ["/api/v1/query"]


def test_the_proxy_and_its_credentials_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the proxy here answers as Prometheus would: what matters is that the source asked it,
    # for the Prometheus URL, with the proxy's credentials
    monkeypatch.setenv("NO_PROXY", "")
    with _server() as (port, seen):
        monkeypatch.setenv("HTTP_PROXY", f"http://user:pa55@127.0.0.1:{port}")
        PrometheusSource("http://prometheus.invalid:9090", retries=0).check()
    [(path, headers)] = seen
    assert path == "http://prometheus.invalid:9090/api/v1/query"
    assert headers.get("proxy-authorization") == _basic("user", "pa55")

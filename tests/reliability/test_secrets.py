"""No secret leaks: URL user-info and credential header values are masked wherever Verdict
shows a URL or a header — `/readyz`, 503 answers (which Argo stores), logs and CLI stderr."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import structlog
from fastapi.testclient import TestClient

from analyzer import logs
from analyzer.redaction import MASK, Redactor, redact
from tests.conftest import PrometheusServer, free_port
from tests.helpers import example_analysis, run_verdict, write_analysis
from tests.test_serve_api import Clock, body, make_app, minutes

PASSWORD = "s3cretpw"
TOKEN = "tok-4f9a1c7e"


@pytest.mark.parametrize(
    ("text", "hidden", "kept"),
    [
        ("Prometheus at http://user:s3cretpw@prom:9090 is down", "s3cretpw", "http://user:***@prom:9090"),
        ("https://tok-4f9a1c7e@prom.example/api", "tok-4f9a1c7e", "https://***@prom.example/api"),
        ("http://u:p%40ss:word@h/x", "p%40ss:word", "http://u:***@h/x"),
        ("GET /q?query=up&access_token=tok-4f9a1c7e", "tok-4f9a1c7e", "access_token=***"),
        ("headers {'Authorization': 'Bearer tok-4f9a1c7e'}", "tok-4f9a1c7e", "'Authorization': 'Bearer ***'"),
        ("X-Api-Key: tok-4f9a1c7e", "tok-4f9a1c7e", "X-Api-Key: ***"),
    ],
)  # fmt: skip
def test_urls_and_credential_headers_are_masked_in_text(text: str, hidden: str, kept: str) -> None:
    masked = redact(text)
    assert hidden not in masked and kept in masked


def test_known_secrets_and_credential_keys_are_masked_in_nested_values() -> None:
    redactor = Redactor.of([{"Authorization": f"Bearer {TOKEN}", "X-Scope-OrgID": "tenant-1"}])
    value = {
        "message": f"upstream said: invalid token {TOKEN}",
        "headers": {"authorization": "Basic dXNlcjpwYXNz", "X-Scope-OrgID": "tenant-1"},
        f"prometheus http://u:{PASSWORD}@h": "ok",
    }
    masked = json.dumps(redactor.value(value))
    assert TOKEN not in masked and "dXNlcjpwYXNz" not in masked and PASSWORD not in masked
    assert "tenant-1" in masked  # a header that is not a credential stays readable
    assert redactor.text("plain words stay") == "plain words stay"


def test_readyz_and_503_answers_do_not_show_the_prometheus_password(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    url = f"http://verdict:{PASSWORD}@127.0.0.1:{free_port()}"
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    stream = io.StringIO()
    logs.configure(json=True, level="debug")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    try:
        app = make_app(prometheus, f"sqlite:///{tmp_path / 'r.sqlite'}", clock, prometheus_url=url)
        with TestClient(app) as client:
            ready = client.get("/readyz")
            start = prometheus.scenarios["healthy"].start.isoformat()
            look = client.post("/api/v1/verdict", json=body("healthy", start=start))
    finally:
        structlog.reset_defaults()
    assert ready.status_code == 503 and look.status_code == 503
    for answer in (ready, look):
        assert PASSWORD not in answer.text, answer.text
        assert "verdict:***@127.0.0.1" in answer.text
    assert "connection refused" in look.json()["error"]["message"]
    assert "prometheus unavailable" in stream.getvalue()  # the log line is there...
    assert PASSWORD not in stream.getvalue()  # ...without the password


class _EchoHeaders(BaseHTTPRequestHandler):
    """A broken 'Prometheus' answering 500 with the request's headers in its error text."""

    def do_GET(self) -> None:
        self._echo()

    def do_POST(self) -> None:
        self._echo()

    def _echo(self) -> None:
        text = json.dumps(
            {"status": "error", "error": f"bad request headers: {dict(self.headers)}"}
        )
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(text.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoHeaders)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_analyze_stderr_masks_the_url_password_and_header_tokens(
    echo_server: str, tmp_path: Path
) -> None:
    data = example_analysis()
    data["prometheus"] = {
        "url": f"http://verdict:{PASSWORD}@{echo_server}",
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "retries": 0,
    }
    config = write_analysis(tmp_path / "a.yaml", data)
    result = run_verdict(
        "analyze", "--config", str(config), "--start", "2026-11-01T10:00:00Z",
        "--end", "2026-11-01T10:30:00Z", "--output", "json",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    assert "HTTP 500" in result.stderr and "bad request headers" in result.stderr
    assert PASSWORD not in result.stderr and TOKEN not in result.stderr, result.stderr
    assert MASK in result.stderr


def test_grafana_tokens_and_webhook_urls_are_known_secrets(tmp_path: Path) -> None:
    from analyzer.cli import _notify_secrets
    from analyzer.spec import parse_analysis

    token_file = tmp_path / "grafana-token"
    token_file.write_text("glsa_0123456789abcdef\n")
    data = example_analysis()
    data["grafana"] = {"url": "http://grafana:3000", "tokenFile": str(token_file)}
    data["notifications"] = [
        {"type": "slack", "url": "https://hooks.slack.com/services/T000/B000/XyZ123secret"}
    ]
    spec = parse_analysis(data, "a.yaml")
    redactor = Redactor.of([], *_notify_secrets([spec], None))
    text = redactor.text(
        "slack answered 404 for https://hooks.slack.com/services/T000/B000/XyZ123secret; "
        "grafana rejected glsa_0123456789abcdef"
    )
    assert "XyZ123secret" not in text and "glsa_0123456789abcdef" not in text

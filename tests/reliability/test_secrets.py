"""No secret leaks: URL user-info and credential header values are masked wherever Verdict
shows a URL or a header — `/readyz`, 503 answers (which Argo stores), logs and CLI stderr."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import structlog
from fastapi.testclient import TestClient

from analyzer import logs
from analyzer.redaction import MASK, Redactor, redact
from tests.canary_world import install, rollout_file
from tests.conftest import PrometheusServer, free_port
from tests.helpers import example_analysis, run_verdict, write_analysis
from tests.kube_server import KubeServer
from tests.reliability.serve_process import serve
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


# --- every path masked, every message intact ----------------------------------------------------

SPACED = 'Sup3r S3"cret'  # a password with a space and a quote: no URL pattern sees its end


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cannot read /nonexistent/token: No such file or directory",
         "cannot read /nonexistent/token: No such file or directory"),
        ("--token-file: cannot read token: No such file or directory",
         "--token-file: cannot read token: No such file or directory"),
        ("HTTP 401: unauthorized (Authorization: Bearer tok-4f9a1c7e)",
         "HTTP 401: unauthorized (Authorization: Bearer ***)"),
        ("HTTP 401 (bad access_token=tok-4f9a1c7e)", "HTTP 401 (bad access_token=***)"),
        ("unknown run store 'x': use sqlite:///path.db or postgresql://user:password@host:5432/db",
         "unknown run store 'x': use sqlite:///path.db or postgresql://user:password@host:5432/db"),
        ("expected an http(s) URL, got 'promuser:Sup3rS3cretPW@host:9090'",
         "expected an http(s) URL, got 'promuser:***@host:9090'"),
        ("webhook: HTTP 400 {'X-Signature': 'sha256=0a1b2c', 'X-Team': 'checkout'}",
         "webhook: HTTP 400 {'X-Signature': '***', 'X-Team': 'checkout'}"),
        ("X-Hub-Signature-256: sha256=0a1b2c", "X-Hub-Signature-256: ***"),
        ("at 10:30 the look answered; see git@github.com:org/repo",
         "at 10:30 the look answered; see git@github.com:org/repo"),
    ],
)  # fmt: skip
def test_masking_hides_the_secret_and_keeps_the_message(text: str, shown: str) -> None:
    assert redact(text) == shown


def test_configured_url_passwords_are_masked_even_with_a_space_or_a_quote() -> None:
    from analyzer.redaction import url_secrets

    redactor = Redactor.of([], *url_secrets(f"http://verdict:{SPACED}@prom:9090"))
    for text in (
        f"Prometheus at http://verdict:{SPACED}@prom:9090 is unreachable",
        repr(f"http://verdict:{SPACED}@prom:9090"),
        json.dumps({"url": f"http://verdict:{SPACED}@prom:9090"}),
    ):
        masked = redactor.text(text)
        assert "S3cret" not in masked and "Sup3r" not in masked, masked
        assert "verdict:***@prom:9090" in masked, masked


def test_analyze_masks_a_scheme_less_url_and_a_password_with_a_space(tmp_path: Path) -> None:
    config = str(write_analysis(tmp_path / "a.yaml", example_analysis()))
    window = ("--start", "2026-11-01T10:00:00Z", "--end", "2026-11-01T10:30:00Z")
    bare = run_verdict(
        "analyze", "--config", config, *window, "--prometheus-url", f"verdict:{SPACED}@prom:9090"
    )
    assert bare.returncode == 2, bare.stderr
    assert "expected an http(s) URL" in bare.stderr and "verdict:***@prom:9090" in bare.stderr
    down = run_verdict(
        "analyze", "--config", config, *window, "--timeout", "2", "--prometheus-url",
        f"http://verdict:{SPACED}@127.0.0.1:{free_port()}",
    )  # fmt: skip
    assert down.returncode == 4, down.stderr
    assert "verdict:***@127.0.0.1" in down.stderr and "unreachable" in down.stderr
    for result in (bare, down):
        assert "S3cret" not in result.stderr + result.stdout, result.stderr
        assert "Sup3r" not in result.stderr + result.stdout, result.stderr


def test_canary_run_error_line_masks_the_prometheus_password(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    port = free_port()
    config = rollout_file(tmp_path / "r.yaml", f"http://promuser:{PASSWORD}@127.0.0.1:{port}")
    result = run_verdict(
        "canary", "run", "--config", str(config), "--output", "json",
        "--kubeconfig", str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
        "--store", f"sqlite:///{tmp_path / 'r.sqlite'}",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"error: Prometheus at http://promuser:***@127.0.0.1:{port} is unreachable: "
        "connection refused (3 attempts)"
    ), last
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.prometheus
def test_readyz_and_the_log_mask_passwords_with_a_space_in_prometheus_and_store_urls(
    tmp_path: Path,
) -> None:
    data = example_analysis()
    data["prometheus"] = {"url": f"http://verdict:{SPACED}@127.0.0.1:{free_port()}"}
    config = write_analysis(tmp_path / "a.yaml", data)
    store = f"postgresql://verdict:{SPACED}@127.0.0.1:{free_port()}/verdict"  # psycopg echoes it
    with serve("--config", str(config), "--store", store, log=tmp_path / "serve.log") as server:
        ready = httpx.get(f"{server.url}/readyz", timeout=10)
        log = server.log.read_text()
    assert ready.status_code == 503, ready.text
    checks = ready.json()["checks"]
    assert "verdict:***@127.0.0.1" in checks["store"], checks  # the store, named without it
    assert "unexpected spaces found in" in checks["store"], checks  # psycopg's own words...
    assert any(k.startswith("prometheus http://verdict:***@127.0.0.1") for k in checks), checks
    for text in (ready.text, log):
        assert "S3cret" not in text and "Sup3r" not in text, text  # ...without the password


class _EchoRequest(BaseHTTPRequestHandler):
    """A webhook target that refuses every request, quoting its path and headers."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        text = f"bad request to {self.path} with headers {dict(self.headers)}".encode()
        self.send_response(400)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def log_message(self, *args: object) -> None:
        pass


def test_a_webhook_that_echoes_the_request_gets_no_secret_logged(tmp_path: Path) -> None:
    from analyzer.cli import secrets_redactor
    from analyzer.notify import build_notifier
    from analyzer.spec import parse_analysis
    from tests.test_notify import step_events

    signature, slack_path = "sha256=9f86d081884c7d65", "/services/T0001/B0001/XyZ123secretXyZ123"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoRequest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    data = example_analysis()
    data["notifications"] = [
        {"type": "webhook", "url": f"{base}/hook", "headers": {"X-Signature": signature}},
        {"type": "slack", "url": f"{base}{slack_path}"},
    ]
    spec = parse_analysis(data, "a.yaml")
    stream = io.StringIO()
    logs.configure(json=True, level="info", redactor=secrets_redactor([spec]))  # as serve does
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    try:
        notifier = build_notifier(None, spec.notifications)
        notifier.post(step_events()[3])  # a decision
        notifier.close(timeout=10)
    finally:
        structlog.reset_defaults()
        server.shutdown()
        server.server_close()
    failed = [json.loads(line) for line in stream.getvalue().splitlines() if "HTTP 400" in line]
    errors = {e["target"].split("-")[0]: e["error"] for e in failed}
    assert set(errors) == {"webhook", "slack"}, stream.getvalue()
    # the answers are still shown...
    assert "bad request to /hook with headers {'Host'" in errors["webhook"]
    assert "'X-Signature': '***" in errors["webhook"]
    assert "bad request to *** with headers {'Host'" in errors["slack"]
    for secret in (signature, slack_path, "XyZ123secretXyZ123"):  # ...without the secrets
        assert secret not in stream.getvalue(), stream.getvalue()

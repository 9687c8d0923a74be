"""Logs: one JSON object per line in production mode, exceptions and uvicorn's records included;
SIGTERM with a look in flight finishes the look and exits 0."""

from __future__ import annotations

import io
import json
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from analyzer import logs
from tests.conftest import PrometheusServer, SlowProxy
from tests.reliability.serve_process import analyses_folder, serve


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_an_exception_is_one_json_line_with_its_traceback(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    logs.configure(json=True, level="info", capture_stdlib=True)
    try:
        raise RuntimeError("boom at http://u:pw12345@db")
    except RuntimeError:
        structlog.get_logger().exception("unexpected error", path="/api/v1/verdict")
        logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    for line in lines:
        entry = json.loads(line)
        assert "Traceback" in entry["exception"] and "RuntimeError: boom" in entry["exception"]
        assert "exc_info" not in entry and "pw12345" not in line
        assert entry["level"] == "error" and entry["timestamp"]
    assert json.loads(lines[1])["logger"] == "uvicorn.error"


def test_sigterm_finishes_the_look_in_flight_and_exits_0_with_json_logs_only(
    prometheus: PrometheusServer, slow_prometheus: SlowProxy, tmp_path: Path
) -> None:
    slow_prometheus.delay = 1.0
    folder = analyses_folder(prometheus, tmp_path / "analyses", url=slow_prometheus.url)
    request = {
        "analysis": "healthy", "namespace": "shop", "rollout": "web", "canaryHash": "aaa111",
        "stableHash": "bbb222", "start": prometheus.scenarios["healthy"].start.isoformat(),
    }  # fmt: skip
    store = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with serve("--config", str(folder), "--store", store, log=tmp_path / "serve.log") as server:
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as garbage:  # uvicorn logs a warning
            garbage.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            garbage.recv(1024)
        answers: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{server.url}/api/v1/verdict", json=request, timeout=30)
            )
        )
        worker.start()
        threading.Event().wait(0.5)  # the look is waiting on the slow Prometheus
        server.process.send_signal(signal.SIGTERM)
        worker.join(timeout=30)
        code = server.process.wait(timeout=30)
        entries = server.json_lines()  # raises if any line is not JSON
    assert code == 0, server.lines()
    assert answers and answers[0].status_code == 200, answers
    assert answers[0].json()["result"]["run"]["looks"] == 1
    events = [e.get("event", "") for e in entries]
    assert "look answered" in events
    assert any("Invalid HTTP request" in e for e in events), events


def test_console_logs_outside_production_still_show_the_exception(
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    logs.configure(json=False, level="info")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    try:
        raise ValueError("detail")
    except ValueError:
        structlog.get_logger().exception("failed")
    assert "ValueError: detail" in stream.getvalue()

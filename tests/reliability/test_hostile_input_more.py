"""More hostile input: Prometheus answers too large to read (bytes or series), run rows the store
cannot read back, durations past what a float holds, absurd look counts in a rollout, broken
files and URLs given to `verdict canary run`, and Ctrl-C on `verdict analyze`."""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import structlog
import yaml
from fastapi.testclient import TestClient

from analyzer.api import PrometheusSources, ServeSettings, create_app
from analyzer.clock import SystemClock
from analyzer.runs.store import open_store
from analyzer.spec import parse_analysis
from tests.canary_world import rollout_file
from tests.conftest import PrometheusServer, free_port
from tests.helpers import REPO, example_analysis, run_verdict, write_analysis
from tests.kube_server import KubeServer
from tests.local_http import serving
from tests.test_serve_api import Clock, body, make_app, minutes

WINDOW = ("--start", "2026-11-01T10:00:00Z", "--end", "2026-11-01T10:30:00Z")


def _one_line(result: subprocess.CompletedProcess[str], code: int, *expected: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for text in expected:
        assert text in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


# --- answers too large to read ------------------------------------------------------------------


@dataclass
class _Answer:
    """What the oversized 'Prometheus' answers: `bytes`, a vector whose one value is a string
    of `size` bytes, streamed in chunks with no length given (a runaway answer), or `series`,
    a well-formed vector of `size` series."""

    kind: str = "bytes"
    size: int = 64 * 1024 * 1024


class _Oversized(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        answer: _Answer = self.server.state  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if answer.kind == "series":
                series = ",".join(
                    f'{{"metric":{{"pod":"p{i}"}},"value":[1,"1"]}}' for i in range(answer.size)
                )
                self._chunk(f'{{"status":"success","data":{{"resultType":"vector","result":['
                            f'{series}]}}}}'.encode())  # fmt: skip
            else:
                self._chunk(b'{"status":"success","data":{"resultType":"vector","result":'
                            b'[{"metric":{},"value":[1,"')  # fmt: skip
                piece = b"9" * 65536
                for _ in range(answer.size // len(piece)):
                    self._chunk(piece)
                self._chunk(b'"]}]}}')
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader stopped reading: what a cap does

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def oversized() -> Iterator[tuple[str, _Answer]]:
    """A 'Prometheus' whose answers are too large (set the `_Answer` before asking)."""
    answer = _Answer()
    with serving(_Oversized, answer) as url:
        yield url, answer


def _capped_analysis(tmp_path: Path, url: str, **limits: int) -> Path:
    data = example_analysis()
    data["prometheus"] = {"url": url, "retries": 0, "timeout": "20s", **limits}
    return write_analysis(tmp_path / "capped.yaml", data)


def test_an_answer_past_max_answer_bytes_exits_4_with_one_line_and_stops_reading(
    oversized: tuple[str, _Answer], tmp_path: Path
) -> None:
    url, answer = oversized
    answer.kind, answer.size = "bytes", 64 * 1024 * 1024  # far past the 64 KiB cap
    config = _capped_analysis(tmp_path, url, maxAnswerBytes=65536)
    began = time.monotonic()
    result = run_verdict("analyze", "--config", str(config), *WINDOW, "--output", "json")
    took = time.monotonic() - began
    _one_line(result, 4, "with more than 64 KiB", "prometheus.maxAnswerBytes")
    assert result.stdout == ""
    assert took < 20, f"took {took:.1f} s: the answer was read on past the cap"


def test_an_answer_past_max_series_exits_4_before_it_is_parsed(
    oversized: tuple[str, _Answer], tmp_path: Path
) -> None:
    url, answer = oversized
    answer.kind, answer.size = "series", 5000
    config = _capped_analysis(tmp_path, url, maxSeries=1000)
    result = run_verdict("analyze", "--config", str(config), *WINDOW, "--output", "json")
    _one_line(result, 4, "with more than 1,000 series", "prometheus.maxSeries")
    # the same answer under the cap is read (no series match the canary: not a size error)
    answer.size = 500
    under = run_verdict("analyze", "--config", str(config), *WINDOW, "--output", "json")
    assert "maxSeries" not in under.stderr and "maxAnswerBytes" not in under.stderr, under.stderr


def test_an_answer_too_large_is_a_503_json_error_for_the_web_provider(
    oversized: tuple[str, _Answer], tmp_path: Path
) -> None:
    url, answer = oversized
    answer.kind, answer.size = "bytes", 8 * 1024 * 1024
    data = example_analysis()
    data.update(name="capped", prometheus={"url": url, "retries": 0, "maxAnswerBytes": 65536})
    now = datetime.now(UTC).replace(microsecond=0)
    settings = ServeSettings()
    app = create_app(
        analyses={"capped": parse_analysis(data, "capped")},
        store=open_store(f"sqlite:///{tmp_path / 'r.sqlite'}"),
        sources=PrometheusSources(look_budget=settings.look_budget),
        clock=SystemClock(),
        settings=settings,
    )
    start = (now - timedelta(minutes=10)).isoformat()
    with TestClient(app) as client:
        look = client.post("/api/v1/verdict", json=body("capped", start=start))
    assert look.status_code == 503, look.text
    error = look.json()["error"]
    assert error["code"] == "prometheus_bad_data"
    assert "with more than 64 KiB" in error["message"]
    assert "prometheus.maxAnswerBytes" in error["message"]


def test_answer_limits_are_validated_in_the_analysis_file(tmp_path: Path) -> None:
    data = example_analysis()
    data["prometheus"] = {"url": "http://127.0.0.1:9090", "maxAnswerBytes": 10, "maxSeries": 0}
    config = write_analysis(tmp_path / "a.yaml", data)
    result = run_verdict("analyze", "--config", str(config), *WINDOW)
    assert result.returncode == 2, result.stderr
    assert "prometheus.maxAnswerBytes" in result.stderr and "prometheus.maxSeries" in result.stderr


# --- run rows the store cannot read back ----------------------------------------------------------


@pytest.mark.prometheus
def test_one_unreadable_run_row_is_left_out_of_lists_and_refused_by_name(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    path = tmp_path / "runs.sqlite"
    store = f"sqlite:///{path}"
    clock = Clock(prometheus.scenarios["healthy"].start + minutes(10))
    with TestClient(make_app(prometheus, store, clock)) as client:
        for canary in ("c1", "c2", "c3"):  # first calls: each stores a run
            assert client.post("/api/v1/verdict", json=body("healthy", canary)).status_code == 200
        runs = {r["canaryHash"]: r["id"] for r in client.get("/api/v1/runs").json()["runs"]}
    bad = runs["c2"]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE verdict_runs SET answer = '{not json' WHERE id = ?", (bad,))

    with (
        structlog.testing.capture_logs() as logged,
        TestClient(make_app(prometheus, store, clock)) as client,
    ):
        listed = client.get("/api/v1/runs")
        shown = client.get(f"/api/v1/runs/{bad}")
        good = client.get(f"/api/v1/runs/{runs['c1']}")
        look = client.post("/api/v1/verdict", json=body("healthy", "c2"))
        other_look = client.post("/api/v1/verdict", json=body("healthy", "c3"))
    assert listed.status_code == 200, listed.text
    assert sorted(r["canaryHash"] for r in listed.json()["runs"]) == ["c1", "c3"]
    assert any(e.get("run") == bad and "left out" in e["event"] for e in logged), logged
    for answer in (shown, look):
        assert answer.status_code == 503, answer.text
        error = answer.json()["error"]
        assert error["code"] == "store_unavailable"
        assert f"run {bad} in the run store cannot be read" in error["message"]
        assert "answer: not valid JSON" in error["message"]
    assert good.status_code == 200 and other_look.status_code == 200

    listed_cli = run_verdict("runs", "list", "--store", store, "--output", "json")
    assert listed_cli.returncode == 0, listed_cli.stderr
    assert sorted(r["canaryHash"] for r in json.loads(listed_cli.stdout)["runs"]) == ["c1", "c3"]
    assert bad in listed_cli.stderr and "Traceback" not in listed_cli.stderr
    shown_cli = run_verdict("runs", "show", bad, "--store", store)
    _one_line(shown_cli, 5, f"run {bad} in the run store cannot be read")


# --- durations past a float, looks past the cap, broken files --------------------------------------


@pytest.mark.parametrize("key", ["interval", "preRunWindow", "prometheus.timeout"])
def test_an_integer_duration_of_10_to_the_400_exits_2_in_analyze_and_serve(
    key: str, tmp_path: Path
) -> None:
    data = example_analysis()
    if key == "prometheus.timeout":
        data["prometheus"] = {"url": "http://127.0.0.1:9090", "timeout": 10**400}
    else:
        data[key] = 10**400
    config = str(write_analysis(tmp_path / "a.yaml", data))
    analyzed = run_verdict("analyze", "--config", config, *WINDOW)
    _one_line(analyzed, 2, f"{key}: a duration must be at most 366 days")
    store = f"sqlite:///{tmp_path / 'r.sqlite'}"
    served = run_verdict("serve", "--config", config, "--store", store, "--port", str(free_port()))
    _one_line(served, 2, f"{key}: a duration must be at most 366 days")


def _canary_run(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_verdict("canary", "run", "--config", str(config), "--output", "json", *extra)


def test_canary_run_refuses_a_step_duration_of_10_to_the_400(tmp_path: Path) -> None:
    config = rollout_file(tmp_path / "r.yaml", "http://127.0.0.1:9090", stepDuration=10**400)
    _one_line(_canary_run(config), 2, "rollout: stepDuration: a duration must be at most 366 days")


def _rollout(tmp_path: Path, interval: object, **rollout: object) -> Path:
    path = rollout_file(tmp_path / "r.yaml", "http://127.0.0.1:9090", **rollout)
    data = yaml.safe_load(path.read_text())
    data["interval"] = interval
    return write_analysis(path, data)


@pytest.mark.parametrize(
    ("interval", "rollout", "expected"),
    [
        (0.001, {}, "interval: a rollout looks at most once a second, got 0.001s"),
        ("1s", {"stepDuration": "1h"}, "rollout.stepDuration of 3600s holds 3600 intervals"),
        ("1s", {"stepDuration": "1h"}, "widen `interval` to at least 2s"),
        (
            "1s",
            {"strategy": "blueGreen", "activeService": "checkout", "blue": {"v": "1"},
             "green": {"v": "2"}, "validationPeriod": "2h"},
            "rollout.validationPeriod of 7200s holds 7200 intervals",
        ),
    ],
)  # fmt: skip
def test_canary_run_refuses_an_absurd_number_of_looks(
    interval: object, rollout: dict[str, object], expected: str, tmp_path: Path
) -> None:
    _one_line(_canary_run(_rollout(tmp_path, interval, **rollout)), 2, expected)


def test_canary_run_accepts_a_step_of_2000_looks(tmp_path: Path) -> None:
    """The cap's edge: 2000 looks of 1 s pass validation (the run then stops at the missing
    kubeconfig, exit 2 for another reason)."""
    config = _rollout(tmp_path, "1s", stepDuration="2000s")
    result = _canary_run(config, "--kubeconfig", str(tmp_path / "none"))
    _one_line(result, 2, "cannot read kubeconfig")


def test_canary_run_on_a_file_that_is_not_utf8_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"name: \xff\xfe checkout\nrollout: {}\n")
    _one_line(_canary_run(path), 2, "not UTF-8 text (byte 6)")


@pytest.mark.parametrize(
    ("kubeconfig", "expected"),
    [
        (b"\x00\x01garbage: [\n{{{", "special characters are not allowed"),
        (b"{", "expected the node content"),
        (b"- a\n- b\n", "cannot use kubeconfig"),
        (b"\xff\xfe\x00", "can't decode byte 0xff"),
        (b"apiVersion: v1\ncontexts: [5]\ncurrent-context: x\n", "cannot use kubeconfig"),
    ],
)
def test_canary_run_with_a_garbage_kubeconfig_exits_2(
    kubeconfig: bytes, expected: str, tmp_path: Path
) -> None:
    config = rollout_file(tmp_path / "r.yaml", "http://127.0.0.1:9090")
    path = tmp_path / "kubeconfig"
    path.write_bytes(kubeconfig)
    result = _canary_run(config, "--kubeconfig", str(path))
    _one_line(result, 2, f"cannot use kubeconfig {path}", expected)


def test_canary_run_with_a_store_port_out_of_range_exits_2(
    kube: KubeServer, tmp_path: Path
) -> None:
    config = rollout_file(tmp_path / "r.yaml", "http://127.0.0.1:9090")
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    result = _canary_run(
        config, "--kubeconfig", str(kubeconfig),
        "--store", "postgresql://verdict:s3cretpw@127.0.0.1:99999/verdict",
    )  # fmt: skip
    line = _one_line(result, 2, "--store: 'postgresql://verdict:***@127.0.0.1:99999/verdict'")
    assert "Port out of range" in line and "s3cretpw" not in result.stderr
    assert kube.writes() == []  # stopped before anything moved


# --- Ctrl-C -------------------------------------------------------------------------------------


@pytest.fixture
def silent_prometheus() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _connected_to(port: int, process: subprocess.Popen[str], within: float = 60.0) -> None:
    """Wait until a connection to 127.0.0.1:`port` is established (/proc/net/tcp), i.e. the
    command is past its start-up and asking the server (a fixed sleep was too short on a
    loaded machine, where a signal then came while the interpreter was still importing)."""
    deadline = time.monotonic() + within
    target = f"0100007F:{port:04X}"
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        with open("/proc/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        if any(row[2] == target and row[3] == "01" for row in rows):  # 01: ESTABLISHED
            time.sleep(0.2)
            return
        time.sleep(0.05)
    raise AssertionError(f"no connection to port {port} within {within:g} s")


@pytest.mark.parametrize("output", ["json", "text"])
def test_ctrl_c_on_analyze_exits_130_not_the_fail_code(silent_prometheus: str, output: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "analyze", "--config",
         str(REPO / "analyzer" / "examples" / "checkout.yaml"), *WINDOW,
         "--prometheus-url", silent_prometheus, "--timeout", "60", "--output", output],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as from a terminal: Ctrl-C not ignored, whatever this test process inherited
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        _connected_to(int(silent_prometheus.rsplit(":", 1)[1]), process)  # asking it now
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, (process.returncode, err)
    assert err.strip() == "error: interrupted", err
    assert out == ""

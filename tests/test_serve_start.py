"""`verdict serve` as an operator starts it: it says where it listens and when it stopped (JSON
log lines on stderr, like every line it writes), reads a folder that holds more than analyses,
and tells a client that forgot the JSON content type what is wrong."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.helpers import REPO, stop_process

ARGO = REPO / "examples" / "argo"


def _lines(log: Path) -> list[dict[str, object]]:
    """Every stderr line of serve, each parsed as JSON (a line that is not fails the test)."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


@contextmanager
def serving(tmp_path: Path, config: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`verdict serve --config config` on a free port, until its `listening on` line."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "analyzer.cli", "serve", "--config", str(config),
             "--host", "127.0.0.1", "--port", str(port), "--prometheus-url", "http://127.0.0.1:1",
             "--store", f"sqlite:///{tmp_path / 'runs.sqlite'}"],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while not any(e.get("event") == f"listening on {url}" for e in _lines(log)):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"verdict serve did not say it listens:\n{log.read_text()}")
            time.sleep(0.1)
        yield process, url, log
    finally:
        if process.poll() is None:
            stop_process(process)


def test_serve_says_where_it_listens_and_that_it_stopped(tmp_path: Path) -> None:
    with serving(tmp_path, REPO / "analyzer" / "examples" / "checkout.yaml") as (process, url, log):
        # it listens where it says, at once
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    events = [str(e["event"]) for e in _lines(log)]  # JSON lines only
    listening = events.index(f"listening on {url}")
    assert events.index("verdict serve starting") < listening
    assert events[-1].startswith("verdict serve stopped")


def test_serve_a_folder_of_analyses_and_manifests_skips_the_manifests(tmp_path: Path) -> None:
    with serving(tmp_path, ARGO) as (_, url, log):
        openapi = httpx.get(f"{url}/openapi.json", timeout=5).json()
    assert '"checkout"' in json.dumps(openapi)  # examples/argo/analysis.yaml is served
    skipped = {
        Path(str(e["event"]).split(":")[0]).name: str(e["event"])
        for e in _lines(log)
        if str(e["event"]).endswith("skipped")
    }
    expected = {p.name for p in ARGO.glob("*.yaml")} - {"analysis.yaml"}
    assert set(skipped) == expected
    assert "a Kubernetes Rollout, not an analysis" in skipped["rollout.yaml"]
    assert "not an analysis" in skipped["bluegreen-analyses.yaml"]  # Helm values
    assert "several YAML documents" in skipped["rollout-canary-istio.yaml"]


def test_serve_still_refuses_a_broken_analysis_in_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "analyses"
    folder.mkdir()
    (folder / "typo.yaml").write_text(
        "name: checkout\ncanary: {a: b}\nbaseline: {a: c}\nmetric: []\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "serve", "--config", str(folder),
         "--store", f"sqlite:///{tmp_path / 'runs.sqlite'}"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 2
    assert "metric: unknown key" in result.stderr


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        (
            {"Content-Type": "application/x-www-form-urlencoded"},
            "`Content-Type: application/x-www-form-urlencoded`",
        ),
        ({"Content-Type": "text/plain"}, "`Content-Type: text/plain`"),
        ({}, "no Content-Type"),
    ],
)
def test_a_body_sent_without_the_json_content_type_gets_415_naming_it(
    tmp_path: Path, headers: dict[str, str], named: str
) -> None:
    body = json.dumps(
        {"analysis": "checkout", "namespace": "shop", "rollout": "checkout",
         "canaryHash": "7d9f8c6b5", "stableHash": "5c4b3a291"}
    )  # fmt: skip
    with serving(tmp_path, REPO / "analyzer" / "examples" / "checkout.yaml") as (_, url, _log):
        answer = httpx.post(f"{url}/api/v1/verdict", content=body, headers=headers, timeout=10)
    assert answer.status_code == 415
    error = answer.json()["error"]
    assert error["code"] == "unsupported_media_type"
    assert "application/json" in error["message"] and named in error["message"]

"""`verdict serve` and `verdict runs` as a user runs them: a real process, real HTTP, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import structlog
from typer.testing import CliRunner

from analyzer.cli import app
from tests.conftest import PrometheusServer, free_port
from tests.helpers import REPO, example_analysis, scenario_analysis, stop_process, write_analysis

pytestmark = pytest.mark.prometheus


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # the in-process commands configure structlog for themselves


def verdict(*args: str) -> tuple[int, str, str]:
    """Run the command line in this process (fast; the serve test runs a real process)."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _analyses(prometheus: PrometheusServer, folder: Path) -> Path:
    folder.mkdir()
    for name in ("healthy", "error-regression"):
        write_analysis(folder / f"{name}.yaml", scenario_analysis(name, prometheus.scenarios[name]))
    return folder


@contextmanager
def _serve(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"verdict-serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), *args],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if process.poll() is not None:
                pytest.fail(f"verdict serve exited {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"verdict serve did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url, log
    finally:
        stop_process(process)
        log.unlink(missing_ok=True)


def test_serve_answers_argo_and_runs_lists_and_shows_the_run(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    folder = _analyses(prometheus, tmp_path / "analyses")
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    token_file = tmp_path / "token"
    token_file.write_text("t0ken\n")
    start = prometheus.scenarios["error-regression"].start.isoformat()
    request = {
        "analysis": "error-regression",
        "namespace": "shop",
        "rollout": "checkout",
        "canaryHash": "7d9f8c6b5",
        "stableHash": "5c4b3a291",
        "start": start,  # the scenario lies in the past: its window reaches to now
    }
    with _serve(
        "--config", str(folder), "--store", store, "--token-file", str(token_file),
        env={"VERDICT_PROMETHEUS_URL": prometheus.url},
    ) as (url, log):  # fmt: skip
        headers = {"Authorization": "Bearer t0ken"}
        answer = httpx.post(f"{url}/api/v1/verdict", json=request, headers=headers, timeout=10)
        refused = httpx.post(f"{url}/api/v1/verdict", json=request, timeout=10)
        ready = httpx.get(f"{url}/readyz", timeout=5)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["verdict"] == "fail" and result["run"]["looks"] == 1
    assert refused.status_code == 401
    assert ready.status_code == 200
    looked = [line for line in lines if line.get("event") == "look answered"]
    assert looked and looked[0]["run"] == result["run"]["id"]  # JSON logs with the run id

    code, out, err = verdict("runs", "list", "--store", store, "--output", "json")
    assert code == 0, err
    assert [r["id"] for r in json.loads(out)["runs"]] == [result["run"]["id"]]
    code, out, err = verdict("runs", "list", "--store", store, "--output", "text")
    assert code == 0 and result["run"]["id"] in out and "shop/checkout" in out
    code, out, err = verdict(
        "runs", "show", result["run"]["id"], "--store", store, "--output", "json"
    )
    assert code == 0, err
    run = json.loads(out)
    assert run["rollout"] == "checkout" and run["verdict"] == "fail"
    assert run["failedMetrics"]["error-rate"]["failedAtLook"] == 1
    code, out, _ = verdict(
        "runs", "show", result["run"]["id"], "--store", store, "--output", "text"
    )
    assert code == 0 and "failed: error-rate at look 1" in out


def test_runs_show_of_an_unknown_run_exits_2_and_an_unusable_store_exits_5(
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    code, _, err = verdict("runs", "show", "nope", "--store", store)
    assert code == 2 and "no run with id 'nope'" in err
    code, _, err = verdict("runs", "list", "--store", f"sqlite:///{tmp_path}/no/dir/runs.sqlite")
    assert code == 5 and "cannot be opened" in err
    code, _, err = verdict("runs", "list", "--store", "mysql://db/verdict")
    assert code == 2 and "unknown run store" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "missing.yaml"], "cannot read the analysis file"),
        (["--store", "redis://x"], "unknown run store"),
        (["--run-ttl", "soon"], "--run-ttl"),
        (["--look-budget", "0"], "--look-budget"),
        (["--token-file", "/nonexistent/token"], "--token-file"),
    ],
)
def test_serve_refuses_bad_flags_with_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    config = write_analysis(tmp_path / "a.yaml", example_analysis())
    given = dict(zip(args[::2], args[1::2], strict=True))
    flags = ["--config", str(config), "--port", str(free_port())]
    flags += [x for k, v in given.items() for x in (k, v)]
    code, _, err = verdict("serve", *flags)
    assert code == 2, err
    assert message in err


def test_serve_needs_a_prometheus_url(tmp_path: Path) -> None:
    data = example_analysis()
    data.pop("prometheus", None)
    config = write_analysis(tmp_path / "a.yaml", data)
    result = CliRunner(env={"VERDICT_PROMETHEUS_URL": None}).invoke(
        app, ["serve", "--config", str(config)]
    )
    assert result.exit_code == 2 and "no Prometheus URL for checkout" in result.stderr

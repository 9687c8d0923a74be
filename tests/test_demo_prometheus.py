"""`verdict demo --prometheus`: the canary loop of `verdict canary run` reading a real local
Prometheus that scrapes the simulated service's live traffic, split by the route's weights."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import requests

from analyzer.demo_prometheus import LOOK_SECONDS
from tests.helpers import run_verdict
from tests.terminal import assert_units, flat, look_chunks, run_in_terminal

pytestmark = pytest.mark.prometheus


@pytest.mark.parametrize(
    ("columns", "scenario", "code", "decision", "weights"),
    [(80, "healthy", 0, "PROMOTED", (5, 10, 50)), (120, "error-spike", 1, "ABORTED", (5,))],
)
def test_the_live_demo_reads_a_real_prometheus_and_shows_each_look(
    columns: int,
    scenario: str,
    code: int,
    decision: str,
    weights: tuple[int, ...],
    tmp_path: Path,
) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    screen = run_in_terminal(
        "demo", "--prometheus", "--scenario", scenario, "--store", store,
        columns=columns, timeout=240,
    )  # fmt: skip
    assert screen.code == code, screen.text
    first = screen.lines[0]
    assert first.startswith("Prometheus at http://127.0.0.1:"), screen.text
    url = first.split()[2].rstrip(":")
    looks = look_chunks(screen)
    assert looks, screen.text
    assert_units(looks)
    heads = [line for line in screen.lines if line.startswith("step ")]
    assert all(len(line) <= columns and line.endswith(" s left") for line in heads)
    shown = {line.split("  ")[1] for line in heads}  # the canary's weight at each step
    assert shown == {f"canary {weight} %" for weight in weights}
    assert not [line for line in screen.lines if line.startswith("  ") and len(line) > columns]
    text = flat(screen.text)
    assert f"{decision}: " in text
    # the run is kept: its report reads the looks the loop made against Prometheus
    found = re.search(r"run ([0-9a-f]+): see it with `verdict report \1`", text)
    assert found, text
    run_id = found[1]
    report = run_verdict("report", run_id, "--output", "json", "--store", store)
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    assert document["decision"]["outcome"] == decision.lower()
    assert len(document["looks"]) == len(looks)
    # Prometheus stopped with the demo
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/-/ready", timeout=2)


def test_the_live_demo_as_json_judges_in_looks_of_two_seconds(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    result = run_verdict(
        "demo", "--prometheus", "--scenario", "latency-regression", "--output", "json",
        "--store", store, timeout=240,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    doc = json.loads(result.stdout)
    assert doc["decision"] == "aborted" and doc["prometheus"].startswith("http://127.0.0.1:")
    assert doc["steps"][0]["weights"] == {"stable": 95, "canary": 5}
    window = doc["final"]["window"]
    assert window["intervalSeconds"] == LOOK_SECONDS
    assert window["seconds"] == pytest.approx(window["looks"] * LOOK_SECONDS)
    latency = next(m for m in doc["final"]["metrics"] if m["name"] == "latency-p99")
    assert latency["verdict"] == "fail"
    assert latency["canary"]["seconds"] > 0.5 > latency["baseline"]["seconds"]


def test_without_the_prometheus_binary_the_demo_says_how_to_install_it(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    assert shutil.which("prometheus", path=str(empty)) is None
    result = run_verdict(
        "demo", "--prometheus", "--store", f"sqlite:///{tmp_path / 'runs.sqlite'}",
        env={"PATH": str(empty) + os.pathsep + str(Path(sys.executable).parent)},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no `prometheus` binary on PATH" in lines[0]
    assert "sudo apt-get install prometheus" in lines[0]
    assert "https://prometheus.io/download/" in lines[0]

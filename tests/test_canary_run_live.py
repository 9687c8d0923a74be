"""`verdict canary run` end to end: a real process moving an Istio VirtualService on the
Kubernetes API test server, judged on a real Prometheus scraping traffic that follows the route's
weights (40,000 requests a second split by the canary weight, a look every 2 s)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from analyzer.clock import parse_time
from analyzer.runs.store import open_store
from tests.canary_world import (
    NS,
    VS,
    install,
    live_traffic,
    pod,
    rollout_file,
    weights,
    written_weights,
)
from tests.conftest import free_port
from tests.helpers import REPO, run_verdict
from tests.kube_server import KubeServer
from tests.live_exporter import Version

pytestmark = pytest.mark.prometheus


def start(config: Path, kubeconfig: Path, store: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "analyzer.cli", "canary", "run", "--config", str(config),
         "--kubeconfig", str(kubeconfig), "--store", store, "--output", "json", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def finish(process: subprocess.Popen[str], timeout: float = 300) -> tuple[int, dict[str, Any]]:
    out, err = process.communicate(timeout=timeout)
    try:
        return process.returncode, json.loads(out)
    except json.JSONDecodeError:
        pytest.fail(f"exit {process.returncode}, no JSON document:\n{out}\n{err}")


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(0.2)


def looked_during_step(store: str, step: int) -> bool:
    """Whether the run in `store` is in `step` and has looked since the step started."""
    runs = open_store(store)
    try:
        found = runs.runs()
    finally:
        runs.close()
    for run in found:
        steps = ((run.answer or {}).get("rollout") or {}).get("steps") or []
        if steps and steps[-1]["step"] == step and steps[-1]["end"] is None:
            return run.updated_at > parse_time(steps[-1]["start"])
    return False


def test_a_healthy_canary_is_promoted_through_exactly_5_10_50_100(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="6s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        code, doc = finish(start(config, kubeconfig, store))
    assert (code, doc["decision"]) == (0, "promoted"), doc["reason"]
    assert written_weights(kube) == [5, 10, 50, 100]
    assert weights(kube) == (0, 100)
    assert [s["weights"] for s in doc["steps"]] == [
        {"stable": 95, "canary": 5}, {"stable": 90, "canary": 10},
        {"stable": 50, "canary": 50}, {"stable": 0, "canary": 100},
    ]  # fmt: skip
    assert all(s["start"] and s["end"] for s in doc["steps"])
    assert doc["final"]["verdict"] == "pass"
    assert not kube.rejected
    shown = run_verdict("runs", "show", doc["run"]["id"], "--store", store, "--output", "json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert (run["rollout"], run["canaryHash"], run["verdict"]) == ("checkout", "c4n4ry", "pass")
    assert run["lastAnswer"]["rollout"]["state"] == "promoted"
    reported = run_verdict("report", doc["run"]["id"], "--store", store, "--format", "json")
    assert reported.returncode == 0, reported.stderr
    report = json.loads(reported.stdout)
    assert (report["run"]["way"], report["headline"]) == ("canary", "promoted")
    assert [s["weight"] for s in report["steps"]] == [5, 10, 50]


def test_a_regression_at_the_first_step_goes_back_to_0_without_reaching_10(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.05)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="60s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        report = tmp_path / "report.html"
        code, doc = finish(
            start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}", "--report", str(report))
        )
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    # --report writes the run's self-contained report at the end
    html = report.read_text(encoding="utf-8")
    assert "aborted" in html.lower() and "data:image/png;base64," in html
    assert written_weights(kube) == [5, 0]
    assert weights(kube) == (100, 0)
    assert doc["reason"].startswith("aborted at 5 % canary weight (step 1)")
    assert [s["verdict"] for s in doc["steps"]] == ["fail"]
    # one interval later the rollback is checked: the route on stable, stable's errors as before
    assert doc["rollback"]["verified"] is True, doc["rollback"]
    assert {c["check"] for c in doc["rollback"]["checks"]} >= {
        "route", "error-rate of the old version"
    }  # fmt: skip


def test_pods_in_image_pull_back_off_abort_with_no_weight_written(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube, pods=[pod("checkout-canary-1", waiting="ImagePullBackOff")])
    config = rollout_file(tmp_path / "checkout.yaml", f"http://127.0.0.1:{free_port()}")
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"), 60)
    assert (code, doc["decision"]) == (1, "aborted")
    assert "checkout-canary-1: ImagePullBackOff" in doc["reason"]
    assert written_weights(kube) == []
    assert weights(kube) == (100, 0)


def test_sigterm_mid_step_puts_traffic_back_on_stable(kube: KubeServer, tmp_path: Path) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="120s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        store = f"sqlite:///{tmp_path / 'r.sqlite'}"
        process = start(config, kubeconfig, store)
        wait_for(lambda: weights(kube) == (95, 5), 30, "the first step")
        wait_for(lambda: looked_during_step(store, 1), 60, "a look at the first step")
        os.kill(process.pid, signal.SIGTERM)
        code, doc = finish(process, 30)
    assert (code, doc["decision"]) == (130, "interrupted")
    assert written_weights(kube) == [5, 0]
    assert weights(kube) == (100, 0)
    assert doc["reason"] == "interrupted: all traffic back on stable"


def test_killed_and_started_again_it_resumes_at_the_recorded_step_without_repeating_it(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(
            tmp_path / "checkout.yaml", url, stepDuration="10s", onTimeout="abort"
        )
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        store = f"sqlite:///{tmp_path / 'r.sqlite'}"
        first = start(config, kubeconfig, store)
        wait_for(lambda: weights(kube) == (90, 10), 60, "the second step")
        wait_for(lambda: looked_during_step(store, 2), 60, "a look at the second step")
        first.kill()  # mid-step: a look every 2 s, the step lasts 10 s
        first.communicate(timeout=10)
        assert written_weights(kube) == [5, 10]
        code, doc = finish(start(config, kubeconfig, store))
    assert code in (0, 1), doc["reason"]
    assert doc["resumedAtStep"] == 2
    assert written_weights(kube)[:3] == [5, 10, 50]  # step 2 not written again
    assert [s["step"] for s in doc["steps"]][:3] == [1, 2, 3]


def test_a_route_moved_by_someone_else_while_stopped_is_reported_and_not_resumed(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    store = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="120s")
        first = start(config, kubeconfig, store)
        wait_for(lambda: weights(kube) == (95, 5), 30, "the first step")
        first.kill()
        first.communicate(timeout=10)

    def someone(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][1]["route"][0]["weight"] = 80
        vs["spec"]["http"][1]["route"][1]["weight"] = 20

    kube.modify(*VS, NS, "checkout", someone)
    code, doc = finish(start(config, kubeconfig, store), 60)
    assert (code, doc["decision"]) == (3, "paused")
    assert "now shows 80/20 (stable/canary)" in doc["reason"] and "not resuming" in doc["reason"]
    assert written_weights(kube) == [5]


def test_prometheus_unreachable_exits_4_before_any_weight_moves(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    config = rollout_file(tmp_path / "checkout.yaml", f"http://127.0.0.1:{free_port()}")
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    process = start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}")
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 4, err
    assert written_weights(kube) == []


def test_the_kubernetes_api_unreachable_exits_4(tmp_path: Path) -> None:
    config = rollout_file(tmp_path / "checkout.yaml", f"http://127.0.0.1:{free_port()}")
    with KubeServer() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "kubeconfig")
    process = start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}")
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 4, err
    assert "Kubernetes API is unreachable" in err

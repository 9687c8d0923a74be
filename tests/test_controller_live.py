"""What users see: `verdict serve --watch` on a live Prometheus acting on an Argo Rollout.

A live exporter counts Istio requests as they happen (40,000 per second in all, split by the
canary's weight: ~2,000 canary requests a second at the 5 % step), a real Prometheus scrapes it
every second, and `verdict serve --watch` (a real process, with a kubeconfig pointing at the
Kubernetes API test server) acts on a Rollout whose steps are `setWeight 5, pause {},
setWeight 10, pause {}, setWeight 50, pause {}`, with a 2 s interval. The Argo stand-in moves
the Rollout as Argo would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.argo_standin import ABORT, ARGO, PAUSE_STEPS, PROMOTE, ArgoStandIn, canary_rollout
from tests.canary_world import LIVE_RPS
from tests.conftest import free_port
from tests.helpers import REPO, example_analysis, stop_process, write_analysis
from tests.kube_server import KubeServer
from tests.live_exporter import LiveExporter, Version, live_prometheus
from tests.reliability.fault_proxy import Fault, FaultProxy

pytestmark = pytest.mark.prometheus

NS = "shop"
INTERVAL_S = 2


@contextmanager
def serve_watch(config: Path, kubeconfig: Path, store: str) -> Iterator[subprocess.Popen[bytes]]:
    """`verdict serve --watch` as a real process; yields it once its watch is ready."""
    port = free_port()
    log = config.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "analyzer.cli", "serve", "--host", "127.0.0.1",
             "--port", str(port), "--config", str(config), "--store", store,
             "--watch", "--namespace", NS, "--kubeconfig", str(kubeconfig)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                pytest.fail(f"verdict serve exited {process.returncode}:\n{log.read_text()}")
            try:
                ready = httpx.get(f"{url}/readyz", timeout=1)
                if ready.status_code == 200 and f"rollout watch ({NS})" in ready.json()["checks"]:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"verdict serve --watch was not ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        process.url = url  # type: ignore[attr-defined]
        yield process
    finally:
        if process.poll() is None:
            stop_process(process)


def analysis_folder(tmp_path: Path, prometheus_url: str) -> Path:
    folder = tmp_path / "analyses"
    folder.mkdir()
    data = example_analysis()
    data.update(
        name="checkout",
        prometheus={"url": prometheus_url},
        canary={"destination_service_name": "checkout-canary"},
        baseline={"destination_service_name": "checkout-stable"},
        interval=f"{INTERVAL_S}s",
    )
    write_analysis(folder / "checkout.yaml", data)
    return folder


def action_patches(kube: KubeServer) -> list[tuple[Any, int]]:
    return [
        (r.body, r.status)
        for r in kube.writes(plural="rollouts", name="checkout", method="PATCH")
        if set(r.body) != {"metadata"}
    ]


def wait_for(condition: Any, seconds: float, what: str) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"{what}: not within {seconds:g} s")
        time.sleep(0.2)
    return time.monotonic() - started


@contextmanager
def live_world(
    kube: KubeServer,
    tmp_path: Path,
    canary: Version,
    steps: list[dict[str, Any]] = PAUSE_STEPS,
    proxy: FaultProxy | None = None,
) -> Iterator[tuple[ArgoStandIn, Path, Path]]:
    """The live world; with `proxy`, Verdict reads Prometheus through it (faults at will)."""
    argo = ArgoStandIn(kube).install()
    kube.put(canary_rollout("checkout", NS, analysis="checkout", steps=steps))
    exporter = LiveExporter(
        "checkout",
        total_rps=LIVE_RPS,
        canary_weight=lambda: argo.weight(NS, "checkout"),
        canary=canary,
        baseline=Version(error_rate=0.001),
    ).start()
    root = tmp_path / "prometheus"
    root.mkdir()
    try:
        with (
            live_prometheus(root, [exporter.address]) as url,
            argo.run_in_background(NS, "checkout"),
        ):
            kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
            if proxy is not None:
                proxy.upstream = url
                url = proxy.start().url
            yield argo, analysis_folder(tmp_path, url), kubeconfig
    finally:
        exporter.stop()
        if proxy is not None:
            proxy.stop()


def status(kube: KubeServer) -> dict[str, Any]:
    return dict(kube.get(*ARGO, NS, "checkout").get("status", {}))


def test_live_a_clear_regression_is_aborted_at_the_first_step_within_a_minute(
    kube: KubeServer, tmp_path: Path
) -> None:
    with live_world(kube, tmp_path, Version(error_rate=0.05)) as (argo, config, kubeconfig):
        store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        with serve_watch(config, kubeconfig, store):
            argo.start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")
            took = wait_for(lambda: status(kube).get("abort") is True, 90, "abort")
        print(f"regression aborted at the first step after {took:.1f} s")
        assert took < 60, f"aborted after {took:.0f} s"
        assert status(kube)["currentStepIndex"] == 0  # Argo's reset after the abort
        assert [i for _, i, phase in argo.history if phase == "Paused"] == [1]
        assert action_patches(kube) == [(ABORT, 200)]  # and no promote
        note = kube.get(*ARGO, NS, "checkout")["metadata"]["annotations"]["verdict.dev/status"]
        assert note.startswith("fail; abort (done); the analysis fails at step 1")


def test_live_a_healthy_canary_is_promoted_to_healthy_within_a_few_minutes(
    kube: KubeServer, tmp_path: Path
) -> None:
    with live_world(kube, tmp_path, Version(error_rate=0.001)) as (argo, config, kubeconfig):
        store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        with serve_watch(config, kubeconfig, store) as process:
            argo.start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")
            took = wait_for(lambda: status(kube).get("phase") == "Healthy", 300, "Healthy")
            runs = httpx.get(f"{process.url}/api/v1/runs").json()["runs"]  # type: ignore[attr-defined]
        assert took < 300, f"promoted after {took:.0f} s"
        assert action_patches(kube) == [(PROMOTE, 200)] * 3
        assert [i for _, i, phase in argo.history if phase == "Paused"] == [1, 3, 5]
        assert [(r["rollout"], r["canaryHash"], r["verdict"]) for r in runs] == [
            ("checkout", "c4n4ry", "pass")
        ]
        print(f"healthy canary promoted to Healthy after {took:.1f} s")


def test_live_a_process_killed_between_recording_and_sending_sends_once_after_restart(
    kube: KubeServer, tmp_path: Path
) -> None:
    stall = kube.stall_next("PATCH", r"/rollouts/checkout/status$")
    with live_world(kube, tmp_path, Version(error_rate=0.001)) as (argo, config, kubeconfig):
        store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        with serve_watch(config, kubeconfig, store) as first:
            argo.start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")
            assert stall.arrived.wait(240), "no promote was sent"
            os.kill(first.pid, signal.SIGKILL)  # recorded, sent, not yet carried out
            first.wait(timeout=10)
        stall.release(apply=False)  # the request dies with its sender
        assert status(kube)["currentStepIndex"] == 1
        with serve_watch(config, kubeconfig, store):
            wait_for(lambda: status(kube).get("currentStepIndex", 0) > 1, 60, "step 1 promoted")
            wait_for(lambda: status(kube).get("phase") == "Healthy", 120, "Healthy")
            time.sleep(INTERVAL_S + 1)  # one more interval: nothing is sent twice
        promotes = [p for p in action_patches(kube) if p[0] == PROMOTE]
        assert promotes[0] == (PROMOTE, 0)  # the one lost with the killed process
        applied = [p for p in promotes[1:] if p == (PROMOTE, 200)]
        assert len(applied) == len(promotes) - 1  # every later promote was carried out
        index = int(status(kube)["currentStepIndex"])
        left = [step for step in (1, 3, 5) if step < index]
        assert len(applied) == len(left)  # one promote per pause step left: none twice
        paused = [i for _, i, phase in argo.history if phase == "Paused"]
        assert paused == [1, 3, 5][: len(paused)]  # no step skipped


TIMED_STEPS: list[dict[str, Any]] = [
    {"setWeight": 5},
    {"pause": {"duration": "12s"}},
    {"setWeight": 50},
    {"pause": {"duration": "12s"}},
]
"""Two timed pauses: Argo ends each by itself after 12 s (a promotion unless Verdict holds it)."""
PAUSE = {"spec": {"paused": True}}
"""`kubectl argo rollouts pause`."""


def rollout_now(kube: KubeServer) -> dict[str, Any]:
    return kube.get(*ARGO, NS, "checkout")


def note(kube: KubeServer) -> str:
    return str(rollout_now(kube)["metadata"].get("annotations", {}).get("verdict.dev/status"))


def held_while_prometheus_is_down(kube: KubeServer, argo: ArgoStandIn) -> None:
    """Both timed pauses would have ended by now: the Rollout is held at its first one, paused
    by Verdict, and its annotation says why."""
    time.sleep(2 * 12 + 6)
    assert status(kube)["currentStepIndex"] == 1 and status(kube)["phase"] == "Paused"
    assert rollout_now(kube)["spec"]["paused"] is True
    assert max(i for _, i, _ in argo.history) == 1  # never past the first pause
    assert action_patches(kube) == [(PAUSE, 200)]
    text = note(kube)  # the looks since the pause
    assert text.startswith("no verdict; none; no verdict this look: prometheus_unavailable")
    assert "stays paused at step 1 (paused by Verdict until the analysis passes)" in text
    # the pause came at the first look (a new run has no data yet: inconclusive, and 12 s is
    # within one interval and the margin) or at the first look that failed
    (paused,) = [e for e in kube.objects("", "v1", "events") if e["reason"] == "VerdictPaused"]
    first = ("inconclusive; pause (done); ", "no verdict; pause (done); ")
    assert paused["message"].startswith(first)
    assert "the timed pause of step 1 ends at" in paused["message"]


def test_live_timed_pauses_hold_a_failing_canary_while_prometheus_answers_503(
    kube: KubeServer, tmp_path: Path
) -> None:
    proxy = FaultProxy(upstream="")
    canary = Version(error_rate=0.05)
    with live_world(kube, tmp_path, canary, TIMED_STEPS, proxy) as (argo, config, kubeconfig):
        store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        with serve_watch(config, kubeconfig, store):
            proxy.set(Fault("http_503"))
            argo.start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")
            held_while_prometheus_is_down(kube, argo)
            assert proxy.injected["http_503"] > 0
            proxy.clear()  # Prometheus answers again: the analysis fails, the canary is aborted
            took = wait_for(lambda: status(kube).get("abort") is True, 90, "abort")
        print(f"held {2 * 12 + 6} s with Prometheus down; aborted {took:.1f} s after it was back")
        assert action_patches(kube) == [(PAUSE, 200), (ABORT, 200)]  # never a promote
        assert all(phase != "Healthy" for _, _, phase in argo.history)
        assert note(kube).startswith("fail; abort (done); the analysis fails at step 1")


def test_live_a_healthy_canary_held_while_prometheus_answers_503_is_promoted_once_it_passes(
    kube: KubeServer, tmp_path: Path
) -> None:
    proxy = FaultProxy(upstream="")
    canary = Version(error_rate=0.001)
    with live_world(kube, tmp_path, canary, TIMED_STEPS, proxy) as (argo, config, kubeconfig):
        store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
        with serve_watch(config, kubeconfig, store):
            proxy.set(Fault("http_503"))
            argo.start_update(NS, "checkout", canary="c4n4ry", stable="s7ab1e")
            held_while_prometheus_is_down(kube, argo)
            proxy.clear()
            took = wait_for(lambda: status(kube).get("phase") == "Healthy", 300, "Healthy")
        print(f"promoted to Healthy {took:.1f} s after Prometheus was back")
        # the pause, then `kubectl argo rollouts promote` of a paused Rollout (status, then
        # spec); the second timed pause, with a pass, is ended by Argo's clock
        assert action_patches(kube) == [
            (PAUSE, 200),
            (PROMOTE, 200),
            ({"spec": {"paused": False}}, 200),
        ]
        assert [i for _, i, phase in argo.history if phase == "Paused"][:1] == [1]
        assert note(kube).startswith("pass; none; pass during the timed pause of step 3")

"""The fail-safe rules of the strategies, case by case, as an operator met them on a game day: a
real `verdict canary run` process against the Kubernetes API test server and a real Prometheus
scraping traffic that follows the route (or the Service's selector).

* I2: a rollback answered with 500s or a 409 storm is tried again until stable holds all traffic;
  an API that stays down past `rollbackDeadline` ends in exit 6, saying traffic is still on the
  canary.
* I3: blue/green records its run before it switches: a store that cannot record, or a
  placeholder the strategy does not fill, leaves blue untouched.
* I5: a run that ended is not started again by the same command (`--restart` starts a new one).
* I6 and the notifiers: a canary run tells the analysis file's targets about its abort.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.canary_world import NS, install, live_traffic, rollout_file, weights, written_weights
from tests.helpers import write_analysis
from tests.hook_server import HookReceiver, running
from tests.kube_server import KubeServer
from tests.live_exporter import Version
from tests.test_bluegreen_live import BLUE, GREEN, selector
from tests.test_bluegreen_live import install as install_services
from tests.test_canary_run_live import finish, start, wait_for

pytestmark = pytest.mark.prometheus

VS_PATH = r"/virtualservices/checkout$"


def _failing_patches(kube: KubeServer, status: int) -> int:
    return sum(
        1
        for r in kube.requests
        if r.method == "PATCH" and r.path.endswith("/virtualservices/checkout") and r.status == status
    )


@pytest.mark.parametrize(("status", "times"), [(500, 2), (409, 10)], ids=["500x2", "409x10"])
def test_a_rollback_the_api_refuses_is_tried_again_until_stable_holds_all_traffic(
    kube: KubeServer, tmp_path: Path, status: int, times: int
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.05)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="60s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        process = start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}")
        wait_for(lambda: written_weights(kube) == [5], 30, "the first step")
        kube.fail_next("PATCH", VS_PATH, status, times=times)  # the rollback's writes
        code, doc = finish(process, 120)
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert weights(kube) == (100, 0)
    assert written_weights(kube) == [5, 0]
    assert _failing_patches(kube, status) == times
    assert doc["reason"].startswith("aborted at 5 % canary weight (step 1)")


def test_an_api_down_past_the_rollback_deadline_exits_6_and_says_traffic_is_on_the_canary(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.05)) as url:
        config = rollout_file(
            tmp_path / "checkout.yaml", url, stepDuration="60s", rollbackDeadline="4s"
        )
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        process = start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}")
        wait_for(lambda: written_weights(kube) == [5], 30, "the first step")
        kube.fail_next("PATCH", VS_PATH, 500, times=10_000)
        out, err = process.communicate(timeout=120)
    assert process.returncode == 6, err
    assert "traffic is still on the new version" in err
    assert "rollbackDeadline 4 s" in err
    assert weights(kube) == (95, 5)  # the server never took the write: what the message says
    assert _failing_patches(kube, 500) >= 3  # tried again, with a growing wait, not once
    assert out.strip() == ""


def test_a_promoted_canary_run_again_writes_nothing_and_says_which_run_ended_it(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    store = f"sqlite:///{tmp_path / 'r.sqlite'}"
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="6s")
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        code, first = finish(start(config, kubeconfig, store))
        assert (code, first["decision"]) == (0, "promoted"), first["reason"]
        assert written_weights(kube) == [5, 10, 50, 100]
        code, again = finish(start(config, kubeconfig, store), 60)
        assert written_weights(kube) == [5, 10, 50, 100]  # nothing written: still 0/100
        assert weights(kube) == (0, 100)
        assert (code, again["decision"]) == (0, "promoted")
        assert again["run"]["id"] == first["run"]["id"]
        assert f"run {first['run']['id']} already promoted" in again["reason"]
        assert "shows 0/100 (stable/canary)" in again["reason"]
        assert "--restart" in again["reason"]
        # --restart starts a new run: its first write is the first step's weight again
        process = start(config, kubeconfig, store, "--restart")
        wait_for(lambda: written_weights(kube)[4:5] == [5], 30, "the new run's first step")
        process.kill()
        process.communicate(timeout=10)


def test_a_canary_run_tells_the_files_webhook_about_its_abort(
    kube: KubeServer, tmp_path: Path
) -> None:
    install(kube)
    with (
        running(HookReceiver()) as hook,
        live_traffic(kube, tmp_path / "prom", Version(error_rate=0.05)) as url,
    ):
        config = rollout_file(tmp_path / "checkout.yaml", url, stepDuration="60s")
        data = json.loads(json.dumps(_yaml(config)))
        data["notifications"] = [{"type": "webhook", "url": hook.url, "on": ["aborted"]}]
        write_analysis(config, data)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
        bodies = hook.wait_for(1)
    assert (code, doc["decision"]) == (1, "aborted")
    decision = bodies[-1]
    assert decision["decision"] == "aborted"
    assert decision["run"]["id"] == doc["run"]["id"]
    assert "aborted at 5 % canary weight" in json.dumps(decision)


def _yaml(path: Path) -> dict[str, Any]:
    import yaml

    loaded: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return loaded


def _bluegreen_file(tmp_path: Path, url: str, **changes: Any) -> Path:
    from tests.helpers import example_analysis

    data: dict[str, Any] = example_analysis()
    data.update(prometheus={"url": url}, interval="2s")
    data["rollout"] = {"strategy": "blueGreen", "namespace": NS, "activeService": "checkout",
                       "blue": BLUE, "green": GREEN, "validationPeriod": "8s",
                       "podReadyTimeout": "10s"}  # fmt: skip
    data.update(changes)
    return write_analysis(tmp_path / "bluegreen.yaml", data)


def _selector_writes(kube: KubeServer) -> int:
    return len([r for r in kube.writes(plural="services", name="checkout") if r.status == 200])


def test_blue_green_with_a_store_it_cannot_write_never_switches(
    kube: KubeServer, tmp_path: Path
) -> None:
    install_services(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = _bluegreen_file(tmp_path, url)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        process = start(config, kubeconfig, "sqlite:////nonexistent/verdict/x.sqlite")
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 5, err
    assert selector(kube) == BLUE
    assert _selector_writes(kube) == 0


def test_blue_green_with_a_placeholder_it_does_not_fill_never_switches(
    kube: KubeServer, tmp_path: Path
) -> None:
    install_services(kube)
    with live_traffic(kube, tmp_path / "prom", Version(error_rate=0.001)) as url:
        config = _bluegreen_file(
            tmp_path, url, canary={"destination_workload": "checkout", "team": "{{ team }}"}
        )
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        process = start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}")
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    assert "team" in err
    assert selector(kube) == BLUE
    assert _selector_writes(kube) == 0


def test_a_blue_green_switch_back_is_told_to_the_files_webhook(
    kube: KubeServer, tmp_path: Path
) -> None:
    from tests.test_bluegreen_live import world

    with (
        running(HookReceiver()) as hook,
        world(kube, tmp_path, Version(error_rate=0.05), rollbackOn={"maxErrorRate": None}) as config,
    ):
        data = _yaml(config)
        data["notifications"] = [{"type": "webhook", "url": hook.url, "on": ["aborted"]}]
        write_analysis(config, data)
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        code, doc = finish(start(config, kubeconfig, f"sqlite:///{tmp_path / 'r.sqlite'}"))
        bodies = hook.wait_for(1)
    assert (code, doc["decision"]) == (1, "aborted"), doc["reason"]
    assert selector(kube) == BLUE
    decision = bodies[-1]
    assert decision["decision"] == "aborted"
    assert decision["run"]["id"] == doc["run"]["id"]
    assert decision["run"]["way"] == "blueGreen"
    assert "switched back to blue" in decision["reason"]

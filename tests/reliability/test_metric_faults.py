"""Faults on the metric path, between Verdict and a real Prometheus (`FaultProxy`): every fault
is survived (an answer that is a verdict or a 503, never a 500; a normal verdict once the fault
is gone) and none turns a regressed canary into a pass.

The report (faults injected, survived, wrong passes) is printed, and written as JSON to
`$VERDICT_RESULTS_DIR/reliability-faults.json` when that variable is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from analyzer.api import PrometheusSources, ServeSettings
from tests.conftest import PrometheusServer, free_port
from tests.helpers import stop_process
from tests.reliability.fault_proxy import Fault, FaultProxy
from tests.test_serve_api import Clock, body, make_app, minutes

pytestmark = pytest.mark.prometheus

CANARY_ERRORS = 'response_code=~"5..",destination_service_name="error-regression-canary"'
FAULTS: dict[str, list[Fault]] = {
    "latency over the query timeout": [Fault("latency", seconds=2.5)],
    "dropped connections": [Fault("drop")],
    "HTTP 500": [Fault("http_500")],
    "HTTP 503": [Fault("http_503")],
    "truncated JSON": [Fault("truncated")],
    "malformed answer (not JSON)": [Fault("malformed")],
    "NaN samples": [Fault("nan")],
    "+Inf samples": [Fault("inf")],
    "empty result for every query": [Fault("empty")],
    "answers with warnings": [Fault("warnings")],
    "stale data (evaluated 10 min earlier)": [Fault("stale", stale_seconds=600)],
    "one dropped connection (retried)": [Fault("drop", times=1)],
    # The example analysis also reads success-rate (totals minus non-5xx), which still sees the
    # errors; reading errors and totals from one evaluation for an error-rate-only analysis is
    # the Prometheus source's job (metrics/prometheus.py, partial answers).
    "empty result for the canary's error query only": [Fault("empty", match=CANARY_ERRORS)],
}


@dataclass
class Outcome:
    fault: str
    injected: int = 0
    answers: list[tuple[int, str]] = field(default_factory=list)  # (status, verdict or code)
    recovered: bool = False
    wrong_passes: int = 0

    @property
    def survived(self) -> bool:
        return self.recovered and all(status in (200, 503) for status, _ in self.answers)


@pytest.fixture
def client_for(
    prometheus: PrometheusServer, fault_proxy: FaultProxy, tmp_path: Path
) -> Iterator[tuple[TestClient, Clock]]:
    clock = Clock(prometheus.scenarios["healthy"].start)
    settings = ServeSettings(look_budget=8.0)
    app = make_app(
        prometheus,
        f"sqlite:///{tmp_path / 'r.sqlite'}",
        clock,
        settings=settings,
        sources=PrometheusSources(look_budget=settings.look_budget, url=fault_proxy.url),
    )
    with TestClient(app) as client:
        yield client, clock


def _label(answer: Any) -> tuple[int, str]:
    document = answer.json()
    if answer.status_code == 200:
        return 200, document["result"]["verdict"]
    return answer.status_code, document["error"]["code"]


def _exercise(
    name: str,
    faults: list[Fault],
    client: TestClient,
    clock: Clock,
    proxy: FaultProxy,
    prometheus: PrometheusServer,
    index: int,
) -> Outcome:
    """Under the fault: a look of the regressed canary and one of the healthy canary; then the
    fault is cleared and both look again (the regressed one must not pass, ever)."""
    outcome = Outcome(name)
    before = sum(proxy.injected.values())
    runs = {
        scenario: body(
            scenario,
            f"f{index:02d}{scenario[:3]}",
            start=prometheus.scenarios[scenario].start.isoformat(),
        )
        for scenario in ("error-regression", "healthy")
    }
    start = prometheus.scenarios["healthy"].start
    proxy.set(*[Fault(**vars(f)) for f in faults])
    # a time of its own per case, later than every earlier look: a look reads whole 30 s
    # intervals, and what an earlier look read of the settled past is cached by the source
    clock.set(start + minutes(10) + index * minutes(2))
    under = {s: _label(client.post("/api/v1/verdict", json=r)) for s, r in runs.items()}
    proxy.clear()
    clock.set(start + minutes(11) + index * minutes(2))
    after = {s: _label(client.post("/api/v1/verdict", json=r)) for s, r in runs.items()}
    outcome.injected = sum(proxy.injected.values()) - before
    outcome.answers = [*under.values(), *after.values()]
    outcome.recovered = after["healthy"][0] == 200 and after["error-regression"] == (200, "fail")
    outcome.wrong_passes = sum(
        1 for status, verdict in (under["error-regression"], after["error-regression"])
        if status == 200 and verdict == "pass"
    )  # fmt: skip
    return outcome


def _report(outcomes: list[Outcome]) -> dict[str, Any]:
    report = {
        "faults": [
            {
                "fault": o.fault,
                "injected": o.injected,
                "answers": [f"{s} {v}" for s, v in o.answers],
                "survived": o.survived,
                "wrongPasses": o.wrong_passes,
            }
            for o in outcomes
        ],
        "injected": sum(o.injected for o in outcomes),
        "survived": sum(o.survived for o in outcomes),
        "kinds": len(outcomes),
        "wrongPasses": sum(o.wrong_passes for o in outcomes),
    }
    print("\nfault                                         injected survived wrong-passes")
    for o in outcomes:
        print(f"{o.fault:<46}{o.injected:>8} {o.survived!s:>8} {o.wrong_passes:>12}")
    print(
        f"{'total':<46}{report['injected']:>8} {report['survived']:>5}/{report['kinds']:<2} "
        f"{report['wrongPasses']:>12}"
    )
    return report


def test_every_metric_path_fault_is_survived_without_a_wrong_pass(
    prometheus: PrometheusServer,
    fault_proxy: FaultProxy,
    client_for: tuple[TestClient, Clock],
) -> None:
    client, clock = client_for
    outcomes = [
        _exercise(name, faults, client, clock, fault_proxy, prometheus, i)
        for i, (name, faults) in enumerate(FAULTS.items())
    ]
    report = _report(outcomes)
    if os.environ.get("VERDICT_RESULTS_DIR"):
        path = Path(os.environ["VERDICT_RESULTS_DIR"]) / "reliability-faults.json"
        path.write_text(json.dumps(report, indent=2) + "\n")
    for o in outcomes:
        assert o.injected > 0, o  # the fault really happened
        assert o.survived, o
    assert report["wrongPasses"] == 0, report


def _start_prometheus(data_dir: Path, address: str, log: Path) -> subprocess.Popen[bytes]:
    config = data_dir.parent / "prometheus.yml"
    config.write_text("scrape_configs: []\n")
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={data_dir}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address={address}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{address}/-/ready", timeout=1).status_code == 200:
                return process
        time.sleep(0.1)
    stop_process(process)
    raise AssertionError(f"prometheus did not start:\n{log.read_text()[-2000:]}")


def test_a_prometheus_restarted_mid_run_loses_no_look_and_passes_nothing_wrongly(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "tsdb"
    shutil.copytree(prometheus.data_dir, data_dir, ignore=shutil.ignore_patterns("lock"))
    address = f"127.0.0.1:{free_port()}"
    log = tmp_path / "prometheus.log"
    server = _start_prometheus(data_dir, address, log)
    scenario = prometheus.scenarios["error-regression"]
    clock = Clock(scenario.start + minutes(10))
    settings = ServeSettings(look_budget=4.0)
    app = make_app(
        prometheus,
        f"sqlite:///{tmp_path / 'r.sqlite'}",
        clock,
        settings=settings,
        sources=PrometheusSources(look_budget=settings.look_budget, url=f"http://{address}"),
    )
    request = body("error-regression", "restart1", start=scenario.start.isoformat())
    answers = []
    try:
        with TestClient(app) as client:
            answers.append(_label(client.post("/api/v1/verdict", json=request)))
            stop_process(server)  # SIGTERM, as a rolling restart does
            clock.set(scenario.start + minutes(15))
            answers.append(_label(client.post("/api/v1/verdict", json=request)))
            server = _start_prometheus(data_dir, address, log)
            clock.set(scenario.start + minutes(20))
            answers.append(_label(client.post("/api/v1/verdict", json=request)))
            run = client.get("/api/v1/runs").json()["runs"][0]
    finally:
        stop_process(server)
    assert answers[0][0] == 200 and answers[0][1] != "pass"
    assert answers[1] == (503, "prometheus_unavailable")
    assert answers[2] == (200, "fail")
    assert run["looks"] == 2  # the look Prometheus could not answer is not counted

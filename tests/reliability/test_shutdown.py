"""Shutdown: `verdict serve` stops within Kubernetes' grace period however many notification
targets hang. The background notifiers of every analysis are drained together, within one
overall bound, and what could not be sent is logged; no exit code changes."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import PrometheusServer
from tests.helpers import example_analysis, write_analysis
from tests.reliability.serve_process import serve

pytestmark = pytest.mark.prometheus

ANALYSES = 15
DRAIN_BOUND_S = 5.0
"""The overall bound on draining the notifiers at shutdown (`verdict serve`)."""


@contextmanager
def hanging_target() -> Iterator[str]:
    """A webhook target that takes connections and never answers (the kernel accepts them into
    the listen backlog; nothing ever reads or replies). Yields its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        listener.close()


def hooked_analyses(prometheus: PrometheusServer, folder: Path, hook: str) -> list[str]:
    """`ANALYSES` analyses of the error-regression scenario, each posting its decisions to
    `hook` with the longest timeout a file may give (60 s)."""
    folder.mkdir()
    scenario = prometheus.scenarios["error-regression"]
    names = [f"checkout-{i:02d}" for i in range(1, ANALYSES + 1)]
    for name in names:
        data = example_analysis()
        data.update(
            name=name,
            prometheus={"url": prometheus.url},
            canary=dict(scenario.canary_matchers),
            baseline=dict(scenario.baseline_matchers),
            notifications=[{"type": "webhook", "url": hook, "timeout": 60}],
        )
        write_analysis(folder / f"{name}.yaml", data)
    return names


def test_sigterm_with_every_webhook_hanging_stops_within_the_drain_bound(
    prometheus: PrometheusServer, tmp_path: Path
) -> None:
    start = prometheus.scenarios["error-regression"].start.isoformat()
    with hanging_target() as hook:
        names = hooked_analyses(prometheus, tmp_path / "analyses", hook)
        store = f"sqlite:///{tmp_path / 'r.sqlite'}"
        args = ("--config", str(tmp_path / "analyses"), "--store", store)
        with serve(*args, log=tmp_path / "serve.log") as server:
            for name in names:  # one decision (fail) per analysis: one webhook post each
                answer = httpx.post(
                    f"{server.url}/api/v1/verdict",
                    json={"analysis": name, "namespace": "shop", "rollout": name,
                          "canaryHash": "c1", "stableHash": "s1", "start": start},
                    timeout=30,
                )  # fmt: skip
                assert answer.status_code == 200
                assert answer.json()["result"]["verdict"] == "fail"
            time.sleep(0.5)  # every worker is now holding its post to the hanging target
            stopping = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            code = server.process.wait(timeout=60)
            took = time.monotonic() - stopping
            entries = server.json_lines()
    print(f"verdict serve stopped {took:.1f} s after SIGTERM with {ANALYSES} hung webhooks")
    assert code == 0
    assert took < DRAIN_BOUND_S + 3, f"stopped after {took:.1f} s"
    dropped = [e for e in entries if e.get("event") == "notifications dropped at shutdown"]
    assert sorted(e["analysis"] for e in dropped) == names
    assert {e["target"] for e in dropped} == {"webhook-1"}
    assert all(e["in_flight"] == 1 and e["queued"] == 0 for e in dropped)

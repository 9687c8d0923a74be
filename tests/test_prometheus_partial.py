"""Partial answers are not read: Prometheus answers with warnings, and error series that vanish.

* A real Prometheus whose remote read fails answers with data *and* `warnings` (as Thanos,
  Cortex and Mimir do for partial responses): Verdict refuses the answer (`PartialAnswer`),
  `verdict analyze` exits 4, never 0.
* A real Prometheus behind a proxy that empties the answers of the error query only (a partial
  answer without warnings): error series answered at an earlier look cannot vanish
  (`InconsistentAnswer`), instead of a canary read as error-free.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from metrics.errors import InconsistentAnswer, PartialAnswer, PartMissing
from metrics.prometheus import PrometheusSource
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import RatioSeries, Version, Window
from tests.conftest import PrometheusServer, _binary, _wait_ready, free_port
from tests.helpers import run_verdict, stop_process
from tests.local_http import rewriting_prometheus

pytestmark = pytest.mark.prometheus

ERROR_RATE = BUILTIN_TEMPLATES["istio-error-rate"]


def _remote_reading_prometheus(root: Path, remotes: list[str]) -> tuple[str, subprocess.Popen[bytes]]:
    """A Prometheus with an empty TSDB that reads everything from `remotes` (remote read)."""
    root.mkdir()
    config = root / "prometheus.yml"
    config.write_text(
        "remote_read:\n"
        + "".join(f"  - url: {r}\n    read_recent: true\n    remote_timeout: 2s\n" for r in remotes)
    )
    url = f"http://127.0.0.1:{free_port()}"
    log = root / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                _binary("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={root / 'tsdb'}",
                f"--web.listen-address={url.removeprefix('http://')}",
            ],
            cwd=root,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, process, log)
    except BaseException:
        stop_process(process)
        raise
    return url, process


@pytest.fixture(scope="module")
def partial_prometheus(
    prometheus: PrometheusServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """(whole, partial): two Prometheus servers reading the scenarios from the `prometheus`
    fixture by remote read; the second also reads from a store that is down, so every answer
    carries a warning next to the data it could read."""
    root = tmp_path_factory.mktemp("remote-read")
    down = f"http://127.0.0.1:{free_port()}/api/v1/read"
    whole_url, whole = _remote_reading_prometheus(root / "whole", [f"{prometheus.url}/api/v1/read"])
    try:
        partial_url, partial = _remote_reading_prometheus(
            root / "partial", [f"{prometheus.url}/api/v1/read", down]
        )
        try:
            yield whole_url, partial_url
        finally:
            stop_process(partial)
    finally:
        stop_process(whole)


@pytest.mark.parametrize("range_read_from", [1, 10**9], ids=["raw-read", "instant-queries"])
def test_an_answer_with_warnings_is_not_read(
    prometheus: PrometheusServer, partial_prometheus: tuple[str, str], range_read_from: int
) -> None:
    whole_url, partial_url = partial_prometheus
    scenario = prometheus.scenarios["error-regression"]
    window = scenario.window()
    # precondition: the partial server's answer holds data and a warning
    answer = requests.get(
        f"{partial_url}/api/v1/query",
        params={"query": "sum(istio_requests_total)", "time": window.end.timestamp()},
        timeout=10,
    ).json()
    assert answer["status"] == "success" and answer["data"]["result"], answer
    assert answer.get("warnings"), answer
    # the same data without the dead store: read as usual
    whole = PrometheusSource(whole_url, range_read_from=range_read_from).fetch(
        ERROR_RATE, Version.CANARY, scenario.canary_matchers, window
    )
    assert isinstance(whole, RatioSeries) and whole.total.sum() > 0

    with pytest.raises(PartialAnswer, match=r"with warnings.*not read") as raised:
        PrometheusSource(partial_url, range_read_from=range_read_from).fetch(
            ERROR_RATE, Version.CANARY, scenario.canary_matchers, window
        )
    assert partial_url in str(raised.value)


def test_analyze_on_a_partial_answer_exits_4_not_pass(
    prometheus: PrometheusServer, partial_prometheus: tuple[str, str], tmp_path: Path
) -> None:
    _, partial_url = partial_prometheus
    scenario = prometheus.scenarios["healthy"]
    config = tmp_path / "analysis.yaml"
    config.write_text(
        "name: partial\n"
        f"canary: {json.dumps(scenario.canary_matchers)}\n"
        f"baseline: {json.dumps(scenario.baseline_matchers)}\n"
        "interval: 60s\n"
        "metrics:\n  - name: error-rate\n    template: istio-error-rate\n"
        "    slo: {max: 0.05}\n"
    )
    result = run_verdict(
        "analyze", "--config", str(config), "--prometheus-url", partial_url,
        "--start", scenario.start.isoformat(), "--end", scenario.end.isoformat(),
        "--output", "json",
    )
    assert result.returncode == 4, result.stdout + result.stderr
    assert "warnings" in result.stderr


@dataclass
class _Blanking:
    url: str
    pattern: re.Pattern[str] | None = None
    """Answers to queries matching this are emptied (`result: []`)."""


@pytest.fixture
def blanking_proxy(prometheus: PrometheusServer) -> Iterator[_Blanking]:
    """An HTTP proxy to the real Prometheus that empties the answers of chosen queries."""
    proxy = _Blanking(url="")

    def blank(query: str, answer: dict[str, Any]) -> bool:
        if proxy.pattern is None or not proxy.pattern.search(query):
            return False
        answer["data"]["result"] = []
        return True

    with rewriting_prometheus(prometheus.url, blank) as url:
        proxy.url = url
        yield proxy


def test_error_series_seen_at_an_earlier_look_cannot_vanish(
    prometheus: PrometheusServer, blanking_proxy: _Blanking
) -> None:
    # The web provider's looks: one interval from the run's start, growing. The 5 % error
    # canary's errors are seen at the first look; at the next look the error query answers []
    # while the total answers: read as "no errors", the canary would pass.
    scenario = prometheus.scenarios["error-regression"]
    source = PrometheusSource(blanking_proxy.url)
    start = scenario.start
    first = Window(start=start, end=start + timedelta(minutes=20), step=timedelta(minutes=20))
    seen = source.fetch(ERROR_RATE, Version.CANARY, scenario.canary_matchers, first)
    assert isinstance(seen, RatioSeries) and seen.bad.sum() > 10

    blanking_proxy.pattern = re.compile(r'response_code=~"5\.\.')
    later = Window(start=start, end=start + timedelta(minutes=30), step=timedelta(minutes=30))
    with pytest.raises(InconsistentAnswer, match="earlier look"):
        source.fetch(ERROR_RATE, Version.CANARY, scenario.canary_matchers, later)
    # a source that never saw the errors finds them missing too: the total's series with a 5xx
    # code witness that the error query lost its answer (`metrics.prometheus`: an empty part)
    with pytest.raises(PartMissing, match="answered nothing while its total has"):
        PrometheusSource(blanking_proxy.url).fetch(
            ERROR_RATE, Version.CANARY, scenario.canary_matchers, later
        )


def test_error_series_missing_from_one_look_of_a_window_is_inconsistent(
    prometheus: PrometheusServer, blanking_proxy: _Blanking
) -> None:
    # Instant queries, one a look: the error query of one late look answers [].
    scenario = prometheus.scenarios["error-regression"]
    window = scenario.window()
    source = PrometheusSource(blanking_proxy.url, range_read_from=10**9)
    # blank only the answers about one instant: match on the query's range (31 minutes)
    blanking_proxy.pattern = re.compile(r'response_code=~"5\.\.".*\[31m\]')
    with pytest.raises(InconsistentAnswer, match=r"not at look\(s\) \[31\]"):
        source.fetch(ERROR_RATE, Version.CANARY, scenario.canary_matchers, window)

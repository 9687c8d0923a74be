"""The real-Prometheus fleet (`python -m benchmarks fleet`) on a tiny configuration.

* Its table has one cell per set-up, analysis, tolerance and scenario, each accounting for every
  pair (aborted + promoted + held + errors), and the Markdown shows one row per cell.
* A 4× error regression over a baseline with an hour of history is caught in most pairs by the
  comparison alone; healthy pairs are not aborted.
* A fleet look is `verdict analyze`'s: the command line over the same Prometheus, file and
  window gives the same verdict and reason.
* Pairs are told apart by their labels, and their in-run traffic does not depend on the set-up.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from benchmarks import fleet
from benchmarks.prom import create_blocks, serve
from metrics.source import Version
from tests.helpers import run_verdict
from tests.promdata import write_openmetrics_file

PAIRS = 3


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    return fleet.run_fleet(
        pairs=PAIRS,
        scenarios=["aa", "errors-4x"],
        setups=["history"],
        analyses=["spec", "compare-only"],
        tolerances=[0.5],
        progress=lambda _: None,
    )


def test_every_cell_accounts_for_every_pair(result: dict[str, Any]) -> None:
    cells = result["cells"]
    assert [(c["analysis"], c["scenario"]) for c in cells] == [
        ("spec", "aa"),
        ("spec", "errors-4x"),
        ("compare-only", "aa"),
        ("compare-only", "errors-4x"),
    ]
    for cell in cells:
        assert cell["setup"] == "history" and cell["tolerance"] == 0.5
        assert cell["pairs"] == PAIRS == len(cell["outcomes"])
        assert cell["aborted"] + cell["promoted"] + cell["held"] + cell["errors"] == PAIRS
        assert cell["errors"] == 0, cell["errorReasons"]
        assert sum(cell["heldReasons"].values()) == cell["held"]
        assert sum(cell["heldKinds"].values()) == cell["held"]
        assert cell["sharedAnyLook"] <= cell["heldAnyLook"] <= cell["pairs"]
        assert sum(cell["abortedBy"].values()) == cell["aborted"]
        for outcome, minute, *_ in cell["outcomes"]:
            assert outcome in ("pass", "fail", "held")
            assert minute % fleet.LOOK_MINUTES == 0 and 0 < minute <= fleet.HORIZON_MINUTES
    json.dumps(result, allow_nan=False)  # what the results file holds
    text = fleet.markdown(result, "python -m benchmarks fleet")
    rows = [
        line
        for line in text.splitlines()
        if line.startswith(("| history | spec |", "| history | compare-only |"))
    ]
    assert len(rows) == len(cells)
    assert rows[0].count("|") == fleet.table(cells)[0].count("|")


def test_four_times_the_errors_is_caught_by_the_comparison_with_history(
    result: dict[str, Any],
) -> None:
    by = {(c["analysis"], c["scenario"]): c for c in result["cells"]}
    regression = by["compare-only", "errors-4x"]
    assert regression["aborted"] >= 2, regression["outcomes"]
    assert regression["promoted"] == 0
    assert all("error-rate" in reason for reason in regression["abortedBy"])
    for analysis in ("spec", "compare-only"):
        assert by[analysis, "aa"]["aborted"] == 0, by[analysis, "aa"]["outcomes"]
        assert by[analysis, "errors-4x"]["promoted"] == 0


@pytest.fixture(scope="module")
def one_pair() -> Iterator[tuple[str, str, datetime]]:
    """A real Prometheus over one 4× error pair with history: (url, pair, canary start)."""
    start, end = fleet.canary_window(datetime.now(UTC))
    setup, scenario = fleet.SETUP_BY_NAME["history"], fleet.SCENARIO_BY_NAME["errors-4x"]
    with tempfile.TemporaryDirectory(prefix="verdict-fleet-test-") as tmp:
        root = Path(tmp)
        write_openmetrics_file(
            [fleet.generate_pair(setup, scenario, 0, start, end)], root / "pair.om"
        )
        create_blocks(root / "pair.om", root / "tsdb")
        with serve(root / "tsdb", root) as url:
            yield url, fleet.pair_name(setup, scenario, 0), start


@pytest.mark.parametrize("minutes", [3, 30])
def test_a_fleet_look_is_verdict_analyze(
    one_pair: tuple[str, str, datetime], minutes: int, tmp_path: Path
) -> None:
    url, pair, start = one_pair
    data = fleet.analysis_file(url, 1.0, "compare-only")
    end = start + timedelta(minutes=minutes)
    in_process = fleet._analyze_like_cli(data, start, end, {"pair": pair})
    config = tmp_path / "fleet.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    done = run_verdict(
        "analyze", "--config", str(config), "--start", start.strftime(stamp),
        "--end", end.strftime(stamp), "--param", f"pair={pair}", "--output", "json",
    )  # fmt: skip
    assert done.returncode in (0, 1, 3), done.stderr
    printed = json.loads(done.stdout)
    assert (printed["verdict"], printed["reason"]) == (str(in_process.verdict), in_process.reason)
    assert printed["window"]["looks"] == in_process.looks


def test_pairs_have_their_own_labels_and_the_same_run_in_both_setups() -> None:
    start, end = fleet.canary_window(datetime(2026, 1, 1, 12, tzinfo=UTC))
    scenario = fleet.SCENARIO_BY_NAME["aa-shared-incident"]
    history = fleet.generate_pair(fleet.SETUP_BY_NAME["history"], scenario, 4, start, end)
    fresh = fleet.generate_pair(fleet.SETUP_BY_NAME["fresh"], scenario, 4, start, end)
    assert history.scenario.service(Version.CANARY) == "fleet-history-aa-shared-incident-04-canary"
    assert fresh.scenario.service(Version.BASELINE) == "fleet-fresh-aa-shared-incident-04-stable"
    assert fresh.baseline.times[0] == start.timestamp()
    assert history.baseline.times[0] == start.timestamp() - 60 * fleet.HISTORY_MINUTES
    assert history.canary.times[0] == start.timestamp()
    in_run = history.baseline.times >= start.timestamp()
    np.testing.assert_array_equal(history.baseline.requests[in_run], fresh.baseline.requests)
    np.testing.assert_array_equal(history.canary.errors, fresh.canary.errors)
    minutes = np.asarray([10.0, 40.0])
    # the shared incident: over the spec's 1 % SLO, under its 2 % rollback trigger
    assert list(scenario.error_rate(minutes, Version.CANARY, 0.005)) == [0.015, 0.005]
    assert list(scenario.error_rate(minutes, Version.BASELINE, 0.005)) == [0.015, 0.005]
    worse = fleet.SCENARIO_BY_NAME["incident-canary-4x"]
    assert list(worse.error_rate(minutes, Version.CANARY, 0.005)) == [0.06, 0.02]
    # about 200 requests a minute per version over the hour
    assert abs(fresh.canary.requests.sum() / fleet.HORIZON_MINUTES - fleet.RPM) < 10

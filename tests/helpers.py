"""Small shared helpers for tests (no fixtures here; see conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from metrics.source import HistogramSeries, RatioSeries, Series
from tests.promdata import Scenario

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "analyzer" / "examples" / "checkout.yaml"


def run_verdict(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the `verdict` command line as a user would, in a subprocess (`env` adds variables)."""
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, **env} if env else None,
    )


def example_analysis() -> dict[str, object]:
    data = yaml.safe_load(EXAMPLE.read_text())
    assert isinstance(data, dict)
    return data


def scenario_analysis(name: str, scenario: Scenario) -> dict[str, object]:
    """The example analysis named `name`, selecting the scenario's canary and baseline, with no
    `prometheus` key (the URL comes from --prometheus-url or VERDICT_PROMETHEUS_URL)."""
    data = example_analysis()
    data.update(
        name=name,
        canary=dict(scenario.canary_matchers),
        baseline=dict(scenario.baseline_matchers),
    )
    data.pop("prometheus", None)
    return data


def write_analysis(path: Path, data: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stop_process(process: subprocess.Popen[Any]) -> None:
    """Terminate a server process, kill it if it has not exited 10 s later, and reap it."""
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def series_arrays(series: Series | None) -> list[np.ndarray] | None:
    """A fetch's arrays: a ratio's bad and total counts, a histogram's bounds and counts."""
    if series is None:
        return None
    if isinstance(series, RatioSeries):
        return [series.bad, series.total]
    assert isinstance(series, HistogramSeries)
    return [series.bounds, series.counts]


def assert_same_arrays(
    got: list[np.ndarray] | None, expected: list[np.ndarray] | None, *, exact: bool = False
) -> None:
    """A fetch's arrays (`series_arrays`) are another's (None, no series, only None's): to the
    last bit with `exact`, else to 1e-9."""
    for a, b in zip(got or [], expected or [], strict=True):
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)

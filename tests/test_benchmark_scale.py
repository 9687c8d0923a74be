"""The scale benchmark runs end to end in its quick mode and prints its table (a small fleet)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.prometheus


@pytest.mark.timeout(420)
def test_quick_scale_benchmark_prints_its_table_and_writes_its_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "scale", "--quick", "--sizes", "4", "--out",
         str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "controller: 4 runs" in out and "web: 4 runs" in out
    assert "looks/s (due)" in out and "lag p50 / p99 s" in out and "prom req/look" in out
    assert "targets:" in out
    result = json.loads((tmp_path / "scale-quick-4.json").read_text())
    assert (tmp_path / "scale-quick-4.md").read_text().startswith("# Scale")
    phases = {p["mode"]: p for p in result["phases"]}
    assert set(phases) == {"controller", "web"}
    for phase in phases.values():
        assert phase["looks"] > 0 and phase["errors"] == {}
        assert phase["lagSeconds"]["measured"] > 0
        assert phase["prometheusRequestsPerLook"] is not None
        assert phase["storeWritesPerLook"] is not None
    assert phases["controller"]["kubeRequestsPerLook"] > 0
    assert result["plan"]["compression"] == 5

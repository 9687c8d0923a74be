"""What a person sees at a terminal 80 and 120 columns wide: look lines that fit, a unit on every
figure, the decision's reason once, run ids whole, a report summary instead of a page of HTML."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import run_verdict
from tests.terminal import METRICS, assert_units, flat, look_chunks, run_in_terminal

WIDTHS = [80, 120]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(store URL, run id) of a promoted demo run (`--seed 1`), read by the report tests."""
    store = f"sqlite:///{tmp_path_factory.mktemp('terminal-report') / 'runs.sqlite'}"
    demo = run_verdict("demo", "--seed", "1", "--output", "json", "--store", store)
    return store, json.loads(demo.stdout)["run"]["id"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str]]:
    """(store URL, run ids) of a healthy and an error-spike demo run, listed at each width."""
    store = f"sqlite:///{tmp_path_factory.mktemp('terminal-runs') / 'runs.sqlite'}"
    ids = []
    for scenario in ("healthy", "error-spike"):
        demo = run_verdict("demo", "--scenario", scenario, "--output", "json", "--store", store)
        ids.append(json.loads(demo.stdout)["run"]["id"])
    return store, ids


@pytest.mark.parametrize("columns", WIDTHS)
def test_demo_looks_fit_the_terminal_with_a_unit_on_every_figure(
    columns: int, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    screen = run_in_terminal("demo", "--seed", "1", "--store", store, columns=columns)
    assert screen.code == 0, screen.text
    table = next(i for i, line in enumerate(screen.lines) if line.startswith("checkout  verdict"))
    assert not [line for line in screen.lines[:table] if len(line) > columns]
    looks = look_chunks(screen)
    assert len(looks) == 24
    assert_units(looks)
    if columns >= 120:  # room for two metrics on a line
        assert any(line.count(" vs ") >= 2 for line in screen.lines[:table])
    text = flat(screen.text)
    # the window: 24 looks of the 30 s interval over its 12 minutes
    assert "(24 looks, one every 30 s, over 12 min; alpha 0.05)" in text
    # the reason once, in the decision
    reason = "All 3 metrics hold (error-rate, latency-p99, success-rate): safe to promote."
    assert text.count(reason) == 1
    assert f"PROMOTED: promoted to 100 %: {reason}" in text


def test_the_demo_table_shows_a_success_rate_beside_its_good_requests(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    doc = json.loads(
        run_verdict("demo", "--seed", "1", "--output", "json", "--store", store).stdout
    )
    final = {m["name"]: m for m in doc["final"]["metrics"]}
    canary = final["success-rate"]["canary"]
    good = canary["requests"] - canary["bad"]
    screen = run_in_terminal("demo", "--seed", "1", "--store", store, columns=160)
    text = flat(screen.text)
    assert f"{canary['rate'] * 100:.3f} % ({good:,.0f}/{canary['requests']:,.0f})" in text
    errors = final["error-rate"]["canary"]
    assert f"({errors['bad']:,.0f}/{errors['requests']:,.0f})" in text  # an error rate: its errors


@pytest.mark.parametrize("columns", WIDTHS)
def test_runs_list_never_wraps_a_run_id(columns: int, two_runs: tuple[str, list[str]]) -> None:
    store, ids = two_runs
    screen = run_in_terminal("runs", "list", "--store", store, columns=columns)
    assert screen.code == 0, screen.text
    for run_id in ids:
        assert any(re.search(rf"│ {run_id} │", line) for line in screen.lines), screen.text
    assert not screen.too_wide()


@pytest.mark.parametrize("columns", WIDTHS)
def test_report_on_a_terminal_is_a_short_summary_with_how_to_get_the_html(
    columns: int, demo_run: tuple[str, str]
) -> None:
    store, run_id = demo_run
    screen = run_in_terminal("report", run_id, "--store", store, columns=columns)
    assert screen.code == 0, screen.text
    assert "<html" not in screen.text and "base64" not in screen.text
    assert len(screen.lines) < 20 and not screen.too_wide()
    text = flat(screen.text)
    assert "PROMOTED at look 24 (step 3, canary 50 %): promoted to 100 %" in text
    assert f"verdict report {run_id} --out report.html" in text
    row = re.compile(r"^([a-z0-9-]+) +(pass|fail|inconclusive|no data) ")
    rows = {found[1]: line for line in screen.lines if (found := row.match(line))}
    assert set(rows) == set(METRICS)
    assert rows["latency-p99"].count(" ms") == 2 and rows["error-rate"].count(" %") == 2


def test_report_refuses_to_print_html_on_a_terminal_and_says_how(
    demo_run: tuple[str, str],
) -> None:
    store, run_id = demo_run
    screen = run_in_terminal("report", run_id, "--output", "html", "--store", store, columns=80)
    assert screen.code == 2
    assert "<html" not in screen.text
    assert f"verdict report {run_id} --out report.html" in flat(screen.text)

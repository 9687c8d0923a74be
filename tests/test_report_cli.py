"""`verdict report`: `--output` is the format (as for every command), `--out FILE` / `-o FILE`
the destination; the old spellings still work."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import run_verdict


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(store URL, run id) of a promoted demo run."""
    store = f"sqlite:///{tmp_path_factory.mktemp('report') / 'runs.sqlite'}"
    demo = run_verdict("demo", "--output", "json", "--store", store)
    return store, json.loads(demo.stdout)["run"]["id"]


def report(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`verdict report ...` run in `folder` (where a relative --out lands), output piped."""
    return subprocess.run(
        [sys.executable, "-m", "analyzer.cli", "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )


def test_output_json_prints_json_and_writes_no_file(
    demo_run: tuple[str, str], tmp_path: Path
) -> None:
    store, run_id = demo_run
    result = report(tmp_path, run_id, "--output", "json", "--store", store)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["run"]["id"] == run_id
    assert list(tmp_path.iterdir()) == []  # no file named `json`
    assert result.stderr == ""


@pytest.mark.parametrize(
    ("args", "name", "starts"),
    [
        (["--out", "r.html"], "r.html", "<!DOCTYPE html>"),
        (["-o", "r.md"], "r.md", "# "),  # the format from the suffix
        (["-o", "r.json"], "r.json", "{"),
        (["--output", "md", "--out", "notes"], "notes", "# "),
        (["--output", "text", "--out", "summary.txt"], "summary.txt", "run "),
    ],
)
def test_out_writes_the_file_in_the_format_asked(
    demo_run: tuple[str, str], tmp_path: Path, args: list[str], name: str, starts: str
) -> None:
    store, run_id = demo_run
    result = report(tmp_path, run_id, *args, "--store", store)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_text(encoding="utf-8").lstrip().startswith(starts)


def test_piped_without_output_is_the_html_page(demo_run: tuple[str, str], tmp_path: Path) -> None:
    store, run_id = demo_run
    result = report(tmp_path, run_id, "--store", store)
    assert result.returncode == 0 and result.stdout.lstrip().startswith("<!DOCTYPE html>")


def test_the_old_spellings_still_work(demo_run: tuple[str, str], tmp_path: Path) -> None:
    store, run_id = demo_run
    # --format (documented before) is --output
    old = report(tmp_path, run_id, "--format", "json", "--store", store)
    assert old.returncode == 0 and json.loads(old.stdout)["run"]["id"] == run_id
    # --output FILE (documented before) still writes the file, with a note
    written = report(tmp_path, run_id, "--output", "report.html", "--store", store)
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "report.html").read_text().lstrip().startswith("<!DOCTYPE html>")
    assert "--output now names the format" in written.stderr
    assert "--out report.html" in written.stderr


def test_an_unknown_format_exits_2_naming_the_formats(
    demo_run: tuple[str, str], tmp_path: Path
) -> None:
    store, run_id = demo_run
    result = report(tmp_path, run_id, "--output", "pdf", "--out", "x.pdf", "--store", store)
    assert result.returncode == 2
    assert "--output: choose html, json, md, text, got 'pdf'" in result.stderr
    clash = report(tmp_path, run_id, "--format", "md", "--output", "json", "--store", store)
    assert clash.returncode == 2 and "disagree" in clash.stderr
    assert list(tmp_path.iterdir()) == []

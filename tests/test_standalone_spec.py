"""The `rollout:` section: the examples load, bad sections are named errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.spec import SpecError
from strategies.rollout_file import load_rollout_file
from tests.helpers import REPO, example_analysis, run_verdict, write_analysis


@pytest.mark.parametrize(
    ("name", "strategy"),
    [("canary", "canary"), ("bluegreen", "blueGreen"), ("rolling", "rolling")],
)
def test_every_example_file_loads(name: str, strategy: str) -> None:
    file = load_rollout_file(REPO / "examples" / "standalone" / f"{name}.yaml")
    assert file.rollout.strategy == strategy


def test_a_canary_without_its_virtual_service_is_a_named_error(tmp_path: Path) -> None:
    data = example_analysis()
    data["rollout"] = {"strategy": "canary", "stable": {"host": "a"}}
    with pytest.raises(SpecError, match="strategy canary needs virtualService, canary, canaryPods"):
        load_rollout_file(write_analysis(tmp_path / "x.yaml", data))


def test_decreasing_steps_exit_2_naming_the_key(tmp_path: Path) -> None:
    data = example_analysis()
    data["rollout"] = {"strategy": "rolling", "deployment": "d", "steps": [50, 10]}
    result = run_verdict(
        "canary", "run", "--config", str(write_analysis(tmp_path / "x.yaml", data))
    )
    assert result.returncode == 2
    assert "rollout" in result.stderr and "steps" in result.stderr


def test_a_file_without_a_rollout_section_exits_2(tmp_path: Path) -> None:
    path = write_analysis(tmp_path / "x.yaml", example_analysis())
    result = run_verdict("canary", "run", "--config", str(path))
    assert result.returncode == 2
    assert "no rollout: section" in result.stderr

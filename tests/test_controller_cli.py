"""`verdict serve --watch`: bad flags and missing Kubernetes configuration exit 2, clearly.

(The controller at work behind a real `verdict serve --watch` is in test_controller_live.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from analyzer.cli import app
from tests.conftest import free_port
from tests.helpers import example_analysis, write_analysis


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def serve(tmp_path: Path, *flags: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    config = write_analysis(tmp_path / "a.yaml", example_analysis())
    result = CliRunner(env={"KUBECONFIG": None, **(env or {})}).invoke(
        app, ["serve", "--config", str(config), "--port", str(free_port()), *flags]
    )
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--namespace", "shop"], "--namespace, --kubeconfig and --leader-elect need --watch"),
        (["--leader-elect"], "need --watch"),
        (["--watch", "--min-step-looks", "0"], "--min-step-looks must be at least 1"),
        (["--watch", "--max-inconclusive", "later"], "--max-inconclusive: expected a duration"),
        (["--watch", "--action-deadline", "soon"], "--action-deadline: expected a duration"),
        (["--watch", "--action-deadline", "0s"], "--action-deadline must be positive"),
    ],
)
def test_bad_controller_flags_exit_2(tmp_path: Path, flags: list[str], message: str) -> None:
    code, err = serve(tmp_path, *flags)
    assert code == 2, err
    assert message in err


def test_a_missing_kubeconfig_exits_2_naming_it(tmp_path: Path) -> None:
    code, err = serve(tmp_path, "--watch", "--kubeconfig", str(tmp_path / "nope"))
    assert code == 2
    text = " ".join(err.split())
    assert f"--kubeconfig: cannot read kubeconfig {tmp_path / 'nope'}: No such file" in text
    assert "give --kubeconfig" not in text  # one was given


def test_outside_a_cluster_without_a_kubeconfig_exits_2_saying_what_to_give(
    tmp_path: Path,
) -> None:
    code, err = serve(tmp_path, "--watch", env={"KUBERNETES_SERVICE_HOST": None})
    assert code == 2
    text = " ".join(err.split())
    assert "in-cluster service account" in text and "give --kubeconfig or KUBECONFIG" in text

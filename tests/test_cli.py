"""The command line as a user runs it: exit codes, JSON, readable errors."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import EXAMPLE, REPO, example_analysis, run_verdict, write_analysis

WINDOW = ["--start", "2026-11-26T10:00:00Z", "--end", "2026-11-26T10:40:00Z"]


@pytest.mark.parametrize(
    ("scenario", "decision", "code"),
    [
        ("healthy", "promoted", 0),
        ("error-spike", "aborted", 1),
        ("latency-regression", "aborted", 1),
    ],
)
def test_demo_decides_each_scenario(scenario: str, decision: str, code: int) -> None:
    result = run_verdict("demo", "--scenario", scenario, "--output", "json")
    assert result.returncode == code, result.stderr
    doc = json.loads(result.stdout)
    assert doc["decision"] == decision
    assert doc["steps"], "every analysed step is reported"
    assert doc["looks"][0]["weight"] == 5
    assert doc["final"]["verdict"] == ("pass" if decision == "promoted" else "fail")


def test_demo_error_spike_aborts_at_the_first_step_on_the_critical_metric() -> None:
    doc = json.loads(run_verdict("demo", "--scenario", "error-spike", "--output", "json").stdout)
    assert doc["steps"][-1]["weight"] == 5
    assert "Critical metric error-rate failed" in doc["reason"]


def test_demo_text_output_shows_progress_and_decision() -> None:
    result = run_verdict("demo", "--output", "text", "--seed", "2")
    assert result.returncode == 0, result.stderr
    assert "step 1/3  canary 5 %  look 1  inconclusive\n  error-rate " in result.stdout
    assert "PROMOTED" in result.stdout


def test_demo_unknown_scenario_is_a_usage_error() -> None:
    result = run_verdict("demo", "--scenario", "meteor")
    assert result.returncode == 2
    assert "choose one of healthy, error-spike, latency-regression" in result.stderr


def test_analyze_bad_file_exit_2_names_the_key(tmp_path: Path) -> None:
    data = example_analysis()
    data["metrics"][0]["slo"] = {"max": "lots"}  # type: ignore[index]
    path = write_analysis(tmp_path / "bad.yaml", data)
    result = run_verdict(
        "analyze", "--config", str(path), *WINDOW, "--prometheus-url", "http://127.0.0.1:1"
    )
    assert result.returncode == 2
    assert "metrics[0]: slo.max: expected a rate" in result.stderr
    assert "Traceback" not in result.stderr


def test_analyze_missing_file_exit_2(tmp_path: Path) -> None:
    result = run_verdict("analyze", "--config", str(tmp_path / "none.yaml"), *WINDOW)
    assert result.returncode == 2
    assert "cannot read the analysis file" in result.stderr


def test_analyze_bad_time_exit_2() -> None:
    result = run_verdict("analyze", "--config", str(EXAMPLE), "--start", "yesterday")
    assert result.returncode == 2
    assert "--start: expected an RFC 3339 time" in result.stderr


def test_analyze_refuses_a_time_without_a_zone_exit_2() -> None:
    result = run_verdict(
        "analyze", "--config", str(EXAMPLE), "--start", "2026-11-26T10:00:00", "--end", "now"
    )
    assert result.returncode == 2
    assert "--start: '2026-11-26T10:00:00' has no zone: end it with Z" in result.stderr


def test_analyze_end_before_start_exit_2() -> None:
    result = run_verdict(
        "analyze",
        "--config",
        str(EXAMPLE),
        "--start",
        "2026-11-26T10:00:00Z",
        "--end",
        "2026-11-26T09:00:00Z",
    )
    assert result.returncode == 2
    assert "--end must be after --start" in result.stderr


def test_analyze_missing_required_flag_is_usage_error() -> None:
    result = run_verdict("analyze", "--config", str(EXAMPLE))
    assert result.returncode == 2
    assert "--start" in result.stderr


def test_analyze_unreachable_prometheus_exit_4() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_verdict(
        "analyze",
        "--config",
        str(EXAMPLE),
        *WINDOW,
        "--prometheus-url",
        f"http://127.0.0.1:{port}",
        "--output",
        "json",
    )
    assert result.returncode == 4, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr and "unreachable" in result.stderr
    assert result.stdout == ""


def test_analyze_bad_param_exit_2() -> None:
    result = run_verdict("analyze", "--config", str(EXAMPLE), *WINDOW, "--param", "novalue")
    assert result.returncode == 2
    assert "--param: expected name=value" in result.stderr


def test_analyze_alone_has_the_options_and_help_of_the_analyze_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `verdict analyze` as a process builds that command alone (a faster start); its help is
    # the full app's `analyze --help`, word for word after the usage line
    from analyzer.cli import main

    with pytest.raises(SystemExit) as done:
        main(["analyze", "--help"])
    assert done.value.code == 0
    in_app = capsys.readouterr().out
    alone = run_verdict("analyze", "--help")
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout.splitlines()[0] == "Usage: verdict analyze [OPTIONS]"
    assert alone.stdout.splitlines()[1:] == in_app.splitlines()[1:]
    assert "--prometheus-url" in alone.stdout and "--param" in alone.stdout
    bad = run_verdict("analyze", "--config", str(EXAMPLE), "--bogus")
    assert bad.returncode == 2 and "No such option: --bogus" in bad.stderr


def _analyze_command() -> Any:
    """Typer's click command for `verdict analyze` (as the command line builds it alone)."""
    import typer

    from analyzer.cli import _analyze_alone

    return typer.main.get_command(_analyze_alone())


def _typer_reads(args: list[str]) -> dict[str, object] | None:
    """The parameters typer's `analyze` command reads from `args`, or None when it refuses them."""
    import click

    try:
        return dict(_analyze_command().make_context("verdict analyze", list(args)).params)
    except click.exceptions.ClickException:
        return None


def test_the_plain_reading_of_analyze_knows_exactly_the_commands_options() -> None:
    from analyzer.cli import _ANALYZE_FLAGS

    flags = {flag: p.name for p in _analyze_command().params for flag in p.opts + p.secondary_opts}
    assert flags == _ANALYZE_FLAGS


PLAIN = ["--config", "a.yaml", "--start", "2026-11-26T10:00:00Z"]


@pytest.mark.parametrize(
    "args",
    [
        PLAIN,
        ["-c", "a.yaml", "--start", "s", "--end", "e", "--prometheus-url", "http://p:9090"],
        [*PLAIN, "--output", "json", "--timeout", "7.5", "--param", "a=1", "--param", "b=2"],
        ["--config=a.yaml", "--start=s", "--output=text", "--timeout=30", "--param=x="],
        ["--timeout", "600", "--start", "2026-11-26T10:00:00+01:00", "--config", ""],
    ],
)
def test_plain_analyze_arguments_are_read_as_typer_reads_them(args: list[str]) -> None:
    from analyzer.cli import _plain_analyze_arguments

    plain = _plain_analyze_arguments(list(args))
    assert plain is not None, "plain arguments skip typer"
    assert plain == _typer_reads(args)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        [*PLAIN, "--help"],
        ["--config", "a.yaml"],  # no --start: typer names it
        ["--start", "s"],
        [*PLAIN, "--bogus", "x"],
        [*PLAIN, "--start", "again"],  # typer takes the last; left to it
        [*PLAIN, "--output", "JSON"],  # typer refuses it
        [*PLAIN, "--output", "yaml"],
        [*PLAIN, "--timeout", "nan"],  # typer reads it (then refused by the command)
        [*PLAIN, "--timeout", " 5 "],
        [*PLAIN, "--timeout", "1e1"],
        [*PLAIN, "--timeout"],
        [*PLAIN, "--end", "-1"],
        ["-ca.yaml", "--start", "s"],
        ["-c=a.yaml", "--start", "s"],
        [*PLAIN, "positional"],
        [*PLAIN, "--"],
    ],
)
def test_any_other_analyze_arguments_go_to_typer(args: list[str]) -> None:
    from analyzer.cli import _plain_analyze_arguments

    assert _plain_analyze_arguments(list(args)) is None


def test_analyze_arguments_typer_refuses_get_its_usage_error() -> None:
    result = run_verdict("analyze", "--config", str(EXAMPLE), *WINDOW, "--output", "JSON")
    assert result.returncode == 2
    assert "'JSON' is not one of 'text', 'json'" in result.stderr


def test_loading_the_analyze_path_leaves_the_garbage_collector_on() -> None:
    # `verdict analyze` imports its path with the collector paused, then freezes what the
    # imports made: the collector must run again for the analysis (a large one makes cycles)
    import subprocess
    import sys

    code = (
        "import gc, sys\n"
        "import analyzer.cli\n"
        "before = set(sys.modules)\n"
        "analyzer.cli.load_analyze_path()\n"
        "loaded = set(sys.modules) - before\n"
        "assert gc.isenabled(), 'collector left off'\n"
        "assert gc.get_freeze_count() > 0, 'nothing set aside'\n"
        "assert {'analyzer.analysis', 'metrics.prometheus', 'analyzer.render'} <= loaded, loaded\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_version_prints_the_package_version() -> None:
    from importlib.metadata import version

    result = run_verdict("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"verdict {version('verdict')}\n"


def test_help_pages_say_what_each_command_covers() -> None:
    runs = " ".join(run_verdict("runs", "--help").stdout.split())
    assert "`verdict serve`" in runs and "`verdict demo`" in runs
    assert "`verdict canary run`" in runs
    canary = " ".join(run_verdict("canary", "run", "--help").stdout.split())
    for code in ("5 run store unavailable", "6 aborted but the write back to stable"):
        assert code in canary
    serve = run_verdict("serve", "--help").stdout
    plain, controller = serve.split("Controller mode (--watch")
    assert "--watch" in controller and "--leader-elect" in controller
    assert "--kubeconfig" in controller and "--action-deadline" in controller
    assert "--watch" not in plain.split("Options:")[1] and "--port" in plain


def test_demo_window_is_the_look_interval_and_its_length_apart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    doc = json.loads(run_verdict("demo", "--output", "json", "--store", store).stdout)
    window = doc["final"]["window"]
    assert window["intervalSeconds"] == 30  # the analysis' interval, as in `verdict analyze`
    assert window["looks"] == len(doc["looks"]) == 24
    assert window["seconds"] == 24 * 30 == 720  # the window's length


def test_demo_keeps_its_run_in_the_store_VERDICT_STORE_names(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    demo = run_verdict("demo", "--output", "json", env={"VERDICT_STORE": store})
    run_id = json.loads(demo.stdout)["run"]["id"]
    assert (tmp_path / "elsewhere.sqlite").is_file()
    shown = run_verdict("runs", "show", run_id, "--output", "json", env={"VERDICT_STORE": store})
    assert shown.returncode == 0 and json.loads(shown.stdout)["id"] == run_id
    # --store wins over the environment
    other = f"sqlite:///{tmp_path / 'other.sqlite'}"
    missing = run_verdict("runs", "show", run_id, "--store", other, env={"VERDICT_STORE": store})
    assert missing.returncode == 2 and "no run with id" in missing.stderr


def test_the_tests_store_their_runs_in_a_temporary_store() -> None:
    # set for the whole session by tests/conftest.py, inherited by every `verdict` started
    store = os.environ.get("VERDICT_STORE", "")
    assert store.startswith("sqlite:///") and "verdict-runs.sqlite" not in store
    assert not Path(store.removeprefix("sqlite:///")).is_relative_to(REPO)


def test_an_unreachable_grafana_costs_the_demo_little_and_is_said_once(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on: Grafana refuses
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with socket.socket() as silent:  # a Grafana that never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        started = time.monotonic()  # the same demo without Grafana: what the machine takes now
        alone = run_verdict("demo", "--output", "json", "--store", f"sqlite:///{tmp_path / 'a.db'}")
        assert alone.returncode == 0, alone.stderr
        baseline = time.monotonic() - started
        for url in (f"http://127.0.0.1:{port}", f"http://127.0.0.1:{silent.getsockname()[1]}"):
            started = time.monotonic()
            result = run_verdict(
                "demo", "--output", "json", "--grafana-url", url,
                "--store", f"sqlite:///{tmp_path / 'runs.sqlite'}",
            )  # fmt: skip
            took = time.monotonic() - started
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["decision"] == "promoted"
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1, result.stderr
            assert lines[0].startswith(f"warning: grafana at {url}: ")
            assert "event(s) of this run not sent" in lines[0]
            # Grafana's bounded wait (a few seconds in all), not a wait per annotation
            assert took < baseline + 6, (
                f"the demo took {took:.1f} s with Grafana at {url}, {baseline:.1f} s without"
            )


def test_canary_run_with_a_kubeconfig_that_does_not_exist_says_so(tmp_path: Path) -> None:
    result = run_verdict(
        "canary", "run", "--config", str(REPO / "examples" / "standalone" / "canary.yaml"),
        "--kubeconfig", str(tmp_path / "nonexistent"),
    )  # fmt: skip
    assert result.returncode == 2
    line = " ".join(result.stderr.split())
    assert f"--kubeconfig: cannot read kubeconfig {tmp_path / 'nonexistent'}" in line
    assert "No such file or directory" in line and "give --kubeconfig" not in line


def test_analyze_reads_past_a_rollout_section_with_a_note(tmp_path: Path) -> None:
    config = REPO / "examples" / "standalone" / "canary.yaml"
    result = run_verdict(
        "analyze", "--config", str(config), *WINDOW, "--prometheus-url", "http://127.0.0.1:1",
        "--output", "json",
    )  # fmt: skip
    assert result.returncode == 4, result.stderr  # the file is taken; Prometheus is down
    assert f"note: {config}: its rollout: section is for `verdict canary run`; ignored here" in (
        result.stderr
    )
    # anything else unknown is still an error
    data = yaml.safe_load(config.read_text())
    data["rollouts"] = data.pop("rollout")
    typo = write_analysis(tmp_path / "typo.yaml", data)
    refused = run_verdict("analyze", "--config", str(typo), *WINDOW)
    assert refused.returncode == 2 and "rollouts: unknown key" in refused.stderr


def test_a_look_before_any_data_keeps_the_analysis_interval_in_its_window() -> None:
    from datetime import UTC, datetime, timedelta

    from analyzer.demo import default_analysis
    from analyzer.render import report_json
    from analyzer.runs.model import RunKey, advance, new_run
    from analyzer.spec import plan_analysis

    plan = plan_analysis(default_analysis())
    started = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    run = new_run(
        RunKey("checkout", "shop", "checkout", "abc"),
        stable_hash="def",
        params={},
        started_at=started,
        now=started,
    )
    look = advance(plan, run, None, started + timedelta(seconds=10))  # no interval ended yet
    window = report_json(look.report)["window"]
    assert window["intervalSeconds"] == plan.interval == 30
    assert window["seconds"] == 10 and window["looks"] == 1

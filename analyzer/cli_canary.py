"""`verdict canary run`: the standalone canary from the command line (thin: wire, run, render)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from analyzer.redaction import Redactor

# The command's heavy imports (rich, the engine, the Kubernetes client) wait until it runs, so
# that `verdict --help` stays quick: this module is imported whenever the CLI starts.

EXIT_CODES = {"promoted": 0, "aborted": 1, "paused": 3, "interrupted": 130}
EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 4
EXIT_STORE_UNAVAILABLE = 5
EXIT_TRAFFIC_NOT_RESTORED = 6

canary_app = typer.Typer(
    help="Standalone canary: Verdict moves the traffic itself.", no_args_is_help=True
)


def _fail(message: str, code: int, redactor: Redactor | None = None) -> NoReturn:
    """One line on stderr (secrets masked), then exit `code`."""
    from rich.console import Console
    from rich.text import Text

    from analyzer.redaction import Redactor

    text = (redactor or Redactor()).text(message)
    Console(stderr=True, soft_wrap=True).print(
        Text.assemble(("error:", "bold red"), " ", text), highlight=False
    )
    raise typer.Exit(code)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def outcome_json(outcome: Any) -> dict[str, Any]:
    from analyzer.render import report_json

    return {
        "decision": outcome.decision,
        "reason": outcome.reason,
        "run": {"id": outcome.run_id} if outcome.run_id is not None else None,
        "resumedAtStep": outcome.resumed_at_step,
        "steps": outcome.steps,
        "final": report_json(outcome.final) if outcome.final is not None else None,
        "rollback": getattr(outcome, "rollback", None),
    }


def _write_report(run_store: Any, run_id: str, path: str) -> None:
    """The run's report (as `verdict report` writes it), its format from the file's suffix.
    A side part (fail-safe rule I6): whatever goes wrong is reported and never changes the exit
    code, which is the decision's."""
    from analyzer.report import ReportFormat, load_report, render_report

    suffix = Path(path).suffix.lower().lstrip(".")
    fmt = {"md": ReportFormat("md"), "json": ReportFormat("json")}.get(suffix, ReportFormat("html"))
    try:
        Path(path).write_text(render_report(load_report(run_store, run_id), fmt), encoding="utf-8")
    except OSError as error:
        print(f"--report: cannot write {path}: {error.strerror}", file=sys.stderr)
    except Exception as error:
        print(f"--report: the report could not be made: {error}", file=sys.stderr)


@canary_app.command("run")
def canary_run(
    config: Annotated[
        str, typer.Option("--config", "-c", help="Analysis file with a rollout: section.")
    ],
    kubeconfig: Annotated[
        str | None, typer.Option(help="kubeconfig file; default KUBECONFIG, else in-cluster.")
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="Prometheus base URL; overrides the file. Env: VERDICT_PROMETHEUS_URL."),
    ] = None,
    output: Annotated[
        str | None, typer.Option(help="text (default on a terminal) or json.")
    ] = None,
    keep_weights: Annotated[
        bool,
        typer.Option("--keep-weights", help="On Ctrl-C / SIGTERM leave the weights as they are."),
    ] = False,
    store: Annotated[
        str,
        typer.Option(
            envvar="VERDICT_STORE",
            help="Run store: sqlite:///path.db (default) or postgresql://...",
        ),
    ] = "sqlite:///verdict-runs.sqlite",
    report_file: Annotated[
        str | None,
        typer.Option(
            "--report",
            help="At the end, write the run's report here (.html with plots, .md or .json).",
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Start a new run even when this canary's last run ended (promoted or aborted).",
        ),
    ] = False,
) -> None:
    """Run a rollout to its end: exit 0 promoted, 1 aborted, 3 paused, 2 bad input,
    4 Prometheus or the Kubernetes API unreachable, 5 run store unavailable, 6 aborted but the
    write back to stable did not land within rollbackDeadline, 130 interrupted."""
    if output not in (None, "text", "json"):
        _fail(f"--output: text or json, got {output!r}", EXIT_BAD_INPUT)
    as_json = output == "json" or (output is None and not sys.stdout.isatty())
    from rich.console import Console

    from analyzer import logs
    from analyzer.render import print_report
    from analyzer.spec import SpecError

    logs.configure(json=as_json, level="warning")
    from strategies.rollout_file import load_rollout_file

    try:
        file = load_rollout_file(config)
    except SpecError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    spec = file.analysis
    url = prometheus_url or os.environ.get("VERDICT_PROMETHEUS_URL") or spec.prometheus.url
    from analyzer.cli import secrets_redactor

    redactor = secrets_redactor([spec], urls=(url, store))
    logs.configure(json=as_json, level="warning", redactor=redactor)
    if not url:
        _fail(
            "no Prometheus URL: give --prometheus-url, VERDICT_PROMETHEUS_URL or prometheus.url",
            EXIT_BAD_INPUT,
        )
    from analyzer.runs.store import StoreConfigError, StoreUnavailable, open_store
    from metrics.factory import SourceSettings, open_source
    from strategies.kube.api import KubeConfigError, kube_api_client

    try:
        api_client = kube_api_client(kubeconfig)
    except KubeConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    try:
        run_store = open_store(store)
    except StoreConfigError as error:
        _fail(f"--store: {error}", EXIT_BAD_INPUT, redactor)
    source = open_source(
        SourceSettings.of(
            url,
            timeout=spec.prometheus.timeout,
            retries=spec.prometheus.retries,
            headers=spec.prometheus.headers,
            compress=spec.prometheus.compress,
            max_answer_bytes=spec.prometheus.max_answer_bytes,
            max_series=spec.prometheus.max_series,
            bearer_token_file=spec.prometheus.bearer_token_file,
        )
    )
    console = Console(stderr=as_json) if sys.stderr.isatty() or not as_json else None
    from analyzer.notify import NotifyConfigError, build_notifier
    from strategies.wiring import run_rollout, runner

    try:
        notifier = build_notifier(spec.grafana, spec.notifications)
    except NotifyConfigError as error:
        _fail(f"{spec.name}: {error}", EXIT_BAD_INPUT, redactor)
    rollout = runner(
        file,
        api_client,
        source,
        run_store,
        keep_weights=keep_weights,
        console=console,
        restart=restart,
        notifier=notifier,
    )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        outcome, code = run_rollout(rollout, redactor)
        if report_file is not None and outcome is not None and outcome.run_id is not None:
            _write_report(run_store, outcome.run_id, report_file)
    except StoreUnavailable as error:
        _fail(str(error), EXIT_STORE_UNAVAILABLE, redactor)
    finally:
        signal.signal(signal.SIGTERM, previous)
        with contextlib.suppress(Exception):  # a side part: bounded, never the exit code
            notifier.close(timeout=5.0)
        run_store.close()
    if code is not None:
        raise typer.Exit(code)
    assert outcome is not None
    if as_json:
        print(json.dumps(outcome_json(outcome), indent=2))
    else:
        out = Console()
        if outcome.final is not None:  # its reason is in the decision's, printed once below
            print_report(outcome.final, out, reason=False)
        style = {"promoted": "bold green", "aborted": "bold red"}.get(
            outcome.decision, "bold yellow"
        )
        out.print(f"[{style}]{outcome.decision.upper()}[/{style}]: ", end="")
        out.print(outcome.reason, highlight=False, markup=False)
    raise typer.Exit(EXIT_CODES[outcome.decision])

"""The `verdict` command line. Thin: parse, call one engine function, render, exit.

Exit codes (documented in the README):
  0 pass / promoted   1 fail / aborted   3 inconclusive / paused
  2 bad input or usage (invalid analysis file, bad flag, bad query)
  4 metrics source unreachable (Prometheus down, timing out, or answering errors)
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from analyzer import logs
from analyzer.render import EXIT_CODES, print_report, report_json
from analyzer.spec import SpecError, load_analysis
from metrics.errors import BadData, QueryError, SourceUnavailable
from metrics.source import Window

EXIT_BAD_INPUT = 2
EXIT_SOURCE_UNREACHABLE = 4
DECISION_EXIT_CODES = {"promoted": 0, "aborted": 1, "paused": 3}

app = typer.Typer(
    help="Verdict: always-valid canary analysis for progressive delivery.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Output(StrEnum):
    text = "text"
    json = "json"


def _console() -> Console:
    """Rich console; wide when not a terminal so that piped tables do not wrap names."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def _default_output(output: Output | None) -> Output:
    if output is not None:
        return output
    return Output.text if sys.stdout.isatty() else Output.json


def _fail(message: str, code: int) -> NoReturn:
    Console(stderr=True).print(f"[bold red]error:[/bold red] {message}", highlight=False)
    raise typer.Exit(code)


def _parse_time(value: str, flag: str) -> datetime:
    text = value.strip()
    try:
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        parsed = datetime.fromisoformat(text)
    except ValueError:
        _fail(
            f"{flag}: expected an RFC 3339 time such as 2026-11-26T10:00:00Z, got {value!r}",
            EXIT_BAD_INPUT,
        )
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _params(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--param: expected name=value, got {item!r}", EXIT_BAD_INPUT)
        out[key] = value
    return out


@app.command()
def analyze(
    config: Annotated[str, typer.Option("--config", "-c", help="Analysis file (YAML).")],
    start: Annotated[
        str, typer.Option(help="Start of the window, RFC 3339 (e.g. 2026-11-26T10:00:00Z).")
    ],
    end: Annotated[
        str | None, typer.Option(help="End of the window, RFC 3339; default now.")
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="Prometheus base URL; overrides the file. Env: VERDICT_PROMETHEUS_URL."),
    ] = None,
    output: Annotated[
        Output | None, typer.Option(help="text (default on a terminal) or json.")
    ] = None,
    param: Annotated[
        list[str], typer.Option(help="name=value for {{ name }} placeholders in matchers.")
    ] = [],  # noqa: B006
    timeout: Annotated[
        float | None, typer.Option(help="Per-query timeout in seconds; overrides the file.")
    ] = None,
) -> None:
    """Judge canary vs baseline over a past window; exit 0 pass, 1 fail, 3 inconclusive."""
    out = _default_output(output)
    logs.configure(json=out is Output.json)
    try:
        spec = load_analysis(config)
    except SpecError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    window_start = _parse_time(start, "--start")
    window_end = _parse_time(end, "--end") if end else datetime.now(UTC)
    if window_end <= window_start:
        _fail("--end must be after --start", EXIT_BAD_INPUT)
    if window_end - window_start < timedelta(seconds=spec.interval):
        _fail(f"the window is shorter than one interval ({spec.interval:g}s)", EXIT_BAD_INPUT)
    url = prometheus_url or os.environ.get("VERDICT_PROMETHEUS_URL") or spec.prometheus.url
    if not url:
        _fail(
            "no Prometheus URL: give --prometheus-url, VERDICT_PROMETHEUS_URL or prometheus.url",
            EXIT_BAD_INPUT,
        )
    from analyzer.analysis import run_analysis
    from metrics.prometheus import PrometheusSource

    source = PrometheusSource(
        url,
        timeout=timeout if timeout is not None else spec.prometheus.timeout,
        retries=spec.prometheus.retries,
        headers=spec.prometheus.headers or None,
    )
    window = Window(start=window_start, end=window_end, step=timedelta(seconds=spec.interval))
    try:
        report = run_analysis(spec, source, window, params=_params(param))
    except SpecError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except QueryError as error:
        _fail(f"Prometheus rejected a query: {error}", EXIT_BAD_INPUT)
    except (SourceUnavailable, BadData) as error:
        _fail(str(error), EXIT_SOURCE_UNREACHABLE)
    if out is Output.json:
        print(json.dumps(report_json(report), indent=2))
    else:
        print_report(report, _console())
    raise typer.Exit(EXIT_CODES[str(report.verdict)])


@app.command()
def demo(
    scenario: Annotated[
        str, typer.Option(help="healthy, error-spike or latency-regression.")
    ] = "healthy",
    seed: Annotated[int, typer.Option(help="Seed of the simulated traffic.")] = 1,
    output: Annotated[
        Output | None, typer.Option(help="text (default on a terminal) or json.")
    ] = None,
) -> None:
    """A simulated canary through 5 → 10 → 50 → 100 % with the real judge; no services needed."""
    from analyzer.canary import Look
    from analyzer.demo import SCENARIOS, demo_json, run_demo

    if scenario not in SCENARIOS:
        _fail(f"--scenario: choose one of {', '.join(SCENARIOS)}, got {scenario!r}", EXIT_BAD_INPUT)
    out = _default_output(output)
    logs.configure(json=out is Output.json, level="error")
    console = _console()

    def show(look: Look) -> None:
        r = look.report
        parts = "  ".join(f"{m.name}={m.status}" for m in r.metrics)
        console.print(
            f"step {look.step} ({look.weight:>3} %)  look {look.look:>2}  "
            f"{r.verdict!s:<12} score {r.score:>5.1f}  {parts}",
            highlight=False,
        )

    run = run_demo(scenario, seed, on_look=show if out is Output.text else None)
    result = run.result
    if out is Output.json:
        print(json.dumps(demo_json(run), indent=2))
    else:
        if result.final is not None:
            print_report(result.final, console)
        style = {"promoted": "bold green", "aborted": "bold red"}.get(
            result.decision, "bold yellow"
        )
        console.print(f"[{style}]{result.decision.upper()}[/{style}]: {result.reason}")
    raise typer.Exit(DECISION_EXIT_CODES[result.decision])


def main(argv: list[str] | None = None) -> Any:
    return app(args=argv)


if __name__ == "__main__":
    main()

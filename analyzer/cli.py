"""The `verdict` command line. Thin: parse, call one engine function, render, exit.

Exit codes (documented in the README):
  0 pass / promoted   1 fail / aborted   3 inconclusive / paused
  2 bad input or usage (invalid analysis file, bad flag, bad query)
  4 metrics source unreachable (Prometheus down, timing out, or answering errors)
  5 run store unavailable (`verdict runs`)   130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import socket
import sys
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn
from urllib.parse import urlsplit

import typer
from typer.core import TyperCommand

if TYPE_CHECKING:
    from rich.console import Console
    from typer._click import Context, HelpFormatter

    from analyzer.notify import BackgroundNotifier, NopNotifier
    from analyzer.redaction import Redactor
    from analyzer.spec import AnalysisSpec

# Start at once: `verdict --help` imports typer and nothing else of weight; each command imports
# what it uses (pydantic and scipy.special for analyze, the web stack for serve, scipy.stats only
# for a Mann-Whitney check), inside the command.

DEFAULT_STORE = "sqlite:///verdict-runs.sqlite"
"""The run store when neither --store nor VERDICT_STORE names one (in the working folder)."""
EXIT_BAD_INPUT = 2
EXIT_SOURCE_UNREACHABLE = 4
EXIT_INTERRUPTED = 130
DECISION_EXIT_CODES = {"promoted": 0, "aborted": 1, "paused": 3}
MAX_TIMEOUT_SECONDS = 600.0
NOTIFY_DRAIN_SECONDS = 5.0
"""At `verdict serve`'s shutdown: seconds, in all, to send the notifications still queued."""
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# the settings of the app and of `verdict analyze` built alone (`_analyze_alone`)
_TYPER_SETTINGS: dict[str, Any] = {
    "add_completion": False,
    "pretty_exceptions_enable": False,
    "rich_markup_mode": None,  # plain help: rich's help renderer alone costs more than typer
}
app = typer.Typer(
    help="Verdict: always-valid canary analysis for progressive delivery.",
    no_args_is_help=True,
    **_TYPER_SETTINGS,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("verdict")
        except PackageNotFoundError:
            found = "unknown (not installed as a package)"
        print(f"verdict {found}")
        raise typer.Exit()


@app.callback()
def _verdict(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print Verdict's version and exit.",
        ),
    ] = False,
) -> None:
    """Verdict: always-valid canary analysis for progressive delivery."""


class PanelCommand(TyperCommand):
    """A command whose help lists its options by panel (`rich_help_panel=`) in sections of
    their own, after the plain "Options" (typer draws panels only with rich's help)."""

    def format_options(self, ctx: Context, formatter: HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                panel = getattr(param, "rich_help_panel", None) or "Options"
                sections.setdefault(panel, []).append(record)
        for title in sorted(sections, key=lambda t: t != "Options"):
            with formatter.section(title):
                formatter.write_dl(sections[title])


class Output(StrEnum):
    text = "text"
    json = "json"


def _console() -> Console:
    """Rich console; wide when not a terminal so that piped tables do not wrap names."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=160)


def _default_output(output: Output | None) -> Output:
    if output is not None:
        return output
    return Output.text if sys.stdout.isatty() else Output.json


def printable(text: str) -> str:
    """`text` safe for a terminal: control characters (ESC included) shown as `\\xNN`."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _fail(message: str, code: int, redactor: Redactor | None = None) -> NoReturn:
    """One line on stderr (secrets masked, control characters escaped), then exit `code`."""
    from rich.console import Console
    from rich.text import Text

    from analyzer.redaction import Redactor

    text = printable((redactor or Redactor()).text(message))
    error = Text.assemble(("error:", "bold red"), " ", text)
    Console(stderr=True, soft_wrap=True).print(error, highlight=False)
    raise typer.Exit(code)


def _parse_time(value: str, flag: str, now: datetime) -> datetime:
    """One rule for the CLI and the API (`analyzer.clock`): RFC 3339 with a zone, not ahead."""
    from analyzer.clock import CLOCK_SKEW, parse_time

    try:
        parsed = parse_time(value)
    except ValueError as error:
        _fail(f"{flag}: {error}", EXIT_BAD_INPUT)
    if parsed > now + CLOCK_SKEW:
        _fail(
            f"{flag}: {value!r} lies in the future (more than {CLOCK_SKEW.total_seconds():g} s "
            "ahead); there is no data there yet",
            EXIT_BAD_INPUT,
        )
    return parsed


def _check_url(url: str, where: str, redactor: Redactor) -> str:
    """An http(s) URL with a host; exit 2 with one line otherwise."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as error:
        _fail(f"{where}: not a valid URL {url!r}: {error}", EXIT_BAD_INPUT, redactor)
    if parts.scheme not in ("http", "https") or not host:
        _fail(
            f"{where}: expected an http(s) URL such as http://prometheus:9090, got {url!r}",
            EXIT_BAD_INPUT,
            redactor,
        )
    return url.strip()


def _check_timeout(timeout: float) -> float:
    if not (math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT_SECONDS):
        _fail(
            f"--timeout: give seconds above 0 and at most {MAX_TIMEOUT_SECONDS:g}, got {timeout:g}",
            EXIT_BAD_INPUT,
        )
    return timeout


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
        str,
        typer.Option(help="Start of the window, RFC 3339 with a zone (e.g. 2026-11-26T10:00:00Z)."),
    ],
    end: Annotated[
        str | None, typer.Option(help="End of the window, RFC 3339 with a zone; default now.")
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
    from analyzer import logs
    from analyzer.limits import window_error
    from analyzer.redaction import Redactor, url_secrets
    from analyzer.spec import SpecError, load_analysis, plan_analysis
    from metrics.errors import BadData, QueryError, SourceUnavailable
    from metrics.source import Window

    out = _default_output(output)
    logs.configure(json=out is Output.json)
    notes: list[str] = []
    try:
        spec = load_analysis(config, notes=notes)
    except SpecError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    for note in notes:  # a rollout: section (`verdict canary run`'s), read past
        print(f"note: {printable(note)}", file=sys.stderr)
    urls = (prometheus_url, os.environ.get("VERDICT_PROMETHEUS_URL"), spec.prometheus.url)
    redactor = Redactor.of(
        [spec.prometheus.headers],
        *(s for u in urls for s in url_secrets(u)),
        *_source_token_secrets([spec]),
    )
    logs.configure(json=out is Output.json, redactor=redactor)
    now = datetime.now(UTC)
    window_start = _parse_time(start, "--start", now)
    window_end = min(_parse_time(end, "--end", now), now) if end else now
    if window_end <= window_start:
        _fail("--end must be after --start", EXIT_BAD_INPUT)
    if window_end - window_start < timedelta(seconds=spec.interval):
        _fail(f"the window is shorter than one interval ({spec.interval:g}s)", EXIT_BAD_INPUT)
    too_long = window_error(window_end - window_start, spec.interval)
    if too_long:
        _fail(too_long, EXIT_BAD_INPUT)
    query_timeout = _check_timeout(timeout if timeout is not None else spec.prometheus.timeout)
    url = prometheus_url or os.environ.get("VERDICT_PROMETHEUS_URL") or spec.prometheus.url
    if not url:
        _fail(
            "no Prometheus URL: give --prometheus-url, VERDICT_PROMETHEUS_URL or prometheus.url",
            EXIT_BAD_INPUT,
        )
    url = _check_url(url, "the Prometheus URL", redactor)
    from analyzer.analysis import run_analysis
    from metrics.factory import SourceSettings, open_source

    source = open_source(
        SourceSettings.of(
            url,
            timeout=query_timeout,
            retries=spec.prometheus.retries,
            headers=spec.prometheus.headers,
            compress=spec.prometheus.compress,
            max_answer_bytes=spec.prometheus.max_answer_bytes,
            max_series=spec.prometheus.max_series,
            bearer_token_file=spec.prometheus.bearer_token_file,
        )
    )
    window = Window(start=window_start, end=window_end, step=timedelta(seconds=spec.interval))
    try:
        report = run_analysis(plan_analysis(spec), source, window, params=_params(param))
    except SpecError as error:
        _fail(str(error), EXIT_BAD_INPUT, redactor)
    except QueryError as error:
        _fail(f"Prometheus rejected a query: {error}", EXIT_BAD_INPUT, redactor)
    except (SourceUnavailable, BadData) as error:
        _fail(str(error), EXIT_SOURCE_UNREACHABLE, redactor)
    except KeyboardInterrupt:  # Ctrl-C: not a verdict (1 would read as a failed canary)
        _fail("interrupted", EXIT_INTERRUPTED)
    from analyzer.render import EXIT_CODES, print_report, report_json

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
    store: Annotated[
        str,
        typer.Option(
            envvar="VERDICT_STORE", help="Run store that keeps the run for `verdict report`."
        ),
    ] = DEFAULT_STORE,
    grafana_url: Annotated[
        str | None,
        typer.Option(help="Annotate the run on this Grafana (the run then starts now)."),
    ] = None,
    grafana_token_file: Annotated[
        str | None, typer.Option(help="File holding a Grafana service account token.")
    ] = None,
    prometheus: Annotated[
        bool,
        typer.Option(
            "--prometheus",
            help="Read a real Prometheus: start the local `prometheus` binary, feed it the "
            "simulated service's live traffic, and run the canary loop against it "
            "(a look every 2 s, steps of 10 s).",
        ),
    ] = False,
) -> None:
    """A simulated canary through 5 → 10 → 50 → 100 % with the real judge; no services needed
    (with --prometheus: read from a local Prometheus)."""
    from analyzer import logs
    from analyzer.demo import DEMO_START, SCENARIOS, default_analysis, demo_json, run_demo
    from analyzer.render import LOOK_LEGEND, look_lines, print_report
    from strategies.record import Look

    if scenario not in SCENARIOS:
        _fail(f"--scenario: choose one of {', '.join(SCENARIOS)}, got {scenario!r}", EXIT_BAD_INPUT)
    out = _default_output(output)
    logs.configure(json=out is Output.json, level="error")
    binary = _prometheus_binary() if prometheus else None
    console = _console()
    spec = default_analysis()
    notifier = _notifier(spec, grafana_url, grafana_token_file)
    run_store = _open_run_store(store)
    grafana = grafana_url or (spec.grafana.url if spec.grafana else None)
    if binary is not None:
        _demo_live(scenario, seed, spec, binary, run_store, (notifier, grafana), out)
    # on a real Grafana the simulated run is drawn from now on; otherwise at a fixed time
    start = (
        datetime.now(UTC).replace(second=0, microsecond=0)
        if grafana_url or spec.grafana
        else DEMO_START
    )
    steps = sum(1 for weight in spec.steps if weight < 100)

    def show(look: Look) -> None:
        if look.look == 1:
            console.print(LOOK_LEGEND, highlight=False, markup=False)
        lines = look_lines(
            look.report, step=look.step, steps=steps, weight=look.weight, look=look.look,
            width=console.width,
        )  # fmt: skip
        for line in lines:
            console.print(line, highlight=False, markup=False, soft_wrap=True)

    try:
        run = run_demo(
            scenario,
            seed,
            spec,
            on_look=show if out is Output.text else None,
            store=run_store,
            notifier=notifier,
            start=start,
        )
    finally:
        _close_notifier(notifier, grafana)
        run_store.close()
    result = run.result
    if out is Output.json:
        print(json.dumps(demo_json(run), indent=2))
    else:
        if result.final is not None:
            print_report(result.final, console, reason=False)
        _print_decision(console, result.decision, result.reason)
        if run.run is not None:
            console.print(f"run {run.run.id}: see it with `verdict report {run.run.id}`")
    if run.run is None:
        _warn(f"the run could not be stored in {store}")
    raise typer.Exit(DECISION_EXIT_CODES[result.decision])


DEMO_NOTIFY_SECONDS = 2.0
"""At the demo's end: seconds to send the notifications still queued (none when the target
already failed: it is down, and the demo does not wait for it)."""


def _warn(message: str) -> None:
    """One warning line on stderr (control characters escaped)."""
    from rich.console import Console
    from rich.text import Text

    line = Text.assemble(("warning:", "yellow"), " ", printable(message))
    Console(stderr=True, soft_wrap=True).print(line, highlight=False)


def _close_notifier(notifier: BackgroundNotifier | NopNotifier, grafana: str | None = None) -> None:
    """Send what the demo queued for Grafana or webhooks, within `DEMO_NOTIFY_SECONDS`; say
    once on stderr what could not be sent (the run itself never waits for them)."""
    from analyzer.notify import BackgroundNotifier

    if not isinstance(notifier, BackgroundNotifier):
        return
    notifier.close(timeout=0.0 if notifier.failing() else DEMO_NOTIFY_SECONDS)
    for target, missed, error in notifier.undelivered():
        where = f" at {grafana}" if target == "grafana" and grafana else ""
        why = f": {error}" if error else ": no answer in time"
        _warn(f"{target}{where}: {missed} event(s) of this run not sent{why}")


def _print_decision(console: Console, decision: str, reason: str) -> None:
    style = {"promoted": "bold green", "aborted": "bold red"}.get(decision, "bold yellow")
    console.print(f"[{style}]{decision.upper()}[/{style}]: ", end="")
    console.print(reason, highlight=False, markup=False)


def _prometheus_binary() -> str:
    """`verdict demo --prometheus`: the `prometheus` binary, or exit 2 saying how to get it."""
    from analyzer.demo_prometheus import PrometheusMissing, prometheus_binary

    try:
        return prometheus_binary()
    except PrometheusMissing as error:
        _fail(f"--prometheus: {error}", EXIT_BAD_INPUT)


def _demo_live(
    scenario: str,
    seed: int,
    spec: AnalysisSpec,
    binary: str,
    run_store: Any,
    notifying: tuple[BackgroundNotifier | NopNotifier, str | None],
    out: Output,
) -> NoReturn:
    """`verdict demo --prometheus` (`analyzer.demo_prometheus`): the canary loop against a
    local Prometheus fed live traffic; prints as `verdict canary run` does."""
    from rich.console import Console

    from analyzer.cli_canary import outcome_json
    from analyzer.demo_prometheus import PrometheusFailed, run_live_demo
    from analyzer.render import print_report
    from metrics.errors import BadData, SourceUnavailable
    from strategies.wiring import show_look

    notifier, grafana = notifying
    console = _console()
    progress = console if out is Output.text else Console(stderr=True)

    def ready(url: str) -> None:
        progress.print(
            f"Prometheus at {url}: scraping the simulated checkout service every second "
            "(canary and stable traffic by the route's weights); stopped at the end",
            highlight=False,
            markup=False,
        )

    def say(message: str) -> None:
        progress.print(message, highlight=False, markup=False)

    try:
        live = run_live_demo(
            scenario,
            seed,
            spec,
            binary,
            store=run_store,
            notifier=notifier,
            on_ready=ready,
            on_look=show_look(progress) if out is Output.text else None,
            on_message=say if out is Output.text else None,
        )
    except PrometheusFailed as error:
        _fail(f"--prometheus: {error}", EXIT_SOURCE_UNREACHABLE)
    except (SourceUnavailable, BadData) as error:
        _fail(str(error), EXIT_SOURCE_UNREACHABLE)
    except KeyboardInterrupt:
        _fail("interrupted", EXIT_INTERRUPTED)
    finally:
        _close_notifier(notifier, grafana)
        run_store.close()
    outcome = live.outcome
    if out is Output.json:
        print(json.dumps({**outcome_json(outcome), "prometheus": live.prometheus}, indent=2))
    else:
        if outcome.final is not None:
            print_report(outcome.final, console, reason=False)
        _print_decision(console, outcome.decision, outcome.reason)
        if outcome.run_id is not None:
            console.print(f"run {outcome.run_id}: see it with `verdict report {outcome.run_id}`")
    raise typer.Exit(DECISION_EXIT_CODES.get(outcome.decision, EXIT_INTERRUPTED))


def _notify_secrets(specs: Iterable[AnalysisSpec], grafana_token_file: str | None) -> list[str]:
    """Grafana tokens and webhook URLs (a Slack webhook URL is a credential), to be masked
    wherever Verdict shows text; unreadable ones are reported when the notifiers are built."""
    from analyzer.notify import NotifyConfigError

    found: list[str] = []
    if grafana_token_file:
        with contextlib.suppress(OSError):
            found.append(Path(grafana_token_file).read_text(encoding="utf-8").strip())
    for spec in specs:
        with contextlib.suppress(NotifyConfigError, OSError):
            found.append((spec.grafana.token() or "") if spec.grafana else "")
        for notification in spec.notifications:
            with contextlib.suppress(NotifyConfigError, OSError):
                found.extend(notification.secrets())
    return found


def _source_token_secrets(specs: Iterable[AnalysisSpec]) -> list[str]:
    """The bearer tokens the analyses' `prometheus.bearerTokenFile`s hold now, to be masked
    wherever Verdict shows text (the source reads the file again at each request; an
    unreadable one is reported by the source)."""
    found: list[str] = []
    for spec in specs:
        if spec.prometheus.bearer_token_file:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                found.append(Path(spec.prometheus.bearer_token_file).read_text("utf-8").strip())
    return found


def secrets_redactor(
    specs: Iterable[AnalysisSpec],
    *,
    token: str | None = None,
    grafana_token_file: str | None = None,
    urls: Iterable[str | None] = (),
) -> Redactor:
    """Masks what the configuration holds secret wherever a command shows text: credential
    headers (Prometheus' and the notifications'), the API token, Grafana tokens, notification
    targets, and the passwords of `urls` (the store's, --prometheus-url) and of every
    analysis' Prometheus URL."""
    from analyzer.redaction import Redactor, url_secrets

    specs = list(specs)
    every_url = (*urls, *(s.prometheus.url for s in specs))
    return Redactor.of(
        [s.prometheus.headers for s in specs] + [n.headers for s in specs for n in s.notifications],
        token,
        *_notify_secrets(specs, grafana_token_file),
        *_source_token_secrets(specs),
        *(secret for url in every_url for secret in url_secrets(url)),
    )


def _notifier(
    spec: AnalysisSpec, grafana_url: str | None, grafana_token_file: str | None
) -> BackgroundNotifier | NopNotifier:
    """The analysis' notifier, with --grafana-url / --grafana-token-file over its file."""
    from analyzer.notify import GrafanaOverride, NotifyConfigError, build_notifier

    if grafana_token_file and not (grafana_url or spec.grafana):
        _fail(
            "--grafana-token-file needs --grafana-url (or grafana.url in the file)", EXIT_BAD_INPUT
        )
    try:
        return build_notifier(
            spec.grafana,
            spec.notifications,
            override=GrafanaOverride(url=grafana_url, token_file=grafana_token_file),
        )
    except NotifyConfigError as error:
        _fail(f"{spec.name}: {error}", EXIT_BAD_INPUT)


EXIT_STORE_UNAVAILABLE = 5

runs_app = typer.Typer(
    help="Runs in the run store: those of `verdict serve` (web provider, controller mode), "
    "`verdict demo` and `verdict canary run`.",
    no_args_is_help=True,
)
app.add_typer(runs_app, name="runs")


def _add_canary_app() -> None:
    from analyzer.cli_canary import canary_app

    app.add_typer(canary_app, name="canary")


_add_canary_app()


def _add_manual_commands() -> None:
    from analyzer.cli_canary import canary_app
    from analyzer.cli_manual import add_manual_commands

    add_manual_commands(app, canary_app)


_add_manual_commands()


CONTROLLER_PANEL = "Controller mode (--watch: promote, pause and abort Argo Rollouts)"


@app.command(cls=PanelCommand)
def serve(
    config: Annotated[
        str, typer.Option("--config", "-c", help="An analysis file, or a folder of them (*.yaml).")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    store: Annotated[
        str,
        typer.Option(
            envvar="VERDICT_STORE",
            help="Run store: sqlite:///path.db (default) or postgresql://user@host/db.",
        ),
    ] = DEFAULT_STORE,
    prometheus_url: Annotated[
        str | None,
        typer.Option(help="Prometheus base URL for every analysis. Env: VERDICT_PROMETHEUS_URL."),
    ] = None,
    look_budget: Annotated[
        float, typer.Option(help="Seconds a look may take (keep it under Argo's timeoutSeconds).")
    ] = 8.0,
    run_ttl: Annotated[
        str, typer.Option(help="Delete a run this long after its last look (e.g. 24h, 90m).")
    ] = "24h",
    token_file: Annotated[
        str | None,
        typer.Option(
            help="File holding the bearer token the API requires. Env: VERDICT_API_TOKEN."
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    prometheus_concurrency: Annotated[
        int, typer.Option(help="Looks that may query Prometheus at once (others wait in budget).")
    ] = 16,
    fleet_gather: Annotated[
        float,
        typer.Option(
            help="Seconds a look may wait for looks of other runs of its analysis, to read "
            "them together in a few queries (only while such looks keep coming); 0: alone."
        ),
    ] = 0.15,  # metrics.fleet.DEFAULT_GATHER (not imported: the command line starts light)
    grafana_url: Annotated[
        str | None,
        typer.Option(help="Annotate every run on this Grafana (over the files' grafana.url)."),
    ] = None,
    grafana_token_file: Annotated[
        str | None, typer.Option(help="File holding a Grafana service account token.")
    ] = None,
    watch: Annotated[
        bool,
        typer.Option(
            "--watch",
            rich_help_panel=CONTROLLER_PANEL,
            help="Controller mode too: watch Argo Rollouts annotated verdict.dev/analysis and "
            "promote, pause or abort them.",
        ),
    ] = False,
    namespace: Annotated[
        list[str],
        typer.Option(
            rich_help_panel=CONTROLLER_PANEL,
            help="A namespace to watch (repeatable); default all.",
        ),
    ] = [],  # noqa: B006
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=CONTROLLER_PANEL,
            help="kubeconfig file; default KUBECONFIG, else in-cluster.",
        ),
    ] = None,
    leader_elect: Annotated[
        bool,
        typer.Option(
            "--leader-elect",
            rich_help_panel=CONTROLLER_PANEL,
            help="Only the holder of a Lease acts (for several replicas).",
        ),
    ] = False,
    lease_namespace: Annotated[
        str | None,
        typer.Option(
            rich_help_panel=CONTROLLER_PANEL,
            help="Namespace of the Lease; default POD_NAMESPACE, else default.",
        ),
    ] = None,
    shards: Annotated[
        int,
        typer.Option(
            rich_help_panel=CONTROLLER_PANEL,
            help="Split the Rollouts into this many shards, a Lease each, shared fairly by the "
            "replicas (each steers the Rollouts of the shards it holds). 1: one leader for all "
            "(with --leader-elect).",
        ),
    ] = 1,
    min_step_looks: Annotated[
        int,
        typer.Option(
            rich_help_panel=CONTROLLER_PANEL,
            help="Looks at a step before a pass promotes it.",
        ),
    ] = 1,
    max_inconclusive: Annotated[
        str,
        typer.Option(
            rich_help_panel=CONTROLLER_PANEL,
            help="Undecided this long at one step is reported (30m).",
        ),
    ] = "30m",
    action_deadline: Annotated[
        str,
        typer.Option(
            rich_help_panel=CONTROLLER_PANEL,
            help="A promote, pause or abort that fails is tried again this long (5m), then "
            "reported as not landed.",
        ),
    ] = "5m",
) -> None:
    """Answer Argo Rollouts' web metric provider: POST/GET /api/v1/verdict (see the README);
    with --watch, also act on Argo Rollouts (controller mode)."""
    from analyzer import logs
    from analyzer.arenas import limit_malloc_arenas
    from analyzer.collector import settle as settle_collector
    from analyzer.durations import parse_seconds
    from analyzer.runs.store import StoreConfigError, StoreUnavailable, open_store
    from analyzer.spec import SpecError, load_analyses

    limit_malloc_arenas()  # before any thread of the server allocates
    try:
        logs.parse_level(log_level)
    except ValueError as error:
        _fail(f"--log-level: {error}", EXIT_BAD_INPUT)
    logs.configure(json=True, level=log_level)
    notes: list[str] = []
    try:
        analyses = load_analyses(config, notes=notes)
    except SpecError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    if not 1 <= prometheus_concurrency <= 256:
        _fail("--prometheus-concurrency: give a number between 1 and 256", EXIT_BAD_INPUT)
    if not 0 < look_budget <= 60:
        _fail("--look-budget: give seconds between 0 and 60, e.g. 8", EXIT_BAD_INPUT)
    try:
        ttl = timedelta(seconds=parse_seconds(run_ttl))
    except ValueError as error:
        _fail(f"--run-ttl: {error}", EXIT_BAD_INPUT)
    if ttl <= timedelta(0):
        _fail("--run-ttl must be positive", EXIT_BAD_INPUT)
    url = prometheus_url or os.environ.get("VERDICT_PROMETHEUS_URL") or None
    missing = sorted(name for name, spec in analyses.items() if not (url or spec.prometheus.url))
    if missing:
        _fail(
            f"no Prometheus URL for {', '.join(missing)}: give --prometheus-url, "
            "VERDICT_PROMETHEUS_URL or prometheus.url in the file",
            EXIT_BAD_INPUT,
        )
    if min_step_looks < 1:
        _fail("--min-step-looks must be at least 1", EXIT_BAD_INPUT)
    try:
        undecided = timedelta(seconds=parse_seconds(max_inconclusive))
    except ValueError as error:
        _fail(f"--max-inconclusive: {error}", EXIT_BAD_INPUT)
    try:
        tries_for = timedelta(seconds=parse_seconds(action_deadline))
    except ValueError as error:
        _fail(f"--action-deadline: {error}", EXIT_BAD_INPUT)
    if tries_for <= timedelta(0):
        _fail("--action-deadline must be positive", EXIT_BAD_INPUT)
    if (namespace or kubeconfig or leader_elect) and not watch:
        _fail("--namespace, --kubeconfig and --leader-elect need --watch", EXIT_BAD_INPUT)
    if not 1 <= shards <= 256:
        _fail("--shards: give a number between 1 and 256", EXIT_BAD_INPUT)
    if shards > 1 and not watch:
        _fail("--shards needs --watch", EXIT_BAD_INPUT)
    token = _read_token(token_file)
    redactor = secrets_redactor(
        analyses.values(), token=token, grafana_token_file=grafana_token_file, urls=(url, store)
    )
    logs.configure(json=True, level=log_level, redactor=redactor, capture_stdlib=True)
    if url:
        url = _check_url(url, "--prometheus-url", redactor)
    for spec in analyses.values():
        if spec.prometheus.url and not url:
            _check_url(spec.prometheus.url, f"{spec.name}: prometheus.url", redactor)
    api_client = None
    if watch:
        from strategies.kube.api import KubeConfigError, kube_api_client

        try:
            api_client = kube_api_client(kubeconfig)
        except KubeConfigError as error:
            _fail(str(error), EXIT_BAD_INPUT)
    try:
        run_store = open_store(store)
    except StoreConfigError as error:
        _fail(f"--store: {error}", EXIT_BAD_INPUT, redactor)
    listener = _listen(host, port)
    import structlog
    import uvicorn

    from analyzer.api import PrometheusSources, ServeSettings, web_app
    from analyzer.clock import SystemClock
    from analyzer.runs import RunService, Telemetry

    log = structlog.get_logger()
    for note in notes:  # files of the folder that are no analysis; sections of other commands
        log.warning(note)
    try:
        run_store.ping()
    except StoreUnavailable as error:
        log.error(
            "run store unavailable at start; /readyz says so until it is back", error=str(error)
        )
    if not 0 <= fleet_gather <= 5:
        _fail("--fleet-gather: give seconds between 0 and 5, e.g. 0.15", EXIT_BAD_INPUT)
    sources = PrometheusSources(look_budget=look_budget, url=url, gather=fleet_gather)
    settings = ServeSettings(
        look_budget=look_budget,
        run_ttl=ttl,
        token=token,
        prometheus_concurrency=prometheus_concurrency,
    )
    notifiers = {
        name: _notifier(spec, grafana_url, grafana_token_file) for name, spec in analyses.items()
    }
    clock = SystemClock()
    service = RunService(
        analyses=analyses,
        store=run_store,
        sources=sources,
        clock=clock,
        settings=settings,
        telemetry=Telemetry(run_store.count),
        notifiers=notifiers,
    )
    controller = None
    if api_client is not None:
        from strategies.argo import ControllerApp, ControllerOptions, ControllerSettings

        controller = ControllerApp(
            api_client,
            service,
            clock,
            ControllerOptions(
                namespaces=tuple(namespace),
                leader_elect=leader_elect,
                lease_namespace=lease_namespace or os.environ.get("POD_NAMESPACE") or "default",
                shards=shards,
                settings=ControllerSettings(
                    min_step_looks=min_step_looks,
                    max_inconclusive=undecided,
                    action_deadline=tries_for,
                ),
            ),
        )
    web = web_app(
        service,
        token=token,
        readiness=[controller.readiness] if controller is not None else [],
        companions=[controller] if controller is not None else [],
        redactor=redactor,
    )
    log.info(
        "verdict serve starting",
        host=host,
        port=port,
        analyses=sorted(analyses),
        store=run_store.description,
        auth=token is not None,
        look_budget=look_budget,
        run_ttl=str(ttl),
        controller=watch,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            web,
            log_config=None,
            log_level="warning",
            access_log=False,
            # longer than clients keep idle connections (Go's default: 90 s), so a poll never
            # races the server closing its connection
            timeout_keep_alive=120,
        )
    )
    # uvicorn re-raises SIGTERM/SIGINT once it has finished the requests in flight; with these
    # handlers that ends the process normally (exit 0) instead of by the signal.
    signal.signal(signal.SIGTERM, _stopped)
    signal.signal(signal.SIGINT, _stopped)
    bound = listener.getsockname()
    where = f"[{bound[0]}]" if listener.family == socket.AF_INET6 else bound[0]
    # one log line each (JSON on stderr, as every line of serve): where it answers, and its end
    log.info(f"listening on http://{where}:{bound[1]}", host=host, port=bound[1])
    settle_collector()  # what exists now lives as long as the server
    try:
        server.run(sockets=[listener])
    finally:
        listener.close()
        from analyzer.notify.background import drain_all

        # every analysis' notifier at once, one bound in all: well inside Kubernetes' 30 s grace
        drain_all(notifiers, timeout=NOTIFY_DRAIN_SECONDS)
        sources.close()
        run_store.close()
        log.info("verdict serve stopped: the looks in flight finished, the store closed")


def _stopped(signum: int, frame: object) -> None:
    """Signal handler run after uvicorn's graceful shutdown: nothing left to do."""


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or exit 2 with one line (busy port, unknown host)."""
    if not 0 <= port <= 65535:
        _fail(f"--port: give a port between 0 and 65535, got {port}", EXIT_BAD_INPUT)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as error:
        _fail(f"--host: cannot listen on {host!r}: {error}", EXIT_BAD_INPUT)
    family, kind, proto, _, address = infos[0]
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind(address)
        listener.listen(2048)
    except OSError as error:
        listener.close()
        reason = error.strerror or str(error)
        _fail(f"cannot listen on {host}:{port}: {reason}", EXIT_BAD_INPUT)
    return listener


def _read_token(token_file: str | None) -> str | None:
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            _fail(f"--token-file: cannot read {token_file}: {error.strerror}", EXIT_BAD_INPUT)
        if not token:
            _fail(f"--token-file: {token_file} is empty", EXIT_BAD_INPUT)
        return token
    return os.environ.get("VERDICT_API_TOKEN", "").strip() or None


def _open_run_store(url: str) -> Any:
    from analyzer.runs.store import StoreConfigError, open_store

    try:
        return open_store(url)
    except StoreConfigError as error:
        _fail(f"--store: {error}", EXIT_BAD_INPUT)


@runs_app.command("list")
def runs_list(
    store: Annotated[
        str, typer.Option(envvar="VERDICT_STORE", help="Run store URL (as given to verdict serve).")
    ] = DEFAULT_STORE,
    limit: Annotated[int, typer.Option(help="At most this many, latest looks first.")] = 50,
    output: Annotated[
        Output | None, typer.Option(help="text (default on a terminal) or json.")
    ] = None,
) -> None:
    """The runs in the store, latest looks first."""
    from rich.table import Table

    from analyzer import logs
    from analyzer.runs import run_json
    from analyzer.runs.store import StoreUnavailable

    out = _default_output(output)
    logs.configure(json=out is Output.json, level="error")
    try:
        runs = _open_run_store(store).runs(limit=limit)
    except StoreUnavailable as error:
        _fail(str(error), EXIT_STORE_UNAVAILABLE)
    docs = [run_json(r, full=False) for r in runs]
    if out is Output.json:
        print(json.dumps({"runs": docs}, indent=2))
        return
    table = Table()
    # ids are copied from here: never wrapped, whatever the width (the others fold)
    id_width = max((len(d["id"]) for d in docs), default=2)
    table.add_column("id", no_wrap=True, min_width=id_width)
    for column in ("analysis", "rollout", "canary", "looks", "verdict", "started", "last look"):
        table.add_column(column, overflow="fold")
    for d in docs:
        table.add_row(
            d["id"],
            d["analysis"],
            f"{d['namespace']}/{d['rollout']}",
            d["canaryHash"],
            str(d["looks"]),
            str(d["verdict"] or "-"),
            _to_the_second(d["startedAt"]),
            _to_the_second(d["updatedAt"]),
        )
    _console().print(table)


def _to_the_second(time: str) -> str:
    """An RFC 3339 time without its fraction of a second (`2026-11-26T10:00:00Z`)."""
    return re.sub(r"\.\d+(?=Z$|[+-]\d\d:\d\d$)", "", time)


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `verdict runs list`).")],
    store: Annotated[
        str, typer.Option(envvar="VERDICT_STORE", help="Run store URL (as given to verdict serve).")
    ] = DEFAULT_STORE,
    output: Annotated[
        Output | None, typer.Option(help="text (default on a terminal) or json.")
    ] = None,
) -> None:
    """One run: identity, looks, sticky failures and the last answer."""
    from analyzer import logs
    from analyzer.runs import run_json
    from analyzer.runs.store import StoreUnavailable

    out = _default_output(output)
    logs.configure(json=out is Output.json, level="error")
    try:
        run = _open_run_store(store).get(run_id)
    except StoreUnavailable as error:
        _fail(str(error), EXIT_STORE_UNAVAILABLE)
    if run is None:
        _fail(f"no run with id {run_id!r} in {store}", EXIT_BAD_INPUT)
    doc = run_json(run, full=True)
    if out is Output.json:
        print(json.dumps(doc, indent=2))
        return
    console = _console()
    console.print(
        f"[bold]run {doc['id']}[/bold]  {doc['analysis']}  {doc['namespace']}/{doc['rollout']}  "
        f"canary {doc['canaryHash']}  stable {doc['stableHash']}",
        highlight=False,
    )
    console.print(
        f"started {doc['startedAt']}  last look {doc['updatedAt']}  looks {doc['looks']}  "
        f"verdict {doc['verdict'] or '-'}  score {doc['score'] if doc['score'] is not None else '-'}",
        highlight=False,
    )
    for name, failure in doc["failedMetrics"].items():
        console.print(
            f"failed: {name} at look {failure['failedAtLook']}: {failure['reason']}",
            highlight=False,
        )
    if doc["reason"]:
        console.print(doc["reason"], highlight=False)


REPORT_FORMATS = ("html", "json", "md", "text")
_REPORT_SUFFIXES = {".json": "json", ".md": "md", ".txt": "text"}


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="The run's id (`verdict runs list`, or `run.id`).")],
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            help="html (with plots), json, md or text (a short summary). Default: text on a "
            "terminal, else html; with --out, from its suffix (.json, .md, .txt; else html).",
        ),
    ] = None,
    out_file: Annotated[
        str | None, typer.Option("--out", "-o", help="Write the report to this file.")
    ] = None,
    store: Annotated[
        str,
        typer.Option(
            envvar="VERDICT_STORE",
            help="Run store URL (as given to verdict serve, demo or canary run).",
        ),
    ] = DEFAULT_STORE,
    format: Annotated[
        str | None, typer.Option("--format", "-f", hidden=True, help="The same as --output.")
    ] = None,
) -> None:
    """One run's report from the run store: steps, looks, each metric over time, the verdict."""
    from analyzer import logs
    from analyzer.report import (
        ReportFormat,
        RunNotInStore,
        load_report,
        render_report,
        report_document,
    )
    from analyzer.runs.store import StoreUnavailable

    logs.configure(json=True, level="error")
    if output is not None and output not in REPORT_FORMATS and format is None and out_file is None:
        # `--output FILE`, as it was documented before --output named the format
        _warn(f"--output {output}: --output now names the format; writing to the file {output} "
              f"as `--out {output}` does")  # fmt: skip
        output, out_file = None, output
    if format is not None and output is not None and format != output:
        _fail(f"--format {format} and --output {output} disagree: give --output", EXIT_BAD_INPUT)
    chosen = output or format
    if chosen is not None and chosen not in REPORT_FORMATS:
        flag = "--output" if output is not None else "--format"
        _fail(
            f"{flag}: choose {', '.join(REPORT_FORMATS)}, got {chosen!r} (the file goes in --out)",
            EXIT_BAD_INPUT,
        )
    terminal = out_file is None and sys.stdout.isatty()
    if chosen is None:
        suffix = Path(out_file).suffix.lower() if out_file is not None else ""
        chosen = "text" if terminal else _REPORT_SUFFIXES.get(suffix, "html")
    if chosen == "html" and terminal:
        _fail(
            f"the HTML report is a page with embedded plots, not for a terminal: write it with "
            f"`verdict report {run_id} --out report.html` (or see a summary without --output)",
            EXIT_BAD_INPUT,
        )
    run_store = _open_run_store(store)
    try:
        loaded = load_report(run_store, run_id)
        if chosen == "text":
            from analyzer.report_summary import full_report_hint, summary_lines

            lines = summary_lines(report_document(loaded))
            text = "\n".join(lines) + "\n"
        else:
            text = render_report(loaded, ReportFormat(chosen))
    except RunNotInStore as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except StoreUnavailable as error:
        _fail(str(error), EXIT_STORE_UNAVAILABLE)
    finally:
        run_store.close()
    if out_file is not None:
        try:
            Path(out_file).write_text(text, encoding="utf-8")
        except OSError as error:
            _fail(f"--out: cannot write {out_file}: {error.strerror}", EXIT_BAD_INPUT)
        return
    if chosen == "text" and terminal:
        console = _console()
        for line in lines:
            console.print(printable(line), highlight=False, markup=False)
        console.print(full_report_hint(run_id), highlight=False, markup=False)
        return
    sys.stdout.write(text)


def _analyze_alone() -> typer.Typer:
    """`verdict analyze` as an app of its own: typer reads only this command's parameters,
    not those of every command (about 20 ms on each run)."""
    alone = typer.Typer(**_TYPER_SETTINGS)
    alone.command()(analyze)
    return alone


# `verdict analyze`'s options as `_plain_analyze_arguments` reads them: flag -> parameter
# (a test holds them to the command's own options)
_ANALYZE_FLAGS = {
    "--config": "config",
    "-c": "config",
    "--start": "start",
    "--end": "end",
    "--prometheus-url": "prometheus_url",
    "--output": "output",
    "--param": "param",
    "--timeout": "timeout",
}
_PLAIN_SECONDS = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")


def _plain_analyze_arguments(args: list[str]) -> dict[str, Any] | None:
    """`verdict analyze`'s arguments when they are plain `--flag value` (or `--flag=value`)
    pairs of its options, each given once (`--param` as often as wished), with `--config`
    and `--start`, and values typer would take as they are: the parameters typer would
    call `analyze` with. None for anything else (help, an unknown, repeated or missing
    option, a value that starts with `-`, an output other than text / json, a timeout that
    is not plain digits): typer then reads the arguments and answers as always. Building
    and running typer's command costs about 5 ms of a command that answers in 50."""
    found: dict[str, Any] = {"param": []}
    rest = iter(args)
    for arg in rest:
        flag, equals, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        name = _ANALYZE_FLAGS.get(flag)
        if not equals:
            value = next(rest, "-")
        if name is None or value.startswith("-") or (name in found and name != "param"):
            return None
        if name == "param":
            found["param"].append(value)
        else:
            found[name] = value
    if "config" not in found or "start" not in found:
        return None
    output, timeout = found.get("output"), found.get("timeout")
    if output is not None and output not in Output.__members__:
        return None
    if timeout is not None and not _PLAIN_SECONDS.fullmatch(timeout):
        return None
    return {
        "config": found["config"],
        "start": found["start"],
        "end": found.get("end"),
        "prometheus_url": found.get("prometheus_url"),
        "output": Output(output) if output is not None else None,
        "param": found["param"],
        "timeout": float(timeout) if timeout is not None else None,
    }


def load_analyze_path() -> None:
    """Import what `verdict analyze` runs, with the cyclic garbage collector paused (it
    would sweep the import's new objects again and again, a tenth of the import's time),
    then set those objects aside for good (`gc.freeze`): the analysis' own collections
    never walk them again. For a process that answers once and ends."""
    import gc

    gc.disable()
    try:
        import netrc  # noqa: F401  (the transport reads ~/.netrc; requests imports it late)

        import analyzer.analysis
        import analyzer.clock
        import analyzer.logs
        import analyzer.render
        import analyzer.spec  # noqa: F401
        import metrics.factory
        import metrics.prometheus  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()


def _run_analyze(args: list[str]) -> None:
    """`verdict analyze` with `args`: called at once when they are plain
    (`_plain_analyze_arguments`, the analyze path loaded by `load_analyze_path`), else through
    typer with that command built alone (its help and usage errors import nothing more)."""
    plain = _plain_analyze_arguments(args)
    if plain is None:
        _analyze_alone()(args=args, prog_name="verdict analyze")
        return
    load_analyze_path()
    try:
        analyze(**plain)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:  # while starting: interrupted, not a verdict
        print("error: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(0)


def main(argv: list[str] | None = None) -> Any:
    if argv is not None or sys.argv[1:2] != ["analyze"]:
        return app(args=argv)
    # `verdict analyze` is one answer and done, run again and again by CI steps and Argo
    # Jobs: its plain arguments are read without typer (else typer builds that command
    # alone), and once the answer is written the process ends without tearing the
    # interpreter down (unloading numpy, pydantic and the rest costs ~0.1 s, a fifth of the
    # command).
    try:
        _run_analyze(sys.argv[2:])
    except SystemExit as done:
        code = done.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    return None


if __name__ == "__main__":
    main()

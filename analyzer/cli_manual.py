"""People's verbs: `verdict promote|abort|pause|resume ROLLOUT` on an Argo Rollout, and
`verdict canary promote|abort|pause|resume` on a running `verdict canary run` (thin: parse,
call one engine function, render, exit)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from analyzer.redaction import Redactor

# Heavy imports (rich, the engine, the Kubernetes client) wait until a command runs, so that
# `verdict --help` stays quick.

EXIT_BAD_INPUT = 2
EXIT_UNREACHABLE = 4
EXIT_STORE_UNAVAILABLE = 5
VERBS = ("promote", "abort", "pause", "resume")
_HELP = {
    "promote": "Promote the Rollout as `kubectl argo rollouts promote` does (the next step).",
    "abort": "Abort the Rollout as `kubectl argo rollouts abort` does (traffic back on stable).",
    "pause": "Pause the Rollout as `kubectl argo rollouts pause` does; the analysis will not "
    "promote it until a person resumes or promotes it.",
    "resume": "Resume a Rollout a person paused (unpause, no step skipped) or retry an aborted "
    "one (`kubectl argo rollouts retry rollout`).",
}
_CANARY_HELP = {
    "promote": "Ask the running canary to give the canary 100 % now (a manual promotion; "
    "blue/green keeps green, rolling lets the update go on without Verdict).",
    "abort": "Ask the running canary to abort: all traffic back on stable (blue/green: back "
    "on blue; rolling: the Deployment rolled back).",
    "pause": "Ask the running canary to hold the canary at its weight, looks going on "
    "(blue/green: green kept past the validation; rolling: the Deployment paused).",
    "resume": "Ask the running canary to go on after a pause.",
}
_EXITS = (
    "Exit 0 done (or already so), 2 bad input or no such Rollout, 4 Kubernetes API unreachable."
)
_CANARY_EXITS = (
    "Exit 0 recorded, 2 bad input / no such run / the run has ended, 5 run store unavailable."
)


def _fail(message: str, code: int, redactor: Redactor | None = None) -> NoReturn:
    """One line on stderr (secrets masked, control characters escaped), then exit `code`."""
    from rich.console import Console
    from rich.text import Text

    from analyzer.cli import printable
    from analyzer.redaction import Redactor

    text = printable((redactor or Redactor()).text(message))
    Console(stderr=True, soft_wrap=True).print(
        Text.assemble(("error:", "bold red"), " ", text), highlight=False
    )
    raise typer.Exit(code)


def _who(by: str | None) -> str:
    """`--by`, else the user running the command."""
    if by and by.strip():
        return by
    found = os.environ.get("USER") or os.environ.get("USERNAME")
    if not found:
        try:
            found = getpass.getuser()
        except Exception:
            found = ""
    if not found:
        _fail("--by: say who acts (no $USER to take it from)", EXIT_BAD_INPUT)
    return found


def _as_json(output: str | None) -> bool:
    if output not in (None, "text", "json"):
        _fail(f"--output: text or json, got {output!r}", EXIT_BAD_INPUT)
    return output == "json" or (output is None and not sys.stdout.isatty())


def _say(doc: dict[str, Any], line: str, as_json: bool) -> None:
    from analyzer.cli import printable

    if as_json:
        print(json.dumps(doc, indent=2))
    else:
        print(printable(line))


# --- Argo Rollouts -------------------------------------------------------------------------


def _argo_verb(action: str) -> Callable[..., None]:
    def verb(
        rollout: Annotated[str, typer.Argument(help="The Rollout's name.")],
        namespace: Annotated[
            str | None,
            typer.Option("--namespace", "-n", help="Its namespace; default the context's."),
        ] = None,
        reason: Annotated[str, typer.Option(help="Why (recorded and notified).")] = "",
        by: Annotated[str | None, typer.Option(help="Who acts; default $USER.")] = None,
        kubeconfig: Annotated[
            str | None, typer.Option(help="kubeconfig file; default KUBECONFIG, else in-cluster.")
        ] = None,
        store: Annotated[
            str,
            typer.Option(
                envvar="VERDICT_STORE",
                help="Run store where the Rollout's run is (its report lists this).",
            ),
        ] = "sqlite:///verdict-runs.sqlite",
        config: Annotated[
            str | None,
            typer.Option(
                "--config", "-c", help="The Rollout's analysis file: notify its notifications."
            ),
        ] = None,
        deadline: Annotated[
            float, typer.Option(help="Seconds to keep trying while the API fails.")
        ] = 120.0,
        output: Annotated[
            str | None, typer.Option(help="text (default on a terminal) or json.")
        ] = None,
    ) -> None:
        as_json = _as_json(output)
        _argo_action(
            action,
            rollout,
            namespace=namespace,
            reason=reason,
            by=_who(by),
            kubeconfig=kubeconfig,
            store_url=store,
            config=config,
            deadline=deadline,
            as_json=as_json,
        )

    verb.__doc__ = f"{_HELP[action]} {_EXITS}"
    verb.__name__ = f"argo_{action}"
    return verb


def _argo_action(
    action: str,
    rollout: str,
    *,
    namespace: str | None,
    reason: str,
    by: str,
    kubeconfig: str | None,
    store_url: str,
    config: str | None,
    deadline: float,
    as_json: bool,
) -> None:
    from analyzer import logs
    from analyzer.clock import SystemClock
    from analyzer.runs.errors import BadInput
    from analyzer.runs.requests import new_request
    from analyzer.spec import SpecError, load_analysis
    from strategies.argo.manual import (
        NoSuchRollout,
        NotLanded,
        Refused,
        RetryPolicy,
        act_by_hand,
        default_namespace,
    )
    from strategies.argo.rollouts import ArgoRollouts
    from strategies.kube.api import KubeConfigError, kube_api_client

    logs.configure(json=as_json, level="warning")
    if not deadline > 0:
        _fail("--deadline must be positive", EXIT_BAD_INPUT)
    spec = None
    if config is not None:
        try:
            spec = load_analysis(config)
        except SpecError as error:
            _fail(str(error), EXIT_BAD_INPUT)
    try:
        request = new_request(action, by, reason, now=SystemClock().now())
    except BadInput as error:
        _fail(error.message, EXIT_BAD_INPUT)
    try:
        api_client = kube_api_client(kubeconfig)
    except KubeConfigError as error:
        _fail(str(error), EXIT_BAD_INPUT)
    where = namespace or default_namespace(kubeconfig)
    actuator = ArgoRollouts(api_client, component="verdict")
    try:
        result = act_by_hand(
            actuator, where, rollout, request, policy=RetryPolicy(deadline=deadline)
        )
    except (NoSuchRollout, Refused) as error:
        _fail(str(error), EXIT_BAD_INPUT)
    except NotLanded as error:
        _fail(f"the Kubernetes API is unreachable: {error}", EXIT_UNREACHABLE)
    run_id = _record_argo(result, store_url, spec)
    doc = {
        "action": action,
        "rollout": {"namespace": where, "name": rollout},
        "request": request.as_dict(),
        "already": result.already,
        "patches": [{"subresource": p.subresource, "body": p.body} for p in result.sent],
        "run": {"id": run_id} if run_id else None,
    }
    _say(doc, result.message(), as_json)


def _record_argo(result: Any, store_url: str, spec: Any) -> str | None:
    """The action as an event of the Rollout's run (if the store has one) and through the
    analysis' notifiers (with `--config`): after the action, bounded, never the exit code."""
    from analyzer.clock import SystemClock
    from analyzer.notify import NopNotifier, NotifyConfigError, build_notifier, event_json
    from analyzer.runs.store import open_store
    from strategies.argo.manual import find_run, manual_run_event

    run = None
    store = None
    analysis = spec.name if spec is not None else None
    try:
        store = open_store(store_url)
        run = find_run(store, result.rollout, analysis)
    except Exception as error:  # a side part: the action has landed
        print(f"warning: the run store was not read: {error}", file=sys.stderr)
    way = "controller"
    if run is not None and store is not None:
        try:
            events = store.events(run.id)
            way = next((str(e["run"].get("way")) for e in events if "run" in e), way)
        except Exception:
            pass
    event = manual_run_event(
        result, run, analysis=analysis or (run.key.analysis if run else None), way=way,
        now=SystemClock().now(),
    )  # fmt: skip
    if run is not None and store is not None:
        try:
            store.add_event(run.id, "decision", event_json(event))
        except Exception as error:
            print(f"warning: the action was not recorded in run {run.id}: {error}", file=sys.stderr)
    if store is not None:
        store.close()
    if spec is not None:
        try:
            notifier: Any = build_notifier(spec.grafana, spec.notifications)
        except NotifyConfigError as error:
            print(f"warning: not notified: {error}", file=sys.stderr)
            notifier = NopNotifier()
        notifier.post(event)
        notifier.close(timeout=5.0)
    return run.id if run is not None else None


# --- a running canary ----------------------------------------------------------------------


def _canary_verb(action: str) -> Callable[..., None]:
    def verb(
        config: Annotated[
            str | None,
            typer.Option("--config", "-c", help="The rollout file (as given to `canary run`)."),
        ] = None,
        run: Annotated[
            str | None, typer.Option("--run", help="The run's id, instead of --config.")
        ] = None,
        reason: Annotated[str, typer.Option(help="Why (recorded and notified).")] = "",
        by: Annotated[str | None, typer.Option(help="Who asks; default $USER.")] = None,
        store: Annotated[
            str,
            typer.Option(envvar="VERDICT_STORE", help="The run store `verdict canary run` uses."),
        ] = "sqlite:///verdict-runs.sqlite",
        output: Annotated[
            str | None, typer.Option(help="text (default on a terminal) or json.")
        ] = None,
    ) -> None:
        as_json = _as_json(output)
        _canary_action(
            action, config=config, run_id=run, reason=reason, by=_who(by), store_url=store,
            as_json=as_json,
        )  # fmt: skip

    verb.__doc__ = (
        f"{_CANARY_HELP[action]} The running `verdict canary run` acts on it at its next look. "
        f"{_CANARY_EXITS}"
    )
    verb.__name__ = f"canary_{action}"
    return verb


def _canary_action(
    action: str,
    *,
    config: str | None,
    run_id: str | None,
    reason: str,
    by: str,
    store_url: str,
    as_json: bool,
) -> None:
    from analyzer import logs
    from analyzer.clock import SystemClock
    from analyzer.runs.errors import RunError
    from analyzer.runs.requests import request_action, running_canary
    from analyzer.runs.store import StoreConfigError, StoreUnavailable, open_store
    from analyzer.spec import SpecError

    logs.configure(json=as_json, level="warning")
    if (config is None) == (run_id is None):
        _fail("give --config FILE (the rollout file) or --run ID", EXIT_BAD_INPUT)
    interval = None
    where = None
    if config is not None:
        from strategies.rollout_file import load_rollout_file

        try:
            file = load_rollout_file(config)
        except SpecError as error:
            _fail(str(error), EXIT_BAD_INPUT)
        interval = file.analysis.interval
        r = file.rollout
        workload, kind = {
            "canary": (r.virtual_service, "VirtualService"),
            "blueGreen": (r.active_service, "Service"),
            "rolling": (r.deployment, "Deployment"),
        }[r.strategy]
        where = (file.analysis.name, r.namespace, str(workload), kind)
    try:
        store = open_store(store_url)
    except StoreConfigError as error:
        _fail(f"--store: {error}", EXIT_BAD_INPUT)
    try:
        if where is not None:
            found = running_canary(
                store.runs(limit=1000), analysis=where[0], namespace=where[1], rollout=where[2]
            )
            if found is None:
                _fail(
                    f"no run of {where[0]} on {where[3]} {where[1]}/{where[2]} is "
                    f"running in {store.description}",
                    EXIT_BAD_INPUT,
                )
            run_id = found.id
        assert run_id is not None
        request = request_action(store, run_id, action, by, reason, now=SystemClock().now())
    except RunError as error:
        _fail(error.message, EXIT_BAD_INPUT)
    except StoreUnavailable as error:
        _fail(str(error), EXIT_STORE_UNAVAILABLE)
    finally:
        store.close()
    when = f" (every {interval:g} s)" if interval else ""
    _say(
        {"run": {"id": run_id}, "request": request.as_dict()},
        f"run {run_id}: {request.describe()} recorded; the running rollout acts on it at its "
        f"next look{when}",
        as_json,
    )


def add_manual_commands(app: typer.Typer, canary_app: typer.Typer) -> None:
    """The verbs on the `verdict` app (Argo Rollouts) and on `verdict canary`."""
    for action in VERBS:
        app.command(action)(_argo_verb(action))
        canary_app.command(action)(_canary_verb(action))

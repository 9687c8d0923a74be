"""Wiring of the standalone canary: the real Kubernetes parts, live progress, errors to exit codes."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.console import Console

from analyzer.clock import SystemClock
from analyzer.notify import Notifier
from analyzer.runs.store import RunStore
from analyzer.spec import SpecError
from analyzer.verdicts import MetricReport
from metrics.errors import BadData, QueryError, SourceUnavailable
from metrics.source import MetricSource
from strategies.canary import CanaryRollout, CannotResume, Deps, LookEvent
from strategies.kube.client import KubeUnreachable
from strategies.kube.deployments import DeploymentError
from strategies.kube.istio import Destination, IstioRouter, RouterError
from strategies.kube.pods import PodGate
from strategies.kube.services import ServiceError
from strategies.record import PAUSED, Outcome
from strategies.restore import RestoreFailed
from strategies.rollout_file import RolloutFile

EXIT_BAD_INPUT, EXIT_PAUSED, EXIT_UNREACHABLE = 2, 3, 4
EXIT_TRAFFIC_NOT_RESTORED = 6
"""A fail whose write back to stable did not land within `rollbackDeadline`."""


def deps_over(
    file: RolloutFile, custom: Any, core: Any, source: MetricSource, store: RunStore, clock: Any
) -> Deps:
    r = file.rollout
    assert r.stable is not None and r.canary is not None and r.canary_pods is not None
    router = IstioRouter(
        custom,
        namespace=r.namespace,
        name=str(r.virtual_service),
        route=r.route,
        stable=Destination(r.stable.host, r.stable.subset),
        canary=Destination(r.canary.host, r.canary.subset),
    )
    gate = PodGate(
        core,
        namespace=r.namespace,
        selector=r.canary_pods,
        ready_timeout=r.pod_ready_timeout,
        clock=clock,
    )
    return Deps(router=router, gate=gate, source=source, store=store, clock=clock)


def _figure(m: MetricReport) -> str:
    """The canary's and the baseline's headline figure (a rate or a quantile)."""
    parts = []
    for side in (m.canary, m.baseline):
        value = next((side[k] for k in ("rate", "seconds") if k in side), None)
        parts.append("-" if not isinstance(value, float | int) else f"{value:.4g}")
    return " vs ".join(parts)


def show_look(console: Console) -> Any:
    def show(event: LookEvent) -> None:
        r = event.report
        figures = "  ".join(f"{m.name}={m.status} ({_figure(m)})" for m in r.metrics)
        console.print(
            f"step {event.step}/{event.steps}  {event.weights.stable}/{event.weights.canary}  "
            f"look {event.look:>3}  {r.verdict!s:<12} {event.seconds_left:>5.0f} s left  "
            f"{figures}",
            highlight=False,
        )

    return show


def runner(
    file: RolloutFile,
    api_client: Any,
    source: MetricSource,
    store: RunStore,
    *,
    keep_weights: bool,
    console: Console | None,
    restart: bool = False,
    notifier: Notifier | None = None,
) -> Any:
    """The strategy's runner (`.run()` returns an `Outcome`) over a Kubernetes API client."""
    from kubernetes import client

    clock = SystemClock()
    r = file.rollout
    say = (lambda m: console.print(m, highlight=False)) if console is not None else None
    core = client.CoreV1Api(api_client)
    if r.strategy == "blueGreen":
        from strategies.bluegreen import BlueGreenRollout, _labels
        from strategies.kube.services import ServiceSwitch

        assert r.green is not None
        return BlueGreenRollout(
            file,
            switch=ServiceSwitch(core, namespace=r.namespace, name=str(r.active_service)),
            gate=PodGate(
                core,
                namespace=r.namespace,
                selector=_labels(r.green),
                ready_timeout=r.pod_ready_timeout,
                clock=clock,
            ),
            source=source,
            store=store,
            clock=clock,
            on_message=say,
        )
    if r.strategy == "rolling":
        from strategies.kube.deployments import DeploymentOps
        from strategies.rolling import RollingRollout

        return RollingRollout(
            file,
            ops=DeploymentOps(
                client.AppsV1Api(api_client),
                namespace=r.namespace,
                name=str(r.deployment),
                clock=clock,
            ),
            source=source,
            store=store,
            clock=clock,
            on_message=say,
            restart=restart,
        )
    deps = deps_over(file, client.CustomObjectsApi(api_client), core, source, store, clock)
    if notifier is not None:
        deps = replace(deps, notifier=notifier)
    return CanaryRollout(
        file,
        deps,
        keep_weights=keep_weights,
        restart=restart,
        on_look=show_look(console) if console is not None else None,
        on_message=say,
    )


def run_rollout(rollout: Any) -> tuple[Outcome | None, int | None]:
    """Run the rollout; (outcome, None), or (None, exit code) after printing the error."""
    err = Console(stderr=True, soft_wrap=True)

    def fail(message: str, code: int) -> tuple[None, int]:
        err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
        return None, code

    try:
        return rollout.run(), None
    except RestoreFailed as error:
        return fail(str(error), EXIT_TRAFFIC_NOT_RESTORED)
    except CannotResume as error:
        return Outcome(decision=PAUSED, reason=str(error), run_id=None), None
    except (SpecError, RouterError, ServiceError, DeploymentError) as error:
        return fail(str(error), EXIT_BAD_INPUT)
    except QueryError as error:
        return fail(f"Prometheus rejected a query: {error}", EXIT_BAD_INPUT)
    except (SourceUnavailable, BadData, KubeUnreachable) as error:
        return fail(str(error), EXIT_UNREACHABLE)

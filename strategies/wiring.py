"""Wiring of the standalone canary: the real Kubernetes parts, live progress, errors to exit codes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from analyzer.clock import SystemClock
from analyzer.notify import Notifier
from analyzer.redaction import Redactor
from analyzer.render import LOOK_LEGEND, look_lines
from analyzer.runs.store import RunStore
from analyzer.spec import SpecError
from metrics.errors import BadData, QueryError, SourceUnavailable
from metrics.source import MetricSource
from strategies.canary import CanaryRollout, CannotResume, Deps, LookEvent
from strategies.kube.argocd import ApplicationGate, AppRef, NoApplication, app_of
from strategies.kube.client import KubeUnreachable
from strategies.kube.deployments import DeploymentError
from strategies.kube.istio import Destination, IstioRouter, RouterError
from strategies.kube.pods import PodGate
from strategies.kube.services import ServiceError
from strategies.record import PAUSED, Outcome
from strategies.restore import RestoreFailed
from strategies.rollout_file import RolloutFile

if TYPE_CHECKING:
    from strategies.bluegreen import BlueGreenRollout
    from strategies.rolling import RollingRollout

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
    gate = health_gate(file, core, r.canary_pods, clock, application=argocd_gate(file, custom))
    stable = (
        health_gate(file, core, r.stable_pods, clock) if r.stable_pods is not None else None
    )
    return Deps(
        router=router, gate=gate, source=source, store=store, clock=clock, stable_pods=stable
    )


def health_gate(
    file: RolloutFile,
    core: Any,
    selector: str,
    clock: Any,
    application: Any = None,
    *,
    require_pods: bool = True,
) -> PodGate:
    """The health gate over the pods matching `selector`, with the analysis file's `health:`
    settings (its readiness grace, else the rollout's `podReadyTimeout`)."""
    health = file.analysis.health
    return PodGate(
        core,
        namespace=file.rollout.namespace,
        selector=selector,
        ready_timeout=health.readiness_grace or file.rollout.pod_ready_timeout,
        clock=clock,
        max_restarts=health.max_restarts,
        require_pods=require_pods,
        application=application,
    )


def argocd_gate(
    file: RolloutFile, custom: Any, core: Any = None, apps: Any = None
) -> ApplicationGate | None:
    """The Argo CD Application gate when the analysis file has `argocd:`: the Application it
    names, else the one the workload's `argocd.argoproj.io/instance` label names (canary: the
    VirtualService; blue/green: the active Service, through `core`; rolling: the Deployment,
    through `apps`)."""
    spec = file.analysis.argocd
    if spec is None:
        return None
    r = file.rollout

    def find() -> AppRef | None:  # at the first look, on the run's path (its errors handled)
        from strategies.kube.istio import GROUP, VERSION

        workload: Any
        if r.strategy == "blueGreen":
            read = core.read_namespaced_service(
                str(r.active_service), r.namespace, _preload_content=False
            )
            workload = json.loads(read.data)
        elif r.strategy == "rolling":
            read = apps.read_namespaced_deployment(
                str(r.deployment), r.namespace, _preload_content=False
            )
            workload = json.loads(read.data)
        else:
            workload = custom.get_namespaced_custom_object(
                GROUP, VERSION, r.namespace, "virtualservices", str(r.virtual_service)
            )
        return app_of(workload, namespace=spec.namespace)

    if spec.application is not None:
        return ApplicationGate(custom, AppRef(spec.namespace, spec.application))
    return ApplicationGate(custom, find)


def bluegreen_over(
    file: RolloutFile,
    core: Any,
    custom: Any,
    source: MetricSource,
    store: RunStore,
    clock: Any,
    *,
    notifier: Notifier | None = None,
    on_message: Any = None,
) -> BlueGreenRollout:
    """Blue/green over the Kubernetes API: the active Service's switch, the health gate over
    green's pods (with the Argo CD Application when the file has `argocd:`)."""
    from strategies.bluegreen import BlueGreenRollout, _labels
    from strategies.kube.services import ServiceSwitch

    r = file.rollout
    assert r.green is not None
    application = argocd_gate(file, custom, core=core)
    return BlueGreenRollout(
        file,
        switch=ServiceSwitch(core, namespace=r.namespace, name=str(r.active_service)),
        gate=health_gate(file, core, _labels(r.green), clock, application=application),
        source=source,
        store=store,
        clock=clock,
        on_message=on_message,
        notifier=notifier,
    )


def rolling_over(
    file: RolloutFile,
    apps: Any,
    core: Any,
    custom: Any,
    source: MetricSource,
    store: RunStore,
    clock: Any,
    *,
    notifier: Notifier | None = None,
    on_message: Any = None,
    restart: bool = False,
) -> RollingRollout:
    """A rolling update over the Kubernetes API: the Deployment's ops, the health gate over a
    ReplicaSet's pods (the new one's with the Argo CD Application when the file has `argocd:`)."""
    from strategies.kube.deployments import DeploymentOps
    from strategies.rolling import RollingRollout

    r = file.rollout
    application = argocd_gate(file, custom, apps=apps)
    return RollingRollout(
        file,
        ops=DeploymentOps(apps, namespace=r.namespace, name=str(r.deployment), clock=clock),
        source=source,
        store=store,
        clock=clock,
        on_message=on_message,
        notifier=notifier,
        restart=restart,
        # the Deployment controller makes the pods (and reports a ReplicaSet that cannot)
        gate_for=lambda selector: health_gate(file, core, selector, clock, require_pods=False),
        new_gate_for=lambda selector: health_gate(
            file, core, selector, clock, application=application, require_pods=False
        ),
    )


def show_look(console: Console) -> Any:
    """Prints each look as it comes (`analyzer.render.look_lines`: lines that fit the
    console's width, a unit on every figure), after a legend at the first."""
    shown: list[int] = []

    def show(event: LookEvent) -> None:
        if not shown:
            console.print(LOOK_LEGEND, highlight=False, markup=False)
        shown.append(event.look)
        lines = look_lines(
            event.report,
            step=event.step,
            steps=event.steps,
            weight=event.weights.canary,
            look=event.look,
            seconds_left=event.seconds_left,
            width=console.width,
        )
        for line in lines:
            console.print(line, highlight=False, markup=False, soft_wrap=True)

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
    custom = client.CustomObjectsApi(api_client)
    if r.strategy == "blueGreen":
        return bluegreen_over(
            file, core, custom, source, store, clock, notifier=notifier, on_message=say
        )
    if r.strategy == "rolling":
        return rolling_over(
            file, client.AppsV1Api(api_client), core, custom, source, store, clock,
            notifier=notifier, on_message=say, restart=restart,
        )  # fmt: skip
    deps = deps_over(file, custom, core, source, store, clock)
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


def run_rollout(
    rollout: Any, redactor: Redactor | None = None
) -> tuple[Outcome | None, int | None]:
    """Run the rollout; (outcome, None), or (None, exit code) after printing the error (its
    secrets masked by `redactor`: URL passwords, credential headers)."""
    err = Console(stderr=True, soft_wrap=True)
    mask = redactor or Redactor()

    def fail(message: str, code: int) -> tuple[None, int]:
        err.print(Text.assemble(("error:", "bold red"), " ", mask.text(message)), highlight=False)
        return None, code

    try:
        return rollout.run(), None
    except RestoreFailed as error:
        return fail(str(error), EXIT_TRAFFIC_NOT_RESTORED)
    except CannotResume as error:
        return Outcome(decision=PAUSED, reason=str(error), run_id=None), None
    except (SpecError, RouterError, ServiceError, DeploymentError, NoApplication) as error:
        return fail(str(error), EXIT_BAD_INPUT)
    except QueryError as error:
        return fail(f"Prometheus rejected a query: {error}", EXIT_BAD_INPUT)
    except (SourceUnavailable, BadData, KubeUnreachable) as error:
        return fail(str(error), EXIT_UNREACHABLE)

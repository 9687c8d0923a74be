"""`verdict demo`: a simulated canary through the default steps, judged by the real engine.

The demo runs the real standalone canary (`strategies.canary.CanaryRollout`, the code
`verdict canary run` runs): its Istio router writes the weights of a VirtualService and its pod
gate reads the canary's pods, both on an in-memory Kubernetes (`strategies.kube.memory`), the run
is kept in a throwaway run store, and the simulated metric source sends traffic by the weights
written, in simulated time.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from analyzer.notify import NopNotifier, Notifier, RunInfo
from analyzer.render import report_json
from analyzer.runs import Run, RunKey, new_run
from analyzer.runs.events import RunJournal
from analyzer.runs.store import RunStore, StoreUnavailable, open_store
from analyzer.spec import AnalysisSpec, parse_analysis, safe_load_yaml
from metrics.simulated import SimulatedSource, TrafficModel
from strategies.canary import CanaryRollout, LookEvent
from strategies.events import CanaryRecorder, finish_run
from strategies.kube.istio import Destination, read_weights
from strategies.kube.memory import MemoryKube
from strategies.record import CanaryResult, Look
from strategies.rollout_file import RolloutFile, RolloutSpec
from strategies.simulated import SimulatedClock, SimulatedRouter
from strategies.wiring import deps_over

LOOKS_PER_STEP = 8
EXTRA_LOOKS = 16
"""The last step looks on up to this many intervals while undecided (as the benchmark does)."""

SCENARIOS: dict[str, TrafficModel] = {
    "healthy": TrafficModel(),
    "error-spike": TrafficModel(canary_error_rate=0.05),
    "latency-regression": TrafficModel(canary_latency_factor=3.0),
}


def default_analysis() -> AnalysisSpec:
    """The embedded default analysis (analyzer/examples/checkout.yaml)."""
    text = (
        resources.files("analyzer").joinpath("examples/checkout.yaml").read_text(encoding="utf-8")
    )
    return parse_analysis(safe_load_yaml(text), "embedded checkout.yaml")


DEMO_START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DEMO_NAMESPACE = "demo"
NAMESPACE = DEMO_NAMESPACE


@dataclass(frozen=True)
class DemoRun:
    scenario: str
    seed: int
    result: CanaryResult
    weights: tuple[int, ...] = ()
    """Every canary weight written to the in-memory VirtualService, in order."""
    run: Run | None = None
    """The run as stored (None without a store, or when the store could not take it)."""


def demo_world(kube: MemoryKube) -> None:
    kube.put(
        "virtualservices",
        {
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "checkout", "namespace": NAMESPACE},
            "spec": {
                "hosts": ["checkout"],
                "http": [
                    {
                        "name": "primary",
                        "route": [
                            {
                                "destination": {"host": "checkout", "subset": "stable"},
                                "weight": 100,
                            },
                            {"destination": {"host": "checkout", "subset": "canary"}, "weight": 0},
                        ],
                    }
                ],
            },
        },
    )
    for i in (1, 2):
        kube.put(
            "pods",
            {
                "metadata": {
                    "name": f"checkout-canary-{i}",
                    "namespace": NAMESPACE,
                    "labels": {"app": "checkout", "track": "canary", "pod-template-hash": "demo"},
                },
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            },
        )


def demo_rollout(spec: AnalysisSpec) -> RolloutSpec:
    return RolloutSpec.model_validate(
        {
            "strategy": "canary",
            "namespace": NAMESPACE,
            "virtualService": "checkout",
            "route": "primary",
            "stable": {"host": "checkout", "subset": "stable"},
            "canary": {"host": "checkout", "subset": "canary"},
            "canaryPods": "app=checkout,track=canary",
            "steps": spec.steps,
            "stepDuration": spec.interval * LOOKS_PER_STEP,
            "onTimeout": "pause",
        }
    )


def run_demo(
    scenario: str,
    seed: int,
    spec: AnalysisSpec | None = None,
    on_look: Any = None,
    *,
    store: RunStore | None = None,
    notifier: Notifier | None = None,
    start: datetime = DEMO_START,
    traffic: TrafficModel | None = None,
) -> DemoRun:
    """One simulated canary, from `start` in simulated time. With a store, the run and its
    events (steps, looks, the decision) are stored, so `verdict report` can show it; the
    notifier is told about every event. `traffic`: the service's behaviour instead of the
    scenario's (the scenario then only names the run)."""
    if traffic is None and scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    spec = spec or default_analysis()
    clock = SimulatedClock(start)
    stored = _start_run(store, spec, scenario, seed, start)
    info = RunInfo(
        id=stored.id if stored else "unstored",
        analysis=spec.name,
        namespace=DEMO_NAMESPACE,
        rollout=f"{spec.name}-{scenario}",
        way="demo",
    )
    recorder = CanaryRecorder(
        RunJournal(store if stored else None, notifier or NopNotifier()), info, clock.now
    )
    history = SimulatedRouter(clock)
    kube = MemoryKube()
    demo_world(kube)
    written: list[int] = []
    stable, canary = Destination("checkout", "stable"), Destination("checkout", "canary")

    def follow(plural: str, obj: dict[str, Any]) -> None:
        if plural == "virtualservices":
            weight = read_weights(obj, "primary", stable, canary, "demo").canary
            history.set_weight(weight)
            written.append(weight)
            recorder.weight_set(weight)

    kube.on_write(follow)
    source = SimulatedSource(traffic or SCENARIOS[scenario], history.weight_at, seed=seed)
    file = RolloutFile(path="demo", analysis=spec, rollout=demo_rollout(spec), text="demo")
    result = CanaryResult(decision="paused", reason="", final=None)

    def seen(event: LookEvent) -> None:
        look = Look(step=event.step, weight=event.weights.canary, look=event.look,
                    time=clock.now(), report=event.report)  # fmt: skip
        result.looks.append(look)
        recorder.on_look(look)
        if on_look is not None:
            on_look(look)

    with tempfile.TemporaryDirectory(prefix="verdict-demo-") as folder:
        scratch = open_store(f"sqlite:///{Path(folder) / 'runs.sqlite'}")  # the loop's own
        try:
            deps = deps_over(file, kube, kube, source, scratch, clock)
            outcome = CanaryRollout(
                file, deps, on_look=seen, record_events=False, extra_looks=EXTRA_LOOKS
            ).run()
        finally:
            scratch.close()
    result.decision, result.reason, result.final = outcome.decision, outcome.reason, outcome.final
    looks_by_step: dict[int, int] = {}
    for look in result.looks:
        looks_by_step[look.step] = look.look
    result.steps = [
        {
            "step": s["step"],
            "weight": s["weights"]["canary"],
            "weights": s["weights"],
            "start": s["start"],
            "end": s["end"],
            "verdict": s["verdict"],
            "looks": looks_by_step.get(s["step"], len(result.looks)),
        }
        for s in outcome.steps
        if s["weights"]["canary"] < 100  # the analysed steps (the promotion is the decision)
    ]
    decision = recorder.finish(result)
    if store is not None and stored is not None:
        stored = finish_run(store, stored, decision, looks=len(result.looks)) or stored
    return DemoRun(scenario=scenario, seed=seed, result=result, weights=tuple(written), run=stored)


def _start_run(
    store: RunStore | None, spec: AnalysisSpec, scenario: str, seed: int, start: datetime
) -> Run | None:
    if store is None:
        return None
    run = new_run(
        RunKey(spec.name, DEMO_NAMESPACE, f"{spec.name}-{scenario}", "pending"),
        stable_hash="stable",
        params={"scenario": scenario, "seed": str(seed)},
        started_at=start,
        now=datetime.now(UTC),
    )
    run = replace(run, key=replace(run.key, canary_hash=f"demo-{run.id}"))  # a new run each time
    try:
        return store.start(run)
    except StoreUnavailable as error:
        import structlog

        structlog.get_logger().warning("demo run not stored", error=str(error))
        return None


def look_json(look: Look) -> dict[str, Any]:
    return {
        "step": look.step,
        "weight": look.weight,
        "look": look.look,
        "time": look.time.isoformat().replace("+00:00", "Z"),
        "verdict": str(look.report.verdict),
        "score": look.report.score,
        "metrics": {m.name: str(m.status) for m in look.report.metrics},
    }


def demo_json(run: DemoRun) -> dict[str, Any]:
    r = run.result
    return {
        "decision": r.decision,
        "reason": r.reason,
        "scenario": run.scenario,
        "seed": run.seed,
        "steps": r.steps,
        "looks": [look_json(look) for look in r.looks],
        "final": report_json(r.final) if r.final is not None else None,
        "run": None if run.run is None else {"id": run.run.id},
    }

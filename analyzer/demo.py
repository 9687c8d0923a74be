"""`verdict demo`: a simulated canary through the default steps, judged by the real engine.

The demo runs the real standalone canary (`analyzer.standalone.canary.CanaryRollout`, the code
`verdict canary run` runs): its Istio router writes the weights of a VirtualService and its pod
gate reads the canary's pods, both on an in-memory Kubernetes (`strategies.memory_kube`), the run
is kept in a throwaway run store, and the simulated metric source sends traffic by the weights
written, in simulated time.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from analyzer.canary import CanaryResult, Look
from analyzer.render import report_json
from analyzer.runs.store import open_store
from analyzer.spec import AnalysisSpec, parse_analysis
from analyzer.standalone.canary import CanaryRollout, LookEvent
from analyzer.standalone.spec import RolloutFile, RolloutSpec
from analyzer.standalone.wiring import deps_over
from metrics.simulated import SimulatedSource, TrafficModel
from metrics.source import HistogramSeries, MetricQuery, RatioSeries, Series, Version, Window
from strategies.istio import Destination, read_weights
from strategies.memory_kube import MemoryKube
from strategies.simulated import SimulatedClock, SimulatedRouter

NAMESPACE = "demo"
LOOKS_PER_STEP = 8

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
    return parse_analysis(yaml.safe_load(text), "embedded checkout.yaml")


@dataclass(frozen=True)
class DemoRun:
    scenario: str
    seed: int
    result: CanaryResult
    weights: tuple[int, ...] = ()
    """Every canary weight written to the in-memory VirtualService, in order."""


class _PerInterval:
    """The simulated source asked once per interval and summed: a look's one window from the
    run's start holds the same traffic at every look (as Prometheus' `increase()` does)."""

    def __init__(self, inner: SimulatedSource, interval: float) -> None:
        self._inner = inner
        self._step = timedelta(seconds=interval)

    def check(self) -> None:
        return None

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        fine = Window(start=window.start, end=window.end, step=self._step)
        series = self._inner.fetch(query, version, matchers, fine)
        if series is None:
            return None
        if isinstance(series, RatioSeries):
            return RatioSeries(
                bad=series.bad.sum(keepdims=True), total=series.total.sum(keepdims=True)
            )
        return HistogramSeries(
            bounds=series.bounds, counts=series.counts.sum(axis=0, keepdims=True)
        )


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
    scenario: str, seed: int, spec: AnalysisSpec | None = None, on_look: Any = None
) -> DemoRun:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    spec = spec or default_analysis()
    clock = SimulatedClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
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

    kube.on_write(follow)
    source = _PerInterval(
        SimulatedSource(SCENARIOS[scenario], history.weight_at, seed=seed), spec.interval
    )
    file = RolloutFile(path="demo", analysis=spec, rollout=demo_rollout(spec), text="demo")
    result = CanaryResult(decision="paused", reason="", final=None)

    def seen(event: LookEvent) -> None:
        look = Look(step=event.step, weight=event.weights.canary, look=event.look,
                    time=clock.now(), report=event.report)  # fmt: skip
        result.looks.append(look)
        if on_look is not None:
            on_look(look)

    with tempfile.TemporaryDirectory(prefix="verdict-demo-") as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'runs.sqlite'}")
        try:
            deps = deps_over(file, kube, kube, source, store, clock)
            outcome = CanaryRollout(file, deps, on_look=seen).run()
        finally:
            store.close()
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
    ]
    return DemoRun(scenario=scenario, seed=seed, result=result, weights=tuple(written))


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
    }

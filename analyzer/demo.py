"""`verdict demo`: a simulated canary through the default steps, judged by the real engine."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import yaml

from analyzer.canary import CanaryResult, Look, run_canary
from analyzer.render import report_json
from analyzer.spec import AnalysisSpec, parse_analysis
from metrics.simulated import SimulatedSource, TrafficModel
from strategies.simulated import SimulatedClock, SimulatedRouter

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


def run_demo(
    scenario: str, seed: int, spec: AnalysisSpec | None = None, on_look: Any = None
) -> DemoRun:
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    spec = spec or default_analysis()
    clock = SimulatedClock(datetime(2026, 11, 26, 10, 0, tzinfo=UTC))
    router = SimulatedRouter(clock)
    source = SimulatedSource(SCENARIOS[scenario], router.weight_at, seed=seed)
    result = run_canary(spec, source, router, clock, on_look=on_look)
    return DemoRun(scenario=scenario, seed=seed, result=result)


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

"""`verdict demo`: a simulated canary through the default steps, judged by the real engine."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import yaml

from analyzer.canary import CanaryResult, Look, run_canary
from analyzer.canary_events import CanaryRecorder, finish_run
from analyzer.notify import NopNotifier, Notifier, RunInfo
from analyzer.render import report_json
from analyzer.runs import Run, RunKey, new_run
from analyzer.runs.events import RunJournal
from analyzer.runs.store import RunStore, StoreUnavailable
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


DEMO_START = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
DEMO_NAMESPACE = "demo"


@dataclass(frozen=True)
class DemoRun:
    scenario: str
    seed: int
    result: CanaryResult
    run: Run | None = None
    """The run as stored (None without a store, or when the store could not take it)."""


def run_demo(
    scenario: str,
    seed: int,
    spec: AnalysisSpec | None = None,
    on_look: Any = None,
    *,
    store: RunStore | None = None,
    notifier: Notifier | None = None,
    start: datetime = DEMO_START,
) -> DemoRun:
    """One simulated canary, from `start` in simulated time. With a store, the run and its
    events (steps, looks, the decision) are stored, so `verdict report` can show it; the
    notifier is told about every event."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    spec = spec or default_analysis()
    clock = SimulatedClock(start)
    router = SimulatedRouter(clock)
    source = SimulatedSource(SCENARIOS[scenario], router.weight_at, seed=seed)
    stored = _start_run(store, spec, scenario, seed, start)
    info = RunInfo(
        id=stored.id if stored else "unstored",
        analysis=spec.name,
        namespace=DEMO_NAMESPACE,
        rollout=f"{spec.name}-{scenario}",
        way="demo",
    )
    journal = RunJournal(store if stored else None, notifier or NopNotifier())
    recorder = CanaryRecorder(journal, info, clock.now)

    def look(entry: Look) -> None:
        recorder.on_look(entry)
        if on_look is not None:
            on_look(entry)

    result = run_canary(spec, source, recorder.router(router), clock, on_look=look)
    decision = recorder.finish(result)
    if store is not None and stored is not None:
        stored = finish_run(store, stored, decision, looks=len(result.looks)) or stored
    return DemoRun(scenario=scenario, seed=seed, result=result, run=stored)


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

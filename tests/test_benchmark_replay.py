"""The benchmark's replays give the engine's own answers.

* Verdict: `benchmarks.judges` (look_statuses + decide + the step rules) takes the same decision at
  the same look as the canary loop of `verdict canary run` and `verdict demo`
  (`strategies.canary.CanaryRollout`, over the demo's in-memory Kubernetes, its simulated clock and
  a `SimulatedSource` that follows the weights written), on several scenarios and seeds.
* Kayenta: the vectorised classifier equals `analyzer.stats.mann_whitney_compare` row by row.
* Thresholds: the vectorised histogram_quantile equals `analyzer.stats.quantile`.

Part of the test suite, so the benchmark figures stay the engine's own.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from analyzer.analysis import fetch_observations
from analyzer.demo import demo_rollout, demo_world
from analyzer.looks import CODES_TO_STATUS
from analyzer.runs.store import open_store
from analyzer.spec import AnalysisSpec, plan_analysis
from analyzer.stats import mann_whitney_compare, quantile
from analyzer.stats.mann_whitney import MIN_VALUES
from benchmarks import judges
from benchmarks.simulate import BOUNDS, EXTRA_LOOKS, HORIZON, LOOKS_PER_STEP, STEPS
from benchmarks.specs import benchmark_analysis
from metrics.simulated import SimulatedSource, TrafficModel
from metrics.source import Window
from strategies.canary import CanaryRollout, LookEvent
from strategies.kube.istio import Destination, read_weights
from strategies.kube.memory import MemoryKube
from strategies.record import Look
from strategies.rollout_file import RolloutFile
from strategies.simulated import SimulatedClock, SimulatedRouter
from strategies.wiring import deps_over

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)

MODELS = {
    "busy": TrafficModel(requests_per_second=400.0, baseline_error_rate=0.005, canary_error_rate=0.005),
    "healthy": TrafficModel(requests_per_second=40.0, baseline_error_rate=0.005, canary_error_rate=0.005),
    "low-traffic": TrafficModel(requests_per_second=1.0, baseline_error_rate=0.005, canary_error_rate=0.005),
    "errors-2%": TrafficModel(requests_per_second=5.0, baseline_error_rate=0.005, canary_error_rate=0.02),
    "errors-5%": TrafficModel(requests_per_second=20.0, baseline_error_rate=0.005, canary_error_rate=0.05),
    "latency-x1.5": TrafficModel(requests_per_second=100.0, baseline_error_rate=0.005, canary_error_rate=0.005, canary_latency_factor=1.5),
    "latency-x3": TrafficModel(requests_per_second=10.0, baseline_error_rate=0.005, canary_error_rate=0.005, canary_latency_factor=3.0),
    "onset": TrafficModel(requests_per_second=20.0, baseline_error_rate=0.005, canary_error_rate=0.03, regression_start=START + 12 * STEP),
    "overdispersed": TrafficModel(requests_per_second=30.0, baseline_error_rate=0.005, canary_error_rate=0.005, overdispersion=0.8),
}  # fmt: skip


def _schedule(t: datetime) -> float:
    """The weights the canary loop sets: each step for LOOKS_PER_STEP intervals, the last one after."""
    if t < START:  # before the canary: all traffic on the baseline
        return 0.0
    index = int((t - START) / STEP)
    return float(STEPS[min(index // LOOKS_PER_STEP, len(STEPS) - 1)])


@dataclass
class Engine:
    decision: str
    looks: list[Look] = field(default_factory=list)


def run_engine(spec: AnalysisSpec, model: TrafficModel, seed: int) -> Engine:
    """The canary loop over the demo's world: steps of LOOKS_PER_STEP intervals, the last one
    looking on up to EXTRA_LOOKS more intervals while undecided, each look judged interval by
    interval (as the benchmark's replay judges)."""
    clock = SimulatedClock(START)
    history = SimulatedRouter(clock)
    kube = MemoryKube()
    demo_world(kube)
    stable, canary = Destination("checkout", "stable"), Destination("checkout", "canary")

    def follow(plural: str, obj: dict[str, Any]) -> None:
        if plural == "virtualservices":
            history.set_weight(read_weights(obj, "primary", stable, canary, "demo").canary)

    kube.on_write(follow)
    source = SimulatedSource(model, history.weight_at, seed=seed)
    rollout = demo_rollout(spec).model_copy(
        update={"steps": [*STEPS, 100], "step_duration": spec.interval * LOOKS_PER_STEP}
    )
    file = RolloutFile(path="replay", analysis=spec, rollout=rollout, text="replay")
    engine = Engine(decision="")

    def seen(event: LookEvent) -> None:
        engine.looks.append(
            Look(event.step, event.weights.canary, event.look, clock.now(), event.report)
        )

    with tempfile.TemporaryDirectory(prefix="verdict-replay-") as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'runs.sqlite'}")
        try:
            deps = deps_over(file, kube, kube, source, store, clock)
            outcome = CanaryRollout(
                file, deps, on_look=seen, record_events=False,
                extra_looks=EXTRA_LOOKS,
            ).run()  # fmt: skip
        finally:
            store.close()
    engine.decision = outcome.decision
    return engine


def engine(spec: AnalysisSpec, model: TrafficModel, seed: int) -> tuple[str, int]:
    result = run_engine(spec, model, seed)
    return result.decision, len(result.looks)


def replay(spec: AnalysisSpec, model: TrafficModel, seed: int) -> tuple[str, int]:
    source = SimulatedSource(model, _schedule, seed=seed)
    window = Window(start=START, end=START + STEP * HORIZON, step=STEP)
    observations = fetch_observations(plan_analysis(spec), source, window)
    codes = judges.metric_codes(spec, observations.series, observations.prerun)
    d = judges.replay_steps(codes[:, None, :], spec)
    return judges.Decision(int(d.decision[0])).name.lower(), int(d.look[0])


@pytest.mark.parametrize("scenario", sorted(MODELS))
def test_replay_takes_the_engines_decision_at_the_same_look(scenario: str) -> None:
    spec = benchmark_analysis()
    assert replay(spec, MODELS[scenario], 1) == engine(spec, MODELS[scenario], 1)


@pytest.mark.parametrize("scenario", ["healthy", "errors-2%", "latency-x1.5", "onset", "overdispersed"])
def test_every_looks_metric_statuses_are_the_engines_over_many_seeds(scenario: str) -> None:
    """Not only the decision: at every look of the canary loop, each metric's status is the replay's."""
    spec = benchmark_analysis()
    for seed in range(1, 5):
        result = run_engine(spec, MODELS[scenario], seed)
        window = Window(start=START, end=START + STEP * HORIZON, step=STEP)
        replayed = SimulatedSource(MODELS[scenario], _schedule, seed=seed)
        observations = fetch_observations(plan_analysis(spec), replayed, window)
        codes = judges.metric_codes(spec, observations.series, observations.prerun)
        for look in result.looks:
            engine_statuses = [m.status for m in look.report.metrics]
            replay_statuses = [CODES_TO_STATUS[int(c)] for c in codes[:, look.look - 1]]
            assert engine_statuses == replay_statuses, (scenario, seed, look.look)


def test_replay_matches_the_engine_with_the_default_analysis() -> None:
    from analyzer.demo import default_analysis

    spec = default_analysis()
    for name in ("errors-2%", "latency-x3"):
        assert replay(spec, MODELS[name], 3) == engine(spec, MODELS[name], 3)


def _random_values(rng: np.random.Generator, rows: int, width: int) -> np.ndarray:
    """Per-interval values with many ties and NaNs, like low-traffic error rates."""
    kind = rng.integers(0, 3, size=(rows, 1))
    discrete = rng.choice([0.0, 0.0, 0.0, 0.25, 0.5, 1.0], size=(rows, width))
    smooth = rng.gamma(2.0, 0.01, size=(rows, width))
    values = np.where(kind == 0, discrete, np.where(kind == 1, smooth, np.round(smooth, 2)))
    values[rng.random((rows, width)) < 0.15] = np.nan
    return values


def test_vectorised_kayenta_classifier_equals_mann_whitney_compare() -> None:
    rng = np.random.default_rng(7)
    for width in (2, 3, 5, 8, 15):
        x = _random_values(rng, 400, width)
        y = _random_values(rng, 400, width)
        x[:40] = y[:40]  # identical data
        x[40:60] = y[40:60] + 0.05  # clear shifts
        got = judges.kayenta_outcomes(x, y, min_values=MIN_VALUES)
        for row in range(x.shape[0]):
            expected = mann_whitney_compare(x[row], y[row], direction="increase").outcome
            code = {"fail": judges.KAYENTA_FAIL, "pass": judges.KAYENTA_PASS}.get(
                str(expected), judges.KAYENTA_INCONCLUSIVE
            )
            assert got[row] == code, (width, row, x[row], y[row])


def test_vectorised_histogram_quantile_equals_the_engines() -> None:
    rng = np.random.default_rng(3)
    counts = rng.poisson(rng.choice([0.0, 0.3, 3.0, 50.0], size=(500, 1)), size=(500, len(BOUNDS)))
    counts[:50] = 0
    counts[50:60, :-1] = 0  # everything in the +Inf bucket
    got = judges.histogram_quantiles(0.99, counts.astype(np.float64))
    for row in range(counts.shape[0]):
        expected = quantile(0.99, BOUNDS, counts[row].astype(np.float64))
        assert (np.isnan(expected) and np.isnan(got[row])) or got[row] == pytest.approx(expected)

"""Scenarios and a vectorised traffic generator: thousands of canaries as numpy arrays at once.

The draws follow `metrics.simulated.SimulatedSource` (Poisson requests per interval, binomial
errors, log-normal latency binned into Istio's default buckets by a multinomial draw), but for a
whole batch of runs in a few numpy calls instead of one generator per interval.

Timeline (the same for every judge): 30 s intervals, the default steps 5 → 10 → 50 % canary
weight with `LOOKS_PER_STEP` intervals each, then `EXTRA_LOOKS` more intervals at 50 %: `HORIZON`
intervals (35 minutes) are drawn per run and every judge may look at all of them, each on its own
schedule; a judge that stops earlier simply ignores the rest (nothing after a decision can change
it).

Before the canary starts, every run also has `PRE_WINDOW_MINUTES` of the baseline's traffic (the
whole service, at the load of the canary's start): a pre-run window a judge may use to fix its
thresholds before the run.

Traffic: `rpm` is the canary's requests per minute **at the 10 % step**, so the service as a
whole serves 10 × rpm; the canary gets 5 %, 10 % and 50 % of it at the three steps and the
baseline (the stable version) the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from metrics.simulated import ISTIO_BUCKETS_SECONDS, lognormal_bucket_probabilities

FloatArray = npt.NDArray[np.float64]

INTERVAL_SECONDS = 30.0
STEPS = (5, 10, 50)
LOOKS_PER_STEP = 10
EXTRA_LOOKS = 40
ANALYSED_LOOKS = LOOKS_PER_STEP * len(STEPS)  # end of the last analysed step
HORIZON = ANALYSED_LOOKS + EXTRA_LOOKS
PRE_WINDOW_MINUTES = 60  # the baseline's traffic before the canary starts (Batch.baseline_pre_*)
BOUNDS: FloatArray = np.asarray(ISTIO_BUCKETS_SECONDS, dtype=np.float64)
SLOW_SECONDS = 0.5  # "bad" latency: slower than the 500 ms SLO threshold
BASELINE_ERROR_RATE = 0.005
LATENCY_MEDIAN = 0.08
LATENCY_SIGMA = 0.5
TOLERANCE, MARGIN = 0.5, 0.001  # Verdict's default comparison allowance
TWICE_TOLERANCE_ERROR_RATE = BASELINE_ERROR_RATE * (1 + 2 * TOLERANCE) + MARGIN  # 1.1 %
CANARY_PODS, BASELINE_PODS = 3, 10
# the shared incident under the rollback trigger: over specs.py's error-rate SLO (1 %), under its
# default trigger (max(1 %, 2 × SLO) = 2 %)
UNDER_TRIGGER_INCIDENT_RATE = 0.015
DAY_MINUTES = 24 * 60.0


@dataclass(frozen=True)
class Scenario:
    """One kind of canary. Rates are fractions; `onset` is the 0-based interval the regression
    starts in (0: from the start)."""

    name: str
    null: bool
    description: str
    metric: str = "error"  # what "bad requests" means here: "error" (5xx) or "latency" (> 500 ms)
    canary_error_rate: float = BASELINE_ERROR_RATE
    latency_factor: float = 1.0
    tail_fraction: float = 0.0
    tail_factor: float = 3.0
    onset: int = 0
    load_ramp: tuple[float, float] | None = None  # service traffic multiplier, start → end
    daily_amplitude: float = 0.0  # ± fraction, 24 h period, random phase per run
    errors_follow_load: bool = False  # error rate ∝ load, for both versions
    pod_sigma: float = 0.0  # log-normal sd of per-pod (fixed) and per-pod-interval error noise
    beyond_tolerance: bool = False  # Verdict's comparison is meant to fail it
    must_not_promote: bool = False  # promoting it is a false promote (reported as a target)
    # an error-rate incident in BOTH versions: (start minute, end minute, the baseline's error
    # rate during it); the canary keeps its multiple of the baseline's rate (a shared cause, e.g. a
    # failing dependency), minutes from the canary's start, the end excluded
    incident: tuple[float, float, float] | None = None


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("aa-constant", True, "A/A, constant traffic, 0.5 % errors in both versions"),
    Scenario(
        "aa-ramp",
        True,
        "A/A, service traffic ramps ×0.5 → ×1.5 over the canary (e.g. morning ramp-up)",
        load_ramp=(0.5, 1.5),
    ),
    Scenario(
        "aa-daily-cycle",
        True,
        "A/A, traffic ±50 % over 24 h (random phase) and the error rate rises with load, "
        "for both versions",
        daily_amplitude=0.5,
        errors_follow_load=True,
    ),
    Scenario(
        "aa-overdispersed",
        True,
        "A/A with per-pod overdispersion: 3 canary and 10 baseline pods, each pod's error rate "
        "× LogNormal(σ=0.3) for the run and × LogNormal(σ=0.3) per interval (CV ≈ 30 % each)",
        pod_sigma=0.3,
    ),
    Scenario(
        "tolerance-boundary",
        True,
        "canary error rate exactly at baseline × 1.5 + 0.1 pp = 0.85 % (the most the compare "
        "check allows)",
        canary_error_rate=BASELINE_ERROR_RATE * (1 + TOLERANCE) + MARGIN,
    ),
    Scenario(
        "errors-0.75%",
        False,
        "canary errors 0.5 % → 0.75 % (inside Verdict's tolerance: 0.85 %)",
        canary_error_rate=0.0075,
    ),
    Scenario("errors-1%", False, "canary errors 0.5 % → 1 %", canary_error_rate=0.01,
             beyond_tolerance=True),
    Scenario("errors-2%", False, "canary errors 0.5 % → 2 %", canary_error_rate=0.02,
             beyond_tolerance=True),
    Scenario("errors-5%", False, "canary errors 0.5 % → 5 %", canary_error_rate=0.05,
             beyond_tolerance=True),
    Scenario(
        "latency-x1.1",
        False,
        "every canary request 1.1× slower (p99 256 → 282 ms)",
        metric="latency",
        latency_factor=1.1,
    ),
    Scenario(
        "latency-x1.5",
        False,
        "every canary request 1.5× slower (p99 256 → 384 ms)",
        metric="latency",
        latency_factor=1.5,
        beyond_tolerance=True,
    ),
    Scenario(
        "latency-tail",
        False,
        "tail-only: 2 % of canary requests 3× slower (p99 256 → ~305 ms; must not be promoted)",
        metric="latency",
        tail_fraction=0.02,
        beyond_tolerance=True,
        must_not_promote=True,
    ),
    Scenario(
        "errors-2%-mid-canary",
        False,
        "canary errors 0.5 % → 2 % from minute 7.5 on (mid 10 % step); times from the onset",
        canary_error_rate=0.02,
        onset=15,
        beyond_tolerance=True,
    ),
    # added later: appended, so that the seeds of the scenarios above (by index) stay the same
    Scenario(
        "aa-shared-incident",
        True,
        "A/A with an incident in both versions: 5 % errors in minutes 15–20 (just after the "
        "last step's 10 looks, at 50 %), beyond the 2 % rollback trigger: an abort is 'roll back "
        "first' by design, not a false abort (the comparison alone must not abort)",
        incident=(15.0, 20.0, 0.05),
    ),
    Scenario(
        "errors-2x-tolerance",
        False,
        "canary errors at twice Verdict's tolerance: baseline × (1 + 2 × 0.5) + 0.1 pp = 1.1 % "
        "(must not be promoted)",
        canary_error_rate=TWICE_TOLERANCE_ERROR_RATE,
        beyond_tolerance=True,
        must_not_promote=True,
    ),
    Scenario(
        "shared-incident",
        False,
        "canary errors 2.2 × the baseline's (1.1 %), and an incident in BOTH versions in minutes "
        "1–9: the baseline at 2 % errors, the canary still 2.2 × (must not be promoted)",
        canary_error_rate=2.2 * BASELINE_ERROR_RATE,
        incident=(1.0, 9.0, 0.02),
        beyond_tolerance=True,
        must_not_promote=True,
    ),
    Scenario(
        "latency-2x-tolerance",
        False,
        "every canary request 1.16× slower: the share slower than 250 ms at about twice "
        "Verdict's tolerance (must not be promoted)",
        metric="latency",
        latency_factor=1.16,
        beyond_tolerance=True,
        must_not_promote=True,
    ),
    # appended after the four above: the seeds of every scenario above stay the same
    Scenario(
        "aa-shared-incident-under-trigger",
        True,
        "A/A with an incident in both versions at 1.5 % errors in minutes 5–35 (a long one: a "
        "five-minute blip never shows the canary beyond its SLO): over the 1 % SLO (a promotion "
        "criterion), under the 2 % rollback trigger: Verdict must hold it (paused), not abort it",
        incident=(5.0, 35.0, UNDER_TRIGGER_INCIDENT_RATE),
    ),
)

SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}
TRAFFIC_RPM: tuple[int, ...] = (10, 100, 1000)


@dataclass(frozen=True)
class Batch:
    """Per-interval counts of `runs` canaries: arrays of shape (runs, HORIZON[, buckets]), and the
    baseline's totals over the `PRE_WINDOW_MINUTES` before the canary: shape (runs[, buckets])."""

    canary_total: FloatArray
    canary_bad: FloatArray
    baseline_total: FloatArray
    baseline_bad: FloatArray
    canary_buckets: FloatArray
    baseline_buckets: FloatArray
    canary_harm: FloatArray  # bad requests the canary served per interval (5xx or > 500 ms)
    canary_expected_harm: FloatArray  # the same at the baseline's behaviour (expected value)
    baseline_pre_total: FloatArray  # requests the baseline served in the pre-run window
    baseline_pre_bad: FloatArray  # of which errors (5xx)
    baseline_pre_buckets: FloatArray  # of which per latency bucket (Istio's, not cumulative)

    @property
    def runs(self) -> int:
        return int(self.canary_total.shape[0])


def weights() -> FloatArray:
    """Canary weight (fraction) in each interval of the horizon."""
    w = np.full(HORIZON, STEPS[-1] / 100.0)
    for i, step in enumerate(STEPS):
        w[i * LOOKS_PER_STEP : (i + 1) * LOOKS_PER_STEP] = step / 100.0
    return w


def bucket_probabilities(factor: float = 1.0, tail: float = 0.0, tail_factor: float = 3.0) -> FloatArray:
    """Chance of each Istio bucket for log-normal latency (the law of metrics.simulated)."""
    median = LATENCY_MEDIAN * factor
    p = lognormal_bucket_probabilities(BOUNDS, median, LATENCY_SIGMA)
    if tail > 0:
        p = (1 - tail) * p + tail * lognormal_bucket_probabilities(BOUNDS, median * tail_factor, LATENCY_SIGMA)
    return p


def _slow_share(p: FloatArray) -> float:
    return float(p[BOUNDS > SLOW_SECONDS].sum())


def generate(scenario: Scenario, rpm: float, runs: int, rng: np.random.Generator) -> Batch:
    """Draw `runs` canaries of `scenario` at `rpm` canary requests per minute (at 10 %).

    The pre-run window is drawn after everything else, so the canary-time draws of a scenario
    are the same whatever is added to the pre-run window."""
    shape = (runs, HORIZON)
    w = weights()[None, :]
    minutes = (np.arange(HORIZON) + 0.5) * INTERVAL_SECONDS / 60.0
    load = np.ones(shape)
    load_start = np.ones((runs, 1))  # the service's load when the canary starts (minute 0)
    if scenario.load_ramp is not None:
        a, b = scenario.load_ramp
        load = load * (a + (b - a) * minutes / minutes[-1])[None, :]
        load_start = load_start * a
    if scenario.daily_amplitude > 0:
        phase = rng.uniform(0, 2 * math.pi, size=(runs, 1))
        load = load * (1 + scenario.daily_amplitude * np.sin(2 * math.pi * minutes / DAY_MINUTES + phase))
        load_start = load_start * (1 + scenario.daily_amplitude * np.sin(phase))
    per_interval = 10.0 * rpm * INTERVAL_SECONDS / 60.0  # whole service, requests per interval
    mean_c = per_interval * w * load
    mean_b = per_interval * (1 - w) * load
    regressed = np.broadcast_to(np.arange(HORIZON)[None, :] >= scenario.onset, shape)
    p_b = np.full(shape, BASELINE_ERROR_RATE)
    if scenario.errors_follow_load:
        p_b = p_b * load
    p_c = np.where(regressed, scenario.canary_error_rate * (p_b / BASELINE_ERROR_RATE), p_b)
    if scenario.incident is not None:
        start, end, during = scenario.incident
        start_minutes = np.arange(HORIZON) * INTERVAL_SECONDS / 60.0
        hit = ((start_minutes >= start) & (start_minutes < end))[None, :]
        p_c = np.where(hit, p_c * during / p_b, p_c)
        p_b = np.where(hit, during, p_b)

    b_fixed: FloatArray | None = None
    if scenario.pod_sigma > 0:
        c_total, c_bad, _ = _pods(rng, mean_c, p_c, CANARY_PODS, scenario.pod_sigma)
        b_total, b_bad, b_fixed = _pods(rng, mean_b, p_b, BASELINE_PODS, scenario.pod_sigma)
    else:
        c_total = rng.poisson(mean_c).astype(np.float64)
        b_total = rng.poisson(mean_b).astype(np.float64)
        c_bad = rng.binomial(c_total.astype(np.int64), np.clip(p_c, 0, 1)).astype(np.float64)
        b_bad = rng.binomial(b_total.astype(np.int64), np.clip(p_b, 0, 1)).astype(np.float64)

    p_base = bucket_probabilities()
    p_reg = bucket_probabilities(scenario.latency_factor, scenario.tail_fraction, scenario.tail_factor)
    b_buckets = rng.multinomial(b_total.astype(np.int64), p_base).astype(np.float64)
    pvals = np.where(regressed[..., None], p_reg[None, None, :], p_base[None, None, :])
    c_buckets = rng.multinomial(c_total.astype(np.int64), pvals).astype(np.float64)

    if scenario.metric == "latency":
        slow = BOUNDS > SLOW_SECONDS
        harm = c_buckets[..., slow].sum(axis=-1)
        expected = c_total * _slow_share(p_base)
    else:
        harm = c_bad
        expected = c_total * p_b

    # the pre-run window: the whole service on the baseline, at the start's load and error rate
    p_pre = BASELINE_ERROR_RATE * (load_start if scenario.errors_follow_load else np.ones((runs, 1)))
    pre_intervals = int(PRE_WINDOW_MINUTES * 60 / INTERVAL_SECONDS)
    mean_pre = np.broadcast_to(per_interval * load_start, (runs, pre_intervals))
    if scenario.pod_sigma > 0:
        assert b_fixed is not None
        pre_total, pre_bad, _ = _pods(
            rng, mean_pre, np.broadcast_to(p_pre, (runs, pre_intervals)), BASELINE_PODS,
            scenario.pod_sigma, fixed=b_fixed,
        )
        pre_total, pre_bad = pre_total.sum(axis=1), pre_bad.sum(axis=1)
    else:
        pre_total = rng.poisson(mean_pre.sum(axis=1)).astype(np.float64)
        pre_bad = rng.binomial(pre_total.astype(np.int64), np.clip(p_pre[:, 0], 0, 1)).astype(np.float64)
    pre_buckets = rng.multinomial(pre_total.astype(np.int64), p_base).astype(np.float64)
    return Batch(
        c_total, c_bad, b_total, b_bad, c_buckets, b_buckets, harm, expected,
        pre_total, pre_bad, pre_buckets,
    )


def _pods(
    rng: np.random.Generator,
    mean: FloatArray,
    p: FloatArray,
    pods: int,
    sigma: float,
    *,
    fixed: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Requests split evenly over `pods`; each pod's error rate is p × a fixed per-pod factor ×
    a per-interval factor, both log-normal with mean 1 and log-sd `sigma`. Returns the totals,
    the errors and the fixed factors (drawn here unless given: the same pods over time)."""
    runs, horizon = mean.shape
    mu = -0.5 * sigma**2
    if fixed is None:
        fixed = rng.lognormal(mu, sigma, size=(runs, 1, pods))
    noise = rng.lognormal(mu, sigma, size=(runs, horizon, pods))
    n = rng.poisson(np.broadcast_to(mean[..., None] / pods, (runs, horizon, pods)))
    bad = rng.binomial(n, np.clip(p[..., None] * fixed * noise, 0.0, 1.0))
    return n.sum(axis=-1).astype(np.float64), bad.sum(axis=-1).astype(np.float64), fixed

"""Whole-analysis properties over many simulated canaries (fixed seeds, stated tolerances).

Canaries follow the product's ramp (5 % → 10 % → 50 % of a service's traffic, 20 looks each) with
a 60-minute pre-run baseline window. Decisions come from the production entry point
(`judge_observations`) or its vectorised rules (`analyzer.looks`), and are checked against:

* the error budgets: false aborts ≤ alpha, false promotes ≤ beta at the boundaries;
* an independent reference written from the documented formulas and split (`tests/
  reference_eprocess.py`: continuous mixture, 60/40 alpha split, 0.3/0.7 weights): at a small
  effect, where a 2x change of alpha or of the evidence moves many decisions, the engine must take
  the reference's decision in nearly every run.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from analyzer.analysis import Observations, judge_observations
from analyzer.looks import PASS, ratio_looks
from analyzer.spec import AnalysisSpec, parse_analysis, plan_analysis, plan_metric
from analyzer.verdicts import Verdict
from metrics.source import HistogramSeries, RatioSeries, Window
from tests.helpers import example_analysis
from tests.reference_eprocess import log_e_values_per_look

pytestmark = pytest.mark.statistical

LOOKS = 60
SHARE = np.repeat([0.05, 0.10, 0.50], LOOKS // 3)
START = datetime(2026, 11, 26, 10, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(seconds=30 * LOOKS), timedelta(seconds=30))


def error_analysis(**compare: float) -> AnalysisSpec:
    data = example_analysis()
    metric = {
        "name": "error-rate",
        "template": "istio-error-rate",
        "slo": {"max": 0.02},
        "compare": {"tolerance": 0.5, "margin": 0.001, **compare},
        "critical": True,
    }
    return parse_analysis(dict(data, metrics=[metric]))


def draw(rng: np.random.Generator, rpm: float, base: float, canary: float) -> dict[str, np.ndarray]:
    service = 10 * rpm / 2  # requests per 30 s interval, both versions
    n = rng.poisson(service * SHARE).astype(float)
    m = rng.poisson(service * (1 - SHARE)).astype(float)
    pre_m = float(rng.poisson(service * 120))
    return {
        "n": n,
        "m": m,
        "c": rng.binomial(n.astype(int), canary).astype(float),
        "b": rng.binomial(m.astype(int), base).astype(float),
        "pre_m": np.array(pre_m),
        "pre_b": np.array(float(rng.binomial(int(pre_m), base))),
    }


def observations(spec: AnalysisSpec, d: dict[str, np.ndarray]) -> Observations:
    name = spec.metrics[0].name
    return Observations(
        window=WINDOW,
        series={name: (RatioSeries(d["c"], d["n"]), RatioSeries(d["b"], d["m"]))},
        prerun={name: RatioSeries(np.array([float(d["pre_b"])]), np.array([float(d["pre_m"])]))},
    )


def reference_fails(d: dict[str, np.ndarray], alpha: float, slo: float) -> bool:
    """The documented rule, written independently: one critical metric gets all of alpha; its
    FAIL e-value is 0.1·E_trigger + 0.9·E_compare, the rollback trigger the default for an SLO
    (the larger of 1 % and twice the SLO; the SLO itself only holds), the comparison's null
    r = 1.5 + 0.001 / p̄."""
    p_bar = float(d["pre_b"] / d["pre_m"])
    assert d["pre_b"] >= 30
    r0 = 1.5 + 0.001 / p_bar
    trigger = max(0.01, 2 * slo)
    e_slo = log_e_values_per_look(d["c"], d["n"], math.log(trigger / (1 - trigger)), upward=True)
    share = d["n"] / (d["n"] + d["m"])
    o = np.log(share / (1 - share)) + math.log(r0)
    e_cmp = log_e_values_per_look(d["c"], d["c"] + d["b"], o, upward=True)
    mean = np.log(0.1 * np.exp(e_slo) + 0.9 * np.exp(e_cmp))
    return bool((mean >= math.log(1 / alpha)).any())


def test_aa_false_abort_rate_of_the_default_analysis_is_at_most_alpha() -> None:
    spec = error_analysis()
    rng = np.random.default_rng(21)
    runs = 600
    aborted = 0
    for _ in range(runs):
        d = draw(rng, 200, 0.005, 0.005)
        report = judge_observations(plan_analysis(spec), observations(spec, d))
        aborted += report.verdict is Verdict.FAIL
    assert aborted / runs <= spec.alpha + 3 * math.sqrt(spec.alpha * (1 - spec.alpha) / runs)


def test_decisions_at_a_small_effect_are_the_documented_rules_decisions() -> None:
    # 0.5 % → 1.1 % errors (2x the tolerance): about half the canaries are caught within 30 min
    spec = error_analysis()
    rng = np.random.default_rng(22)
    runs = 300
    engine, reference = [], []
    for _ in range(runs):
        d = draw(rng, 250, 0.005, 0.011)
        while d["pre_b"] < 30:
            d = draw(rng, 250, 0.005, 0.011)
        engine.append(judge_observations(plan_analysis(spec), observations(spec, d)).verdict is Verdict.FAIL)
        reference.append(reference_fails(d, spec.alpha, 0.02))
    e, r = np.array(engine), np.array(reference)
    assert 0.2 < r.mean() < 0.8  # a small effect: the decision is close in many runs
    assert (e == r).mean() >= 0.97, (e.mean(), r.mean())


@pytest.mark.parametrize("rpm", [100, 1000])
def test_false_promotes_at_the_pass_boundary_are_at_most_beta(rpm: int) -> None:
    # canary exactly at the pass bound: baseline × (1 + 1.5·tol) + margin
    spec = error_analysis()
    m = spec.metrics[0]
    rng = np.random.default_rng(23 + rpm)
    runs = 400
    promoted = 0
    for _ in range(runs):
        d = draw(rng, rpm, 0.005, 0.005 * 1.75 + 0.001)
        codes = ratio_looks(
            plan_metric(m.model_copy(update={"slo": None})), d["c"], d["n"], d["b"], d["m"], d["pre_b"], d["pre_m"],
            alpha=spec.alpha, beta=spec.beta,
        ).codes
        promoted += bool((codes[LOOKS // 2 :] == PASS).any())
    beta = spec.beta
    assert promoted / runs <= beta + 3 * math.sqrt(beta * (1 - beta) / runs)


def test_healthy_canaries_at_moderate_traffic_are_shown_safe() -> None:
    spec = error_analysis()
    rng = np.random.default_rng(24)
    runs = 200
    passed = 0
    for _ in range(runs):
        d = draw(rng, 250, 0.005, 0.005)
        passed += judge_observations(plan_analysis(spec), observations(spec, d)).verdict is Verdict.PASS
    assert passed / runs >= 0.85


def latency_analysis() -> AnalysisSpec:
    metric = {
        "name": "latency-p99",
        "template": "istio-latency",
        "quantile": 0.99,
        "compare": {"tolerance": 0.5, "margin": 0.001},
    }
    return parse_analysis(dict(example_analysis(), metrics=[metric]))


def latency_observations(
    spec: AnalysisSpec, rng: np.random.Generator, rpm: float, factor: float
) -> Observations:
    from metrics.simulated import ISTIO_BUCKETS_SECONDS, lognormal_bucket_probabilities

    bounds = np.asarray(ISTIO_BUCKETS_SECONDS)
    base = lognormal_bucket_probabilities(bounds, 0.08, 0.5)
    slow = lognormal_bucket_probabilities(bounds, 0.08 * factor, 0.5)
    service = 10 * rpm / 2
    n = rng.poisson(service * SHARE)
    m = rng.poisson(service * (1 - SHARE))
    c = np.stack([rng.multinomial(k, slow) for k in n]).astype(float)
    b = np.stack([rng.multinomial(k, base) for k in m]).astype(float)
    pre = rng.multinomial(int(rng.poisson(service * 120)), base).astype(float)[None, :]
    name = spec.metrics[0].name
    return Observations(
        window=WINDOW,
        series={name: (HistogramSeries(bounds, c), HistogramSeries(bounds, b))},
        prerun={name: HistogramSeries(bounds, pre)},
    )


def test_latency_comparison_on_the_production_path_under_aa_and_a_regression() -> None:
    spec = latency_analysis()
    rng = np.random.default_rng(31)
    runs = 300
    aa = sum(
        judge_observations(plan_analysis(spec), latency_observations(spec, rng, 100, 1.0)).verdict is Verdict.FAIL
        for _ in range(runs)
    )
    assert aa / runs <= spec.alpha + 3 * math.sqrt(spec.alpha * (1 - spec.alpha) / runs)
    slower = sum(
        judge_observations(plan_analysis(spec), latency_observations(spec, rng, 100, 1.5)).verdict is Verdict.FAIL
        for _ in range(100)
    )
    assert slower >= 95
    # and the threshold the answer names is the pre-run p99 rounded down to a bucket bound
    report = judge_observations(plan_analysis(spec), latency_observations(spec, rng, 100, 1.0))
    statistic = report.metrics[0].checks[0].statistic
    assert statistic["threshold"] == 0.25 and statistic["thresholdChosenAtLook"] == 0

"""Whole-analysis properties over many simulated canaries (fixed seeds, stated tolerances).

Each canary: 20 looks of one interval each; canary 200 and baseline 1800 requests per interval
(1000 / 9000 for the regressions: detection needs traffic, and the statistics say how much);
the embedded default analysis (error-rate SLO + comparison, critical; p99 SLO 500 ms; success-rate
SLO), judged per look by the engine's own vectorised statuses and verdict rules. A canary is
"aborted" when the analysis verdict is FAIL at any of the 20 looks.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.demo import default_analysis
from analyzer.judge import decide
from analyzer.looks import CODES_TO_STATUS, look_statuses
from analyzer.spec import AnalysisSpec
from analyzer.verdicts import Verdict
from metrics.simulated import ISTIO_BUCKETS_SECONDS, lognormal_bucket_probabilities
from metrics.source import HistogramSeries, MetricKind, RatioSeries

pytestmark = pytest.mark.statistical

LOOKS = 20
CANARY, BASELINE = 200, 1800
BOUNDS = np.asarray(ISTIO_BUCKETS_SECONDS)


def _simulate(
    spec: AnalysisSpec,
    rng: np.random.Generator,
    *,
    error_rate: float,
    canary_error_rate: float,
    canary_latency_factor: float = 1.0,
    canary_requests: int = CANARY,
    baseline_requests: int = BASELINE,
) -> bool:
    """True when the analysis fails at any look."""
    series = {}
    for version, n, p, factor in (
        ("canary", canary_requests, canary_error_rate, canary_latency_factor),
        ("baseline", baseline_requests, error_rate, 1.0),
    ):
        total = rng.poisson(n, LOOKS).astype(float)
        bad = rng.binomial(total.astype(int), p).astype(float)
        probs = lognormal_bucket_probabilities(BOUNDS, 0.08 * factor, 0.5)
        counts = np.stack([rng.multinomial(int(t), probs) for t in total]).astype(float)
        series[version] = (RatioSeries(bad, total), HistogramSeries(BOUNDS, counts))
    alpha = spec.alpha / len(spec.metrics)
    per_metric = []
    for m in spec.metrics:
        index = 0 if m.kind is MetricKind.RATIO else 1
        codes = look_statuses(m, series["canary"][index], series["baseline"][index], alpha)
        assert codes is not None
        per_metric.append(codes)
    critical = [m.critical for m in spec.metrics]
    weights = [m.weight for m in spec.metrics]
    for look in range(LOOKS):
        statuses = [CODES_TO_STATUS[int(c[look])] for c in per_metric]
        if decide(statuses, critical, weights, spec.scoring) is Verdict.FAIL:
            return True
    return False


def test_aa_false_abort_rate_over_20_looks_is_at_most_alpha() -> None:
    # Error rate 0.2 % in both versions (SLO 0.5 %), same latency: no regression at all.
    spec = default_analysis()
    rng = np.random.default_rng(20261126)
    runs = 1000
    aborted = sum(
        _simulate(spec, rng, error_rate=0.002, canary_error_rate=0.002) for _ in range(runs)
    )
    rate = aborted / runs
    se = math.sqrt(spec.alpha * (1 - spec.alpha) / runs)
    tolerance = spec.alpha + 3 * se
    assert rate <= tolerance, (
        f"A/A false-abort rate {rate:.3f} over {LOOKS} looks > {tolerance:.3f}"
    )
    print(
        f"A/A false-abort rate over {LOOKS} looks: {rate:.4f} ({runs} canaries; alpha {spec.alpha})"
    )


def test_4x_error_regression_is_caught_within_20_looks() -> None:
    spec = default_analysis()
    rng = np.random.default_rng(7)
    runs = 300
    caught = sum(
        _simulate(
            spec,
            rng,
            error_rate=0.002,
            canary_error_rate=0.008,
            canary_requests=1000,
            baseline_requests=9000,
        )
        for _ in range(runs)
    )
    rate = caught / runs
    assert rate >= 0.9, f"4x error-rate regression caught in {rate:.3f} of canaries (< 0.90)"
    print(
        f"4x error-rate regression (0.2 % -> 0.8 %, 1000 canary requests/look) caught: {rate:.3f}"
    )


def test_2x_latency_regression_is_caught_within_20_looks() -> None:
    # median 80 ms -> 160 ms: p99 goes from ~255 ms to ~510 ms, just past the 500 ms SLO;
    # 2.5x puts it clearly past (p99 ~640 ms).
    spec = default_analysis()
    rng = np.random.default_rng(11)
    runs = 300
    caught = sum(
        _simulate(spec, rng, error_rate=0.002, canary_error_rate=0.002, canary_latency_factor=2.5)
        for _ in range(runs)
    )
    rate = caught / runs
    assert rate >= 0.9, f"2.5x latency regression caught in {rate:.3f} of canaries (< 0.90)"
    print(f"2.5x latency regression (p99 ~255 ms -> ~640 ms, SLO 500 ms) caught: {rate:.3f}")

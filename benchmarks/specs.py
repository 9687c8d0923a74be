"""The analysis Verdict judges the benchmark canaries with.

It is the embedded default analysis (`analyzer.demo.default_analysis`, analyzer/examples/checkout.yaml)
with three changes, so that no SLO sits exactly on the benchmark's null (baseline errors 0.5 %):

* error-rate: SLO max 1 % instead of 0.5 % (the default's 0.5 % is the benchmark's baseline
  rate itself); the comparison stays the product default (tolerance 0.5, margin 0.001), critical;
* latency-p99: SLO max 500 ms as in the default, plus the default comparison (tolerance 0.5,
  margin 0.001), so that latency regressions below the SLO can be seen at all;
* success-rate is left out: on the same counters it is the complement of error-rate, and with its
  SLO moved off the null (min 99 %) it would only repeat the error-rate SLO check while splitting
  alpha three ways instead of two.

Each SLO is a promotion criterion (`slo: {max}`): the canary must be shown within it to pass, and
a breach alone holds the metric (inconclusive, `held`; `shared_incident` when the baseline breaches
it too), never fails it. The file names no rollback trigger (`abortAbove`), so each SLO gets the
default one, which fails at once when the canary is shown beyond it: max(1 %, 2 × SLO) = **2 %**
errors for error-rate, max(1 s, 2 × SLO) = **1 s** for latency-p99.

alpha 0.05, 30 s interval, steps 5 → 10 → 50 → 100 and the `all` scoring mode are the defaults.
"""

from __future__ import annotations

from typing import Any

from analyzer.spec import AnalysisSpec, parse_analysis

BENCHMARK_ANALYSIS: dict[str, Any] = {
    "name": "benchmark",
    "canary": {"destination_service_name": "bench-canary"},
    "baseline": {"destination_service_name": "bench-stable"},
    "interval": "30s",
    "alpha": 0.05,
    "metrics": [
        {
            "name": "error-rate",
            "template": "istio-error-rate",
            "slo": {"max": 0.01},
            "compare": {"direction": "increase", "tolerance": 0.5, "margin": 0.001},
            "critical": True,
        },
        {
            "name": "latency-p99",
            "template": "istio-latency",
            "quantile": 0.99,
            "slo": {"max": "500ms"},
            "compare": {"direction": "increase", "tolerance": 0.5, "margin": 0.001},
        },
    ],
}


def benchmark_analysis() -> AnalysisSpec:
    return parse_analysis(BENCHMARK_ANALYSIS, "benchmarks/specs.py")

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

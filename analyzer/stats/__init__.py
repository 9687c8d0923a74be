"""Pure statistics: always-valid (sequential) checks and a fixed-horizon Mann-Whitney mode.

Nothing here does I/O, logging or configuration: numbers and numpy arrays in, frozen dataclasses out.
"""

from analyzer.stats.confidence import RateBounds, rate_bounds
from analyzer.stats.histogram import (
    Exceedance,
    comparison_bucket_bound,
    exceedance,
    quantile,
    quantile_bucket_bound,
)
from analyzer.stats.mann_whitney import MannWhitneyResult, mann_whitney_compare
from analyzer.stats.outcome import Outcome
from analyzer.stats.ratio import (
    ComparisonResult,
    GateResult,
    compare_rates,
    requests_needed_below,
    slo_gate,
)

__all__ = [
    "ComparisonResult",
    "Exceedance",
    "GateResult",
    "MannWhitneyResult",
    "Outcome",
    "RateBounds",
    "compare_rates",
    "comparison_bucket_bound",
    "exceedance",
    "mann_whitney_compare",
    "quantile",
    "quantile_bucket_bound",
    "rate_bounds",
    "requests_needed_below",
    "slo_gate",
]

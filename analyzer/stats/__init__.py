"""Pure statistics: always-valid (sequential) checks and a fixed-horizon Mann-Whitney mode.

Nothing here does I/O, logging or configuration: numbers and numpy arrays in, frozen dataclasses out.
"""

from analyzer.stats.confidence import RateBounds, rate_bounds
from analyzer.stats.eprocess import EProcess, binomial_e_process
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
    AllowedRatios,
    Evidence,
    allowed_ratios,
    comparison_evidence,
    rate_ratio,
    slo_evidence,
)

__all__ = [
    "AllowedRatios",
    "EProcess",
    "Evidence",
    "Exceedance",
    "MannWhitneyResult",
    "Outcome",
    "RateBounds",
    "allowed_ratios",
    "binomial_e_process",
    "comparison_bucket_bound",
    "comparison_evidence",
    "exceedance",
    "mann_whitney_compare",
    "quantile",
    "quantile_bucket_bound",
    "rate_bounds",
    "rate_ratio",
    "slo_evidence",
]

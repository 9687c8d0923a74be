"""Always-valid checks on rates: an SLO gate and a canary-vs-baseline comparison.

Both work on bad/total request counts accumulated since the start of the analysis and use the
confidence sequences of `confidence.py`, so each may be repeated at every look without raising
its error rates (Howard et al. 2021; the running validity is what makes repeated looks safe).

* SLO gate (absolute bound `max_rate`): FAIL when the canary's lower bound is above `max_rate`
  (shown worse), PASS when its upper bound is at or below it (shown within), else INCONCLUSIVE.
  The canary's sequence gets all of `alpha`: false fail <= alpha and false pass <= alpha.

* Comparison: the canary may have a rate up to  baseline * (1 + tolerance) + margin.
  With always-valid bounds [Lc, Uc] for the canary and [Lb, Ub] for the baseline, each at
  alpha / 2,
      FAIL  when  Lc > Ub * (1 + tolerance) + margin   (canary shown outside the allowance)
      PASS  when  Uc <= Lb * (1 + tolerance) + margin  (canary shown inside it)
  By the union bound over the two sequences, a canary within the allowance fails with probability
  <= alpha over all looks, and one outside it passes with probability <= alpha.
  Per-arm sequences keep the check exact at few events and let the margin be absolute; with the
  usual traffic split (baseline >> canary) the baseline's interval is narrow and the loss of power
  against a joint test is small.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from analyzer.stats.confidence import rate_bounds
from analyzer.stats.outcome import Outcome

_MAX_REQUESTS = 1e10


@dataclass(frozen=True)
class GateResult:
    outcome: Outcome
    rate: float
    lower: float
    upper: float
    max_rate: float
    bad: float
    total: float
    alpha: float
    more_requests_needed: int | None  # None: more requests would not help at the current rate


@dataclass(frozen=True)
class ComparisonResult:
    outcome: Outcome
    canary_rate: float
    canary_lower: float
    canary_upper: float
    baseline_rate: float
    baseline_lower: float
    baseline_upper: float
    allowed_rate: float  # baseline estimate * (1 + tolerance) + margin, for display
    fail_threshold: float  # Ub * (1 + tolerance) + margin: the canary lower bound must exceed it
    pass_threshold: (
        float  # Lb * (1 + tolerance) + margin: the canary upper bound must not exceed it
    )
    tolerance: float
    margin: float
    canary_bad: float
    canary_total: float
    baseline_bad: float
    baseline_total: float
    alpha: float
    more_requests_needed: int | None


def slo_gate(
    bad: float, total: float, max_rate: float, alpha: float, *, bad_at_most: float | None = None
) -> GateResult:
    """Always-valid test of `rate <= max_rate` on cumulative counts (see module docstring).

    `bad_at_most` is for counts known only within a range (a latency threshold between two bucket
    bounds): the lower bound is then computed from `bad` (certainly bad) and the upper bound from
    `bad_at_most` (possibly bad), which keeps both FAIL and PASS conservative.
    """
    if not 0.0 <= max_rate <= 1.0:
        raise ValueError("max_rate must lie in [0, 1]")
    b = rate_bounds(bad, total, alpha)
    lower, upper, rate = float(b.lower[0]), float(b.upper[0]), float(b.rate[0])
    if bad_at_most is not None and bad_at_most > bad:
        possible = rate_bounds(bad_at_most, total, alpha)
        upper, rate = float(possible.upper[0]), float(possible.rate[0])
    if lower > max_rate:
        outcome = Outcome.FAIL
    elif upper <= max_rate:
        outcome = Outcome.PASS
    else:
        outcome = Outcome.INCONCLUSIVE
    needed = None
    if outcome is Outcome.INCONCLUSIVE:
        needed = requests_needed_below(rate, total, max_rate, alpha)
    return GateResult(
        outcome=outcome,
        rate=rate,
        lower=lower,
        upper=upper,
        max_rate=max_rate,
        bad=float(bad),
        total=float(total),
        alpha=alpha,
        more_requests_needed=needed,
    )


def compare_rates(
    canary_bad: float,
    canary_total: float,
    baseline_bad: float,
    baseline_total: float,
    *,
    tolerance: float,
    margin: float,
    alpha: float,
) -> ComparisonResult:
    """Always-valid test of `canary rate <= baseline rate * (1 + tolerance) + margin`."""
    if tolerance < 0 or margin < 0:
        raise ValueError("tolerance and margin must not be negative")
    c = rate_bounds(canary_bad, canary_total, alpha / 2)
    b = rate_bounds(baseline_bad, baseline_total, alpha / 2)
    factor = 1.0 + tolerance
    fail_threshold = float(b.upper[0]) * factor + margin
    pass_threshold = float(b.lower[0]) * factor + margin
    c_lower, c_upper = float(c.lower[0]), float(c.upper[0])
    if baseline_total <= 0:
        outcome = Outcome.INCONCLUSIVE
    elif c_lower > fail_threshold:
        outcome = Outcome.FAIL
    elif c_upper <= pass_threshold:
        outcome = Outcome.PASS
    else:
        outcome = Outcome.INCONCLUSIVE
    needed = None
    if outcome is Outcome.INCONCLUSIVE and baseline_total > 0:
        needed = comparison_requests_needed(
            float(c.rate[0]),
            canary_total,
            float(b.rate[0]),
            baseline_total,
            tolerance=tolerance,
            margin=margin,
            alpha=alpha,
        )
    return ComparisonResult(
        outcome=outcome,
        canary_rate=float(c.rate[0]),
        canary_lower=c_lower,
        canary_upper=c_upper,
        baseline_rate=float(b.rate[0]),
        baseline_lower=float(b.lower[0]),
        baseline_upper=float(b.upper[0]),
        allowed_rate=float(b.rate[0]) * factor + margin,
        fail_threshold=fail_threshold,
        pass_threshold=pass_threshold,
        tolerance=tolerance,
        margin=margin,
        canary_bad=float(canary_bad),
        canary_total=float(canary_total),
        baseline_bad=float(baseline_bad),
        baseline_total=float(baseline_total),
        alpha=alpha,
        more_requests_needed=needed,
    )


def requests_needed_below(rate: float, total: float, bound: float, alpha: float) -> int | None:
    """How many more requests, at the current rate, until the upper bound falls to `bound`.

    Returns None when the current rate is not below `bound` (more data at this rate would not
    show it within). Found by doubling then bisection on the request count.
    """
    if rate >= bound or bound <= 0:
        return None
    return _more_requests(
        max(total, 0.0), lambda n: float(rate_bounds(rate * n, n, alpha).upper[0]) <= bound
    )


def comparison_requests_needed(
    canary_rate: float,
    canary_total: float,
    baseline_rate: float,
    baseline_total: float,
    *,
    tolerance: float,
    margin: float,
    alpha: float,
) -> int | None:
    """More canary requests until the comparison would pass, if both rates stay as they are and the
    baseline keeps growing in proportion (its share of traffic unchanged).

    None when the canary's current rate is not inside the allowance (more data would not pass it).
    """
    factor = 1.0 + tolerance
    if canary_rate >= baseline_rate * factor + margin or baseline_total <= 0:
        return None
    if canary_total <= 0:  # no traffic split to extrapolate: hold the baseline as it is
        b = rate_bounds(baseline_rate * baseline_total, baseline_total, alpha / 2)
        return requests_needed_below(
            canary_rate, 0.0, float(b.lower[0]) * factor + margin, alpha / 2
        )
    ratio = baseline_total / canary_total

    def passes(n: float) -> bool:
        c = rate_bounds(canary_rate * n, n, alpha / 2)
        b = rate_bounds(baseline_rate * n * ratio, n * ratio, alpha / 2)
        return float(c.upper[0]) <= float(b.lower[0]) * factor + margin

    return _more_requests(canary_total, passes)


def _more_requests(total: float, passes: Callable[[float], bool]) -> int | None:
    """The fewest more requests after which `passes(total + more)` holds, or None past 1e10.

    `passes` must be monotone in the request count (bounds shrink as counts grow at a fixed
    rate): doubling finds an upper end, then 40 bisection steps.
    """
    lo = max(total, 1.0)
    if passes(lo):
        return 0
    hi = max(total * 2.0, 16.0)
    while not passes(hi):
        hi *= 2.0
        if hi > _MAX_REQUESTS:
            return None
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return int(np.ceil(hi - total))

"""Kayenta-style fixed-horizon judge: Mann-Whitney U with a Hodges-Lehmann shift and its CI.

This is the classifier of Netflix/Google Kayenta's `NetflixACAJudge-v1.0`
(spinnaker/kayenta `kayenta-judge/.../classifiers/metric/MannWhitneyClassifier.scala`, with the
interval of `kayenta-mannwhitney/.../MannWhitney.scala`; reference/peers.md §1.3-1.4), offered as a
selectable mode for users who want Kayenta's behaviour. Inputs are per-interval values, one per
interval (the error rate or the p99 of each interval), not per-request observations.

Rules, in Kayenta's order (NaNs are removed first):

1. either side empty                              -> INCONCLUSIVE ("no data")
2. fewer than `MIN_VALUES` (3) values on a side     -> INCONCLUSIVE
3. identical sorted data, or a single distinct value over both sides -> PASS
4. otherwise, with HL the Hodges-Lehmann shift (canary - baseline) and [lo, hi] its CI at
   `confidence`:
       "High" when lo > +tolerance * |HL|  -> FAIL if direction is "increase" or "either"
       "Low"  when hi < -tolerance * |HL|  -> FAIL if direction is "decrease" or "either"
       anything else                        -> PASS

Formulas:

* Hodges-Lehmann estimate (Hodges & Lehmann, "Estimates of location based on rank tests",
  Ann. Math. Statist. 34, 1963): the median of the n*m pairwise differences
  D_ij = canary_i - baseline_j.
* Confidence interval (Lehmann, "Nonparametric confidence intervals for a shift parameter",
  Ann. Math. Statist. 34, 1963; Hollander & Wolfe, "Nonparametric Statistical Methods", 2nd ed.,
  1999, §4.3, large-sample approximation): with D_(1) <= ... <= D_(nm) the sorted differences,

      C = the integer closest to  n*m/2 - z_{1-(1-confidence)/2} * sqrt(Var U)
      CI = [ D_(C), D_(nm+1-C) ]

  where Var U = n*m*(n+m+1)/12 is the null variance of the Mann-Whitney statistic. It is the set of
  shifts d that a two-sided rank-sum test of "canary - d and baseline have the same distribution"
  does not reject. When C < 1 the requested level cannot be reached with so few values and the
  interval is the full range [D_(1), D_(nm)], as Kayenta's clamped root search gives; its real
  level is then only 1 - 2/binom(n+m, n) (90 % for 3 vs 3, 97.1 % for 4 vs 4 at the default 98 %),
  and the reason says so.
  Tie correction (optional, on by default, as in Kayenta): Var U = n*m/12 * ((N+1) -
  sum(t^3 - t) / (N*(N-1))), N = n+m (Lehmann, "Nonparametrics", 1975, §1.4). Here the tie groups t
  are counted within each side separately: values equal inside one side stay tied at every shift
  d, whereas ties across sides happen only at finitely many d, so this is the variance of the
  shifted test at all but those points.
* p-value: `scipy.stats.mannwhitneyu(canary, baseline, alternative="two-sided")` (exact for small
  samples without ties, otherwise the tie-corrected normal approximation). Reported only; the
  decision uses the interval, as Kayenta does.

Caveat: this mode is fixed-horizon. It never answers INCONCLUSIVE once each side has 3 values
(with little data the interval is wide, and a wide interval means PASS), and each call is a
fixed-sample test, so judging again at every look inflates false failures: over K looks a nominal
5 % test rejects at least once with probability .082 (K = 2), .141 (5), .194 (10), .246 (20)
(Armitage, McPherson & Rowe, "Repeated significance tests on accumulating data", JRSS A 132,
1969; reference/statistics.md §1), and a per-look MWU aborted 28 % of A/A canaries over 60 looks
in our simulation (statistics.md §1, §5). Kayenta itself has this property (statistics.md §4).
Use the always-valid checks of `ratio.py` for repeated looks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzer.stats.outcome import Outcome

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]

MIN_VALUES = 3
DIRECTIONS = ("increase", "decrease", "either")


@dataclass(frozen=True)
class MannWhitneyResult:
    """One Kayenta-style judgment of a metric; NaN fields were not computed (too little data)."""

    outcome: Outcome
    hodges_lehmann: float  # median of canary_i - baseline_j
    ci_lower: float
    ci_upper: float
    p_value: float  # two-sided Mann-Whitney U (scipy), for display
    canary_n: int
    baseline_n: int
    canary_mean: float
    baseline_mean: float
    reason: str


def mann_whitney_compare(
    canary: ArrayLike,
    baseline: ArrayLike,
    *,
    direction: str = "increase",
    confidence: float = 0.98,
    tolerance: float = 0.25,
    tie_correction: bool = True,
) -> MannWhitneyResult:
    """Judge canary against baseline per-interval values with Kayenta's rules (module docstring)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must lie in (0, 1)")
    if not tolerance >= 0.0:
        raise ValueError("tolerance must not be negative")
    x = _clean(canary, "canary")
    y = _clean(baseline, "baseline")
    nan = float("nan")
    n, m = len(x), len(y)
    x_mean = float(np.mean(x)) if n else nan
    y_mean = float(np.mean(y)) if m else nan

    def result(
        outcome: Outcome,
        reason: str,
        hl: float = nan,
        lo: float = nan,
        hi: float = nan,
        p: float = nan,
    ) -> MannWhitneyResult:
        return MannWhitneyResult(
            outcome=outcome,
            hodges_lehmann=hl,
            ci_lower=lo,
            ci_upper=hi,
            p_value=p,
            canary_n=n,
            baseline_n=m,
            canary_mean=x_mean,
            baseline_mean=y_mean,
            reason=reason,
        )

    if n == 0 or m == 0:
        empty = " and ".join(s for s, k in (("canary", n), ("baseline", m)) if k == 0)
        return result(Outcome.INCONCLUSIVE, f"no data: {empty} has no values")
    if n < MIN_VALUES or m < MIN_VALUES:
        return result(
            Outcome.INCONCLUSIVE,
            f"too few values: canary {n}, baseline {m} (need {MIN_VALUES} per side)",
            hl=float(np.median(np.subtract.outer(x, y))),
        )
    if np.unique(np.concatenate([x, y])).size == 1:
        return result(Outcome.PASS, "a single distinct value on both sides", 0.0, 0.0, 0.0, 1.0)

    hl, lo, hi, p, clamped = _shift_statistics(x, y, confidence, tie_correction)
    if n == m and np.array_equal(np.sort(x), np.sort(y)):
        return result(Outcome.PASS, "data are identical", hl, lo, hi, p)
    bound = tolerance * abs(hl)
    span = f"shift {hl:.6g}, {confidence:.0%} CI [{lo:.6g}, {hi:.6g}], bound ±{bound:.6g}"
    if clamped:
        level = 1.0 - 2.0 / math.comb(n + m, n)
        span += f" (too few values for {confidence:.0%}: CI is the full range, level {level:.1%})"
    if lo > bound:
        if direction in ("increase", "either"):
            return result(Outcome.FAIL, f"canary higher (High): {span}", hl, lo, hi, p)
        return result(
            Outcome.PASS, f"canary higher, allowed by direction {direction}: {span}", hl, lo, hi, p
        )
    if hi < -bound:
        if direction in ("decrease", "either"):
            return result(Outcome.FAIL, f"canary lower (Low): {span}", hl, lo, hi, p)
        return result(
            Outcome.PASS, f"canary lower, allowed by direction {direction}: {span}", hl, lo, hi, p
        )
    return result(Outcome.PASS, f"no shift shown: {span}", hl, lo, hi, p)


def _clean(values: ArrayLike, side: str) -> FloatArray:
    a = np.asarray(values, dtype=np.float64).ravel()
    a = a[~np.isnan(a)]
    if np.any(np.isinf(a)):
        raise ValueError(f"{side} values must be finite (NaN is removed as missing)")
    return a


def _shift_statistics(
    x: FloatArray, y: FloatArray, confidence: float, tie_correction: bool
) -> tuple[float, float, float, float, bool]:
    """HL estimate, CI bounds, the scipy two-sided p-value, and whether C was clamped to 1."""
    from scipy import stats  # here, not at the top: scipy.stats takes a second to import

    n, m = len(x), len(y)
    differences = np.sort(np.subtract.outer(x, y).ravel())
    nm = n * m
    variance = nm * (n + m + 1) / 12.0
    if tie_correction:
        big_n = n + m
        ties = _tie_sum(x) + _tie_sum(y)
        variance = nm / 12.0 * ((big_n + 1) - ties / (big_n * (big_n - 1)))
    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    c = int(np.floor(nm / 2.0 - z * np.sqrt(max(variance, 0.0)) + 0.5))
    clamped = c < 1
    c = min(max(c, 1), (nm + 1) // 2)
    lower = float(differences[c - 1])
    upper = float(differences[nm - c])
    hl = float(np.median(differences))
    p = float(stats.mannwhitneyu(x, y, alternative="two-sided").pvalue)
    return hl, lower, upper, p, clamped


def _tie_sum(values: FloatArray) -> float:
    """sum(t^3 - t) over groups of equal values."""
    _, counts = np.unique(values, return_counts=True)
    t = counts.astype(np.float64)
    return float(np.sum(t**3 - t))

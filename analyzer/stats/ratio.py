"""Sequential checks on rates: an SLO gate and a canary-vs-baseline comparison, both one-sided
e-processes on counts (see `eprocess.py`), valid at every look.

* SLO gate (`max_rate`): FAIL evidence against "canary rate ≤ max_rate" (canary bad requests out
  of canary requests); PASS evidence against "canary rate ≥ max_rate". A latency SLO whose
  threshold lies between two bucket bounds knows the slow count only within a range: FAIL uses the
  certain count and PASS the possible count, which keeps both sides conservative.

* Comparison: the canary may have a rate up to  baseline × (1 + tolerance) + margin. The margin is
  turned into a ratio once, before the run, with the baseline's rate p̄ in a window before the
  canary started (`allowed_ratios`):
      r_fail = (1 + tolerance) + margin / p̄          FAIL: shown above it
      r_pass = (1 + promote_tolerance) + margin / p̄  PASS: shown below it
  and tested on each interval's bad requests of both versions (conditional on their sum), so a
  change shared by both versions cannot bias it. With too little pre-run data (fewer than
  `MIN_PRERUN_BAD` bad requests), p̄ is replaced look by look by the baseline's always-valid lower
  bound (for r_fail; upper bound for r_pass) from the data before that interval, at a tenth of the
  check's budget: the null is then higher than the contract's with that probability, and fixed
  before each interval's data are seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzer.stats.confidence import rate_bounds
from analyzer.stats.eprocess import EProcess, binomial_e_process, logit

FloatArray = npt.NDArray[np.float64]
MIN_PRERUN_BAD = 30
MAX_RATIO = 1e6


@dataclass(frozen=True)
class Evidence:
    """FAIL and PASS e-processes of one check (log e-values per look)."""

    fail: EProcess
    passes: EProcess


def slo_evidence(
    bad: npt.ArrayLike,
    total: npt.ArrayLike,
    max_rate: float,
    *,
    bad_at_most: npt.ArrayLike | None = None,
) -> Evidence:
    """Per-interval canary counts → evidence against `rate ≤ max_rate` (fail) and `≥` (pass)."""
    if not 0.0 <= max_rate <= 1.0:
        raise ValueError("max_rate must lie in [0, 1]")
    possible = bad if bad_at_most is None else bad_at_most
    o = logit(max_rate)
    fail = binomial_e_process(bad, total, o, upward=True)
    passes = binomial_e_process(possible, total, o, upward=False)
    return Evidence(fail, passes)


@dataclass(frozen=True)
class AllowedRatios:
    """The comparison's nulls per interval (shape of the counts) and how they were set."""

    fail: FloatArray
    passes: FloatArray
    baseline_rate: FloatArray  # the pre-run baseline rate p̄ (NaN where the fallback is used)
    from_prerun: npt.NDArray[np.bool_]


def allowed_ratios(
    baseline_bad: npt.ArrayLike,
    baseline_total: npt.ArrayLike,
    prerun_bad: npt.ArrayLike,
    prerun_total: npt.ArrayLike,
    *,
    tolerance: float,
    promote_tolerance: float,
    margin: float,
    fallback_alpha: float,
    fallback_beta: float,
) -> AllowedRatios:
    """r_fail and r_pass for every interval (see the module docstring).

    `baseline_*`: per-interval counts (..., intervals); `prerun_*`: one count per run (...).
    """
    if tolerance < 0 or margin < 0 or promote_tolerance < tolerance:
        raise ValueError("need 0 ≤ tolerance ≤ promote_tolerance and margin ≥ 0")
    b_bad = np.asarray(baseline_bad, dtype=np.float64)
    b_total = np.asarray(baseline_total, dtype=np.float64)
    p_bad = np.asarray(prerun_bad, dtype=np.float64)[..., None]
    p_total = np.asarray(prerun_total, dtype=np.float64)[..., None]
    shape = b_bad.shape
    enough = np.broadcast_to((p_bad >= MIN_PRERUN_BAD) & (p_total > 0), shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.broadcast_to(np.where(p_total > 0, p_bad / np.where(p_total > 0, p_total, 1), 0), shape)
    # fallback: everything known before interval i (pre-run counts plus the run's earlier ones)
    before_bad = np.cumsum(b_bad, axis=-1) - b_bad + p_bad
    before_total = np.cumsum(b_total, axis=-1) - b_total + p_total
    lower = rate_bounds(before_bad, before_total, fallback_alpha).lower.reshape(shape)
    upper = rate_bounds(before_bad, before_total, fallback_beta).upper.reshape(shape)
    with np.errstate(divide="ignore"):
        fail_margin = np.where(enough, margin / np.where(rate > 0, rate, 1e-300), margin / np.maximum(lower, 1e-300))
        pass_margin = np.where(enough, margin / np.where(rate > 0, rate, 1e-300), margin / np.maximum(upper, 1e-300))
    fail = np.minimum(1.0 + tolerance + fail_margin, MAX_RATIO)
    passes = np.minimum(1.0 + promote_tolerance + pass_margin, MAX_RATIO)
    return AllowedRatios(
        fail=np.asarray(fail, dtype=np.float64),
        passes=np.asarray(passes, dtype=np.float64),
        baseline_rate=np.asarray(np.where(enough, rate, np.nan), dtype=np.float64),
        from_prerun=np.asarray(enough),
    )


def canary_share(canary_total: npt.ArrayLike, baseline_total: npt.ArrayLike) -> FloatArray:
    """π_i: the canary's share of the interval's requests (0.5 where neither has any)."""
    c = np.asarray(canary_total, dtype=np.float64)
    b = np.asarray(baseline_total, dtype=np.float64)
    both = c + b
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.where(both > 0, c / np.where(both > 0, both, 1.0), 0.5), dtype=np.float64)


def comparison_evidence(
    canary_bad: npt.ArrayLike,
    canary_total: npt.ArrayLike,
    baseline_bad: npt.ArrayLike,
    baseline_total: npt.ArrayLike,
    ratios: AllowedRatios,
) -> Evidence:
    """Per-interval counts of both versions → evidence that the canary/baseline rate ratio is
    above `ratios.fail` (fail) or below `ratios.passes` (pass), conditional on each interval's
    bad requests of both versions."""
    c_bad = np.asarray(canary_bad, dtype=np.float64)
    b_bad = np.asarray(baseline_bad, dtype=np.float64)
    pooled = c_bad + np.clip(b_bad, 0.0, None)
    share = logit(canary_share(canary_total, baseline_total))
    fail = binomial_e_process(c_bad, pooled, share + np.log(ratios.fail), upward=True)
    passes = binomial_e_process(c_bad, pooled, share + np.log(ratios.passes), upward=False)
    return Evidence(fail, passes)


def rate_ratio(
    canary_bad: npt.ArrayLike,
    canary_total: npt.ArrayLike,
    baseline_bad: npt.ArrayLike,
    baseline_total: npt.ArrayLike,
) -> FloatArray:
    """Mantel-Haenszel rate ratio over the intervals so far (cumulative along the last axis):
    Σ c_i·m_i/T_i ÷ Σ b_i·n_i/T_i, for display (the ratio the conditional test weighs)."""
    c, n = np.asarray(canary_bad, float), np.asarray(canary_total, float)
    b, m = np.asarray(baseline_bad, float), np.asarray(baseline_total, float)
    t = n + m
    with np.errstate(divide="ignore", invalid="ignore"):
        top = np.cumsum(np.where(t > 0, c * m / np.where(t > 0, t, 1), 0), axis=-1)
        bottom = np.cumsum(np.where(t > 0, b * n / np.where(t > 0, t, 1), 0), axis=-1)
        return np.asarray(np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan), dtype=np.float64)

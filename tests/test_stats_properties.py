"""Monte-Carlo properties of the always-valid checks: error rates under repeated looks, and power.

Every simulation has a fixed seed and is vectorised over runs x looks: counts are cumulative, as
the analysis sees them at each look. The bounds are always `rate_bounds` itself, called on whole
arrays; the PASS/FAIL rules of ratio.py are applied to those arrays by `_comparison_looks` and
`_gate_looks`, and each simulation checks on a sample of cells that they give exactly the outcome
of the scalar `compare_rates` / `slo_gate`.

Tolerance of the error-rate assertions: alpha + 3 Monte-Carlo standard errors,
sqrt(alpha (1 - alpha) / runs) = 0.49 pp at 2000 runs (reference/statistics.md §7), i.e. 6.46 %.
Run with `-rP` (or `-s`) to see the measured rates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from scipy import stats

from analyzer.stats import Outcome, compare_rates, quantile_bucket_bound, rate_bounds, slo_gate

pytestmark = pytest.mark.statistical

RUNS = 2000
LOOKS = 20
ALPHA = 0.05
TOLERANCE = 0.5
MARGIN = 0.001
MC_SE = math.sqrt(ALPHA * (1 - ALPHA) / RUNS)
FALSE_FAIL_LIMIT = ALPHA + 3 * MC_SE
# Istio's default request-duration buckets (istio_request_duration_milliseconds), in seconds.
ISTIO_BOUNDS = (
    np.array(
        [
            0.5,
            1,
            5,
            10,
            25,
            50,
            100,
            250,
            500,
            1_000,
            2_500,
            5_000,
            10_000,
            30_000,
            60_000,
            300_000,
            600_000,
            1_800_000,
            3_600_000,
            np.inf,
        ]
    )
    / 1000.0
)

Counts = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
RecordProperty = Callable[[str, object], None]  # pytest's record_property fixture


@dataclass(frozen=True)
class Looks:
    """Outcome of every look of every run: arrays of shape (runs, looks)."""

    fail: Mask
    passed: Mask

    def first_decision(self) -> tuple[Mask, npt.NDArray[np.int64], Mask]:
        """(decided, 1-based look of the first PASS or FAIL (0 if none), first decision is FAIL)."""
        decisive = self.fail | self.passed
        decided = np.asarray(decisive.any(axis=1))
        first = np.where(decided, decisive.argmax(axis=1), 0)
        failed = decided & self.fail[np.arange(len(first)), first]
        return decided, np.where(decided, first + 1, 0).astype(np.int64), failed


def _comparison_looks(cb: Counts, ct: Counts, bb: Counts, bt: Counts) -> Looks:
    """compare_rates' rule (ratio.py) on arrays; each arm's bounds at alpha / 2."""
    c = rate_bounds(cb, ct, ALPHA / 2)
    b = rate_bounds(bb, bt, ALPHA / 2)
    fail = (bt > 0) & (c.lower > b.upper * (1 + TOLERANCE) + MARGIN)
    passed = (bt > 0) & ~fail & (c.upper <= b.lower * (1 + TOLERANCE) + MARGIN)
    return Looks(fail=fail, passed=passed)


def _gate_looks(bad: Counts, total: Counts, max_rate: float) -> Looks:
    """slo_gate's rule (ratio.py) on arrays."""
    b = rate_bounds(bad, total, ALPHA)
    fail = b.lower > max_rate
    return Looks(fail=fail, passed=~fail & (b.upper <= max_rate))


def _vector_outcome(looks: Looks, i: int, k: int) -> Outcome:
    if looks.fail[i, k]:
        return Outcome.FAIL
    return Outcome.PASS if looks.passed[i, k] else Outcome.INCONCLUSIVE


def _sample_cells(
    looks: Looks, rng: np.random.Generator, per_outcome: int = 8
) -> list[tuple[int, int]]:
    """A few (run, look) cells of each outcome present in the simulation."""
    cells: list[tuple[int, int]] = []
    undecided = ~(looks.fail | looks.passed)
    for mask in (looks.fail, looks.passed, undecided):
        where = np.argwhere(mask)
        for j in rng.choice(len(where), size=min(per_outcome, len(where)), replace=False):
            cells.append((int(where[j][0]), int(where[j][1])))
    return cells


def _assert_matches_compare_rates(
    looks: Looks, cb: Counts, ct: Counts, bb: Counts, bt: Counts, seed: int
) -> None:
    for i, k in _sample_cells(looks, np.random.default_rng(seed)):
        scalar = compare_rates(
            cb[i, k], ct[i, k], bb[i, k], bt[i, k], tolerance=TOLERANCE, margin=MARGIN, alpha=ALPHA
        )
        assert scalar.outcome is _vector_outcome(looks, i, k), (i, k)


def _assert_matches_slo_gate(
    looks: Looks, bad: Counts, total: Counts, max_rate: float, seed: int
) -> None:
    for i, k in _sample_cells(looks, np.random.default_rng(seed)):
        scalar = slo_gate(bad[i, k], total[i, k], max_rate=max_rate, alpha=ALPHA)
        assert scalar.outcome is _vector_outcome(looks, i, k), (i, k)


def _cumulative(
    rng: np.random.Generator, requests_per_interval: int, rate: float
) -> tuple[Counts, Counts]:
    """Cumulative (bad, total) counts at each look: Binomial errors per interval."""
    bad = rng.binomial(requests_per_interval, rate, size=(RUNS, LOOKS)).cumsum(axis=1)
    total = np.broadcast_to(requests_per_interval * np.arange(1, LOOKS + 1), (RUNS, LOOKS))
    return bad.astype(np.float64), total.astype(np.float64)


def _naive_z_fails(cb: Counts, ct: Counts, bb: Counts, bt: Counts) -> Mask:
    """The fixed-horizon pooled two-proportion z-test (one-sided, canary worse) at every look."""
    pooled = (cb + bb) / (ct + bt)
    se = np.sqrt(pooled * (1 - pooled) * (1 / ct + 1 / bt))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (cb / ct - bb / bt) / se, 0.0)
    return np.asarray(z > stats.norm.ppf(1 - ALPHA))


def _report(name: str, **values: object) -> str:
    line = f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
    print(line)
    return line


def _median_look(looks: npt.NDArray[np.int64], mask: Mask) -> float:
    return float(np.median(looks[mask])) if mask.any() else math.nan


# --- (a) error rates under 20 repeated looks ------------------------------------------------------


def test_aa_canary_fails_the_comparison_at_most_alpha_over_20_looks_unlike_a_naive_z_test(
    record_property: RecordProperty,
) -> None:
    rng = np.random.default_rng(20_001)
    cb, ct = _cumulative(rng, 100, 0.005)
    bb, bt = _cumulative(rng, 900, 0.005)
    looks = _comparison_looks(cb, ct, bb, bt)
    _assert_matches_compare_rates(looks, cb, ct, bb, bt, seed=1)
    ours = float(looks.fail.any(axis=1).mean())
    naive = float(_naive_z_fails(cb, ct, bb, bt).any(axis=1).mean())
    message = _report(
        "A/A comparison, 100/900 req per interval, 0.5 %, 20 looks",
        false_fail=f"{ours:.4f}",
        naive_z_false_fail=f"{naive:.4f}",
        limit=f"{FALSE_FAIL_LIMIT:.4f}",
    )
    record_property("aa_comparison_false_fail", ours)
    record_property("aa_naive_z_false_fail", naive)
    assert ours <= FALSE_FAIL_LIMIT, message
    # The same data do show the peeking problem with a fixed-horizon test, so the simulation
    # is sensitive enough to see an inflated rate.
    assert naive > FALSE_FAIL_LIMIT, message


@pytest.mark.parametrize("requests", [100, 1000])
def test_comparison_at_its_null_boundary_fails_at_most_alpha(requests: int) -> None:
    # The hardest null: the canary rate is exactly the allowance, 0.5 % * (1 + 0.5) + 0.1 pp.
    rng = np.random.default_rng(20_002 + requests)
    cb, ct = _cumulative(rng, requests, 0.005 * (1 + TOLERANCE) + MARGIN)
    bb, bt = _cumulative(rng, 9 * requests, 0.005)
    looks = _comparison_looks(cb, ct, bb, bt)
    _assert_matches_compare_rates(looks, cb, ct, bb, bt, seed=2)
    rate = float(looks.fail.any(axis=1).mean())
    message = _report(
        f"comparison at the null boundary, {requests}/{9 * requests} req per interval",
        false_fail=f"{rate:.4f}",
        limit=f"{FALSE_FAIL_LIMIT:.4f}",
    )
    assert rate <= FALSE_FAIL_LIMIT, message


@pytest.mark.parametrize("requests", [100, 1000])
def test_slo_gate_at_its_null_boundary_fails_at_most_alpha_unlike_a_naive_exact_test(
    requests: int, record_property: RecordProperty
) -> None:
    max_rate = 0.005
    rng = np.random.default_rng(20_003 + requests)
    bad, total = _cumulative(rng, requests, max_rate)  # true rate == max_rate
    looks = _gate_looks(bad, total, max_rate)
    _assert_matches_slo_gate(looks, bad, total, max_rate, seed=3)
    ours = float(looks.fail.any(axis=1).mean())
    # A per-look one-sided exact binomial test (fixed horizon, valid at one look only).
    naive = float((stats.binom.sf(bad - 1, total, max_rate) <= ALPHA).any(axis=1).mean())
    message = _report(
        f"SLO gate at the null boundary, {requests} req per interval, 20 looks",
        false_fail=f"{ours:.4f}",
        naive_exact_binomial_false_fail=f"{naive:.4f}",
        limit=f"{FALSE_FAIL_LIMIT:.4f}",
    )
    record_property(f"slo_null_false_fail_{requests}", ours)
    assert ours <= FALSE_FAIL_LIMIT, message
    assert naive > FALSE_FAIL_LIMIT, message


@pytest.mark.parametrize(("requests", "rate"), [(100, 0.005), (1000, 0.005), (1000, 0.2)])
def test_rate_bounds_cover_the_true_rate_at_all_20_looks_at_once(
    requests: int, rate: float
) -> None:
    rng = np.random.default_rng(20_004 + requests + int(rate * 1000))
    bad, total = _cumulative(rng, requests, rate)
    b = rate_bounds(bad, total, ALPHA)
    missed = float(((b.lower > rate) | (b.upper < rate)).any(axis=1).mean())
    # Clopper-Pearson intervals (exact at one look) miss far more often when looked at 20 times.
    cp_lower = np.where(bad > 0, stats.beta.ppf(ALPHA / 2, bad, total - bad + 1), 0.0)
    cp_upper = np.where(bad < total, stats.beta.ppf(1 - ALPHA / 2, bad + 1, total - bad), 1.0)
    cp_missed = float(((cp_lower > rate) | (cp_upper < rate)).any(axis=1).mean())
    message = _report(
        f"coverage over 20 looks, {requests} req per interval, rate {rate}",
        miscoverage=f"{missed:.4f}",
        clopper_pearson_miscoverage=f"{cp_missed:.4f}",
    )
    assert missed <= FALSE_FAIL_LIMIT, message
    assert cp_missed > FALSE_FAIL_LIMIT, message


def test_aa_latency_exceedance_fails_at_most_alpha() -> None:
    rng = np.random.default_rng(20_005)
    slow_c, total_c, slow_b, total_b, _ = _latency_runs(rng, 100, 900, canary_scale=1.0)
    looks = _comparison_looks(slow_c, total_c, slow_b, total_b)
    rate = float(looks.fail.any(axis=1).mean())
    message = _report("A/A latency exceedance, 100/900", false_fail=f"{rate:.4f}")
    assert rate <= FALSE_FAIL_LIMIT, message


# --- (b) power ------------------------------------------------------------------------------------


def test_4x_error_rate_regression_is_caught_within_20_looks(
    record_property: RecordProperty,
) -> None:
    rng = np.random.default_rng(20_006)
    cb, ct = _cumulative(rng, 1000, 0.02)
    bb, bt = _cumulative(rng, 9000, 0.005)
    looks = _comparison_looks(cb, ct, bb, bt)
    _assert_matches_compare_rates(looks, cb, ct, bb, bt, seed=6)
    _, look, caught = looks.first_decision()
    rate = float(caught.mean())
    median = _median_look(look, caught)
    message = _report(
        "0.5 % -> 2 % errors, 1000/9000 req per interval",
        caught=f"{rate:.4f}",
        median_detection_look=median,
        p90_detection_look=float(np.percentile(look[caught], 90)) if caught.any() else math.nan,
    )
    record_property("error_4x_caught", rate)
    record_property("error_4x_median_look", median)
    assert rate >= 0.95, message


def _latency_runs(
    rng: np.random.Generator, canary_requests: int, baseline_requests: int, canary_scale: float
) -> tuple[Counts, Counts, Counts, Counts, npt.NDArray[np.float64]]:
    """Cumulative exceedance counts above the baseline's p99 bucket bound.

    Latencies are lognormal (median 100 ms, sigma_log 0.6: p99 about 0.40 s), bucketised into
    Istio's default buckets; the canary's are `canary_scale` times slower. Per-bucket counts of
    bucketised lognormal draws are exactly Multinomial(n, bucket probabilities), which is drawn
    directly. The threshold is fixed before the analysis, as a real one would be: the p99 bucket
    bound (`quantile_bucket_bound`) of one earlier interval of baseline traffic.
    """

    def bucket_probabilities(median: float) -> npt.NDArray[np.float64]:
        cdf = stats.lognorm.cdf(ISTIO_BOUNDS, s=0.6, scale=median)
        return np.asarray(np.diff(np.concatenate([[0.0], cdf])), dtype=np.float64)

    p_baseline = bucket_probabilities(0.1)
    p_canary = bucket_probabilities(0.1 * canary_scale)
    history = rng.multinomial(baseline_requests, p_baseline, size=RUNS)
    thresholds = np.array([quantile_bucket_bound(0.99, ISTIO_BOUNDS, h) for h in history])
    above = (
        np.arange(len(ISTIO_BOUNDS))[None, :] > np.searchsorted(ISTIO_BOUNDS, thresholds)[:, None]
    )
    canary = rng.multinomial(canary_requests, p_canary, size=(RUNS, LOOKS))
    baseline = rng.multinomial(baseline_requests, p_baseline, size=(RUNS, LOOKS))
    slow_c = (canary * above[:, None, :]).sum(axis=2).cumsum(axis=1).astype(np.float64)
    slow_b = (baseline * above[:, None, :]).sum(axis=2).cumsum(axis=1).astype(np.float64)
    looks = np.arange(1, LOOKS + 1, dtype=np.float64)
    total_c = np.broadcast_to(canary_requests * looks, (RUNS, LOOKS))
    total_b = np.broadcast_to(baseline_requests * looks, (RUNS, LOOKS))
    return slow_c, total_c, slow_b, total_b, thresholds


def test_latency_histogram_exceedance_counts_match_the_exceedance_function() -> None:
    from analyzer.stats import exceedance

    rng = np.random.default_rng(20_007)
    bounds = ISTIO_BOUNDS
    counts = rng.multinomial(900, np.full(len(bounds), 1 / len(bounds)), size=5)
    for h in counts:
        threshold = quantile_bucket_bound(0.9, bounds, h)
        above = np.arange(len(bounds)) > np.searchsorted(bounds, threshold)
        e = exceedance(threshold, bounds, h)
        assert e.exact and e.certain == h[above].sum()


@pytest.mark.parametrize(("canary_requests", "minimum"), [(1000, 0.90), (100, 0.90)])
def test_2x_p99_latency_regression_is_caught_within_20_looks(
    canary_requests: int, minimum: float, record_property: RecordProperty
) -> None:
    rng = np.random.default_rng(20_008 + canary_requests)
    baseline_requests = 9 * canary_requests
    slow_c, total_c, slow_b, total_b, thresholds = _latency_runs(
        rng, canary_requests, baseline_requests, canary_scale=2.0
    )
    looks = _comparison_looks(slow_c, total_c, slow_b, total_b)
    _assert_matches_compare_rates(looks, slow_c, total_c, slow_b, total_b, seed=8)
    _, look, caught = looks.first_decision()
    rate = float(caught.mean())
    median = _median_look(look, caught)
    values, counts = np.unique(thresholds, return_counts=True)
    message = _report(
        f"2x latency (p99 0.40 s -> 0.81 s), {canary_requests}/{baseline_requests} req per interval",
        caught=f"{rate:.4f}",
        median_detection_look=median,
        thresholds_s=dict(zip(values.tolist(), counts.tolist(), strict=True)),
    )
    record_property(f"latency_2x_caught_{canary_requests}", rate)
    record_property(f"latency_2x_median_look_{canary_requests}", median)
    assert rate >= minimum, message


# --- (c) a good canary is promoted ----------------------------------------------------------------


def test_canary_far_inside_its_slo_passes_the_gate_within_20_looks(
    record_property: RecordProperty,
) -> None:
    max_rate = 0.005
    rng = np.random.default_rng(20_009)
    bad, total = _cumulative(rng, 1000, 0.001)
    looks = _gate_looks(bad, total, max_rate)
    _assert_matches_slo_gate(looks, bad, total, max_rate, seed=9)
    decided, look, failed = looks.first_decision()
    passed = decided & ~failed
    rate = float(passed.mean())
    median = _median_look(look, passed)
    message = _report(
        "0.1 % errors vs SLO 0.5 %, 1000 req per interval",
        passed=f"{rate:.4f}",
        median_pass_look=median,
        failed=f"{float(failed.mean()):.4f}",
    )
    record_property("slo_good_canary_passed", rate)
    assert rate >= 0.95, message

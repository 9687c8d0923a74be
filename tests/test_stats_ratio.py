"""SLO gate and canary-vs-baseline rate comparison (analyzer/stats/ratio.py)."""

from __future__ import annotations

import numpy as np
import pytest

from analyzer.stats import (
    ComparisonResult,
    Outcome,
    compare_rates,
    rate_bounds,
    requests_needed_below,
    slo_gate,
)

ALPHA = 0.05
TOLERANCE = 0.5
MARGIN = 0.001


def _compare(
    cb: float,
    ct: float,
    bb: float,
    bt: float,
    *,
    tolerance: float = TOLERANCE,
    margin: float = MARGIN,
    alpha: float = ALPHA,
) -> ComparisonResult:
    return compare_rates(cb, ct, bb, bt, tolerance=tolerance, margin=margin, alpha=alpha)


# --- SLO gate -----------------------------------------------------------------------------------


def test_slo_gate_passes_a_canary_clearly_within_its_slo() -> None:
    g = slo_gate(5, 100_000, max_rate=0.01, alpha=ALPHA)
    assert g.outcome is Outcome.PASS
    assert g.upper <= 0.01
    assert g.rate == pytest.approx(5e-5)
    assert g.more_requests_needed is None


def test_slo_gate_fails_a_canary_clearly_above_its_slo() -> None:
    g = slo_gate(500, 10_000, max_rate=0.01, alpha=ALPHA)
    assert g.outcome is Outcome.FAIL
    assert g.lower > 0.01
    assert g.more_requests_needed is None


def test_slo_gate_bounds_are_the_always_valid_bounds_at_full_alpha() -> None:
    g = slo_gate(7, 3_000, max_rate=0.01, alpha=ALPHA)
    b = rate_bounds(7, 3_000, ALPHA)
    assert (g.lower, g.upper, g.rate) == (b.lower[0], b.upper[0], b.rate[0])
    assert (g.bad, g.total, g.max_rate, g.alpha) == (7.0, 3_000.0, 0.01, ALPHA)


def test_slo_gate_without_traffic_is_inconclusive_and_says_how_many_requests_are_needed() -> None:
    g = slo_gate(0, 0, max_rate=0.01, alpha=ALPHA)
    assert g.outcome is Outcome.INCONCLUSIVE
    assert (g.lower, g.upper) == (0.0, 1.0)
    assert g.more_requests_needed is not None and g.more_requests_needed > 0
    again = slo_gate(0, g.more_requests_needed, max_rate=0.01, alpha=ALPHA)
    assert again.outcome is Outcome.PASS


def test_slo_gate_fails_at_few_requests_only_with_strong_evidence() -> None:
    # 1 error in 10 requests against a 1 % SLO is suspicious but not proof.
    assert slo_gate(1, 10, max_rate=0.01, alpha=ALPHA).outcome is Outcome.INCONCLUSIVE
    assert slo_gate(30, 1_000, max_rate=0.01, alpha=ALPHA).outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("bad", "total", "max_rate"),
    [(0, 10, 0.01), (5, 1_000, 0.01), (1, 300, 0.005), (40, 10_000, 0.005), (3.7, 1_234.5, 0.008)],
)
def test_more_requests_needed_at_the_current_rate_make_the_gate_pass(
    bad: float, total: float, max_rate: float
) -> None:
    g = slo_gate(bad, total, max_rate=max_rate, alpha=ALPHA)
    assert g.outcome is Outcome.INCONCLUSIVE
    needed = g.more_requests_needed
    assert needed is not None and needed > 0
    n = total + needed
    assert slo_gate(g.rate * n, n, max_rate=max_rate, alpha=ALPHA).outcome is Outcome.PASS
    # and it is the smallest such count (up to rounding to a whole request)
    fewer = total + needed - 1
    assert (
        slo_gate(g.rate * fewer, fewer, max_rate=max_rate, alpha=ALPHA).outcome is not Outcome.PASS
    )


def test_more_requests_needed_is_none_when_the_rate_is_not_below_the_slo() -> None:
    g = slo_gate(2, 100, max_rate=0.02, alpha=ALPHA)  # rate == max_rate: more data cannot pass it
    assert g.outcome is Outcome.INCONCLUSIVE
    assert g.more_requests_needed is None
    assert requests_needed_below(0.03, 100, 0.02, ALPHA) is None
    assert requests_needed_below(0.0, 100, 0.0, ALPHA) is None


def test_more_requests_needed_over_random_cases_always_suffice() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(80):
        total = float(rng.integers(0, 5_000))
        max_rate = float(rng.uniform(0.001, 0.05))
        rate = float(rng.uniform(0.0, 0.8 * max_rate))
        g = slo_gate(np.round(rate * total), total, max_rate=max_rate, alpha=ALPHA)
        if g.outcome is not Outcome.INCONCLUSIVE or g.more_requests_needed is None:
            continue
        n = total + g.more_requests_needed
        assert slo_gate(g.rate * n, n, max_rate=max_rate, alpha=ALPHA).outcome is Outcome.PASS
        checked += 1
    assert checked > 25


def test_slo_gate_with_a_count_known_within_a_range_fails_on_certain_and_passes_on_possible() -> (
    None
):
    # A latency threshold between two bucket bounds: 30..300 of 10 000 requests are slower.
    g = slo_gate(30, 10_000, max_rate=0.01, alpha=ALPHA, bad_at_most=300)
    certain = rate_bounds(30, 10_000, ALPHA)
    possible = rate_bounds(300, 10_000, ALPHA)
    assert g.lower == certain.lower[0]
    assert g.upper == possible.upper[0]
    assert g.outcome is Outcome.INCONCLUSIVE  # neither count alone decides it
    assert slo_gate(30, 10_000, max_rate=0.01, alpha=ALPHA).outcome is Outcome.PASS
    assert slo_gate(300, 10_000, max_rate=0.01, alpha=ALPHA).outcome is Outcome.FAIL
    # both ends on the same side decide it
    assert slo_gate(5, 10_000, max_rate=0.01, alpha=ALPHA, bad_at_most=20).outcome is Outcome.PASS
    assert slo_gate(200, 10_000, max_rate=0.01, alpha=ALPHA, bad_at_most=400).outcome is (
        Outcome.FAIL
    )
    # a range no wider than the certain count changes nothing
    assert slo_gate(30, 10_000, max_rate=0.01, alpha=ALPHA, bad_at_most=30) == slo_gate(
        30, 10_000, max_rate=0.01, alpha=ALPHA
    )


@pytest.mark.parametrize("max_rate", [-0.1, 1.5])
def test_slo_gate_rejects_a_max_rate_outside_unit_interval(max_rate: float) -> None:
    with pytest.raises(ValueError):
        slo_gate(1, 10, max_rate=max_rate, alpha=ALPHA)


def test_slo_gate_rejects_missing_counts() -> None:
    with pytest.raises(ValueError):
        slo_gate(float("nan"), 10, max_rate=0.01, alpha=ALPHA)
    with pytest.raises(ValueError):
        slo_gate(-1, 10, max_rate=0.01, alpha=ALPHA)


# --- canary vs baseline ---------------------------------------------------------------------------


def test_comparison_passes_a_canary_as_good_as_its_baseline() -> None:
    r = _compare(50, 100_000, 500, 900_000)
    assert r.outcome is Outcome.PASS
    assert r.canary_upper <= r.pass_threshold
    assert r.more_requests_needed is None


def test_comparison_fails_a_canary_clearly_worse_than_its_baseline() -> None:
    r = _compare(200, 10_000, 45, 90_000)
    assert r.outcome is Outcome.FAIL
    assert r.canary_lower > r.fail_threshold
    assert r.more_requests_needed is None


def test_comparison_thresholds_follow_the_documented_rule() -> None:
    r = _compare(12, 2_000, 80, 18_000)
    c = rate_bounds(12, 2_000, ALPHA / 2)
    b = rate_bounds(80, 18_000, ALPHA / 2)
    assert (r.canary_lower, r.canary_upper) == (c.lower[0], c.upper[0])
    assert (r.baseline_lower, r.baseline_upper) == (b.lower[0], b.upper[0])
    assert r.fail_threshold == pytest.approx(b.upper[0] * (1 + TOLERANCE) + MARGIN)
    assert r.pass_threshold == pytest.approx(b.lower[0] * (1 + TOLERANCE) + MARGIN)
    assert r.allowed_rate == pytest.approx(80 / 18_000 * (1 + TOLERANCE) + MARGIN)
    assert r.pass_threshold <= r.allowed_rate <= r.fail_threshold


def test_comparison_without_canary_traffic_is_inconclusive_with_requests_needed() -> None:
    r = _compare(0, 0, 45, 90_000)
    assert r.outcome is Outcome.INCONCLUSIVE
    assert (r.canary_lower, r.canary_upper) == (0.0, 1.0)
    assert r.more_requests_needed is not None and r.more_requests_needed > 0
    again = _compare(0, r.more_requests_needed, 45, 90_000)
    assert again.outcome is Outcome.PASS


def test_comparison_without_baseline_traffic_is_inconclusive() -> None:
    r = _compare(5, 1_000, 0, 0)
    assert r.outcome is Outcome.INCONCLUSIVE
    assert r.more_requests_needed is None
    # even a terrible canary cannot be judged against a missing baseline
    assert _compare(900, 1_000, 0, 0).outcome is Outcome.INCONCLUSIVE


def test_zero_errors_on_both_sides_passes_with_enough_traffic_thanks_to_the_margin() -> None:
    few = _compare(0, 1_000, 0, 9_000)
    assert few.outcome is Outcome.INCONCLUSIVE
    assert few.more_requests_needed is not None and few.more_requests_needed > 0
    n = 1_000 + few.more_requests_needed
    assert _compare(0, n, 0, 9_000).outcome is Outcome.PASS
    assert _compare(0, 100_000, 0, 900_000).outcome is Outcome.PASS
    # without a margin, "0 <= 1.5 * 0" can never be shown: the pass threshold is 0
    no_margin = _compare(0, 10_000_000, 0, 90_000_000, margin=0.0)
    assert no_margin.outcome is Outcome.INCONCLUSIVE
    assert no_margin.pass_threshold == 0.0
    assert no_margin.more_requests_needed is None


@pytest.mark.parametrize("n", [100, 1_000, 10_000, 100_000, 1_000_000])
def test_identical_data_never_fails_and_passes_with_enough_traffic(n: int) -> None:
    r = _compare(0.005 * n, n, 0.005 * n, n)
    assert r.outcome is not Outcome.FAIL
    assert r.canary_rate == r.baseline_rate
    if n >= 100_000:
        assert r.outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("cb", "ct", "bb", "bt"),
    [(0, 1_000, 0, 9_000), (3, 1_000, 60, 9_000), (0, 100, 4, 900), (30, 10_000, 300, 90_000)],
)
def test_more_canary_requests_needed_at_the_current_rate_make_the_comparison_pass(
    cb: float, ct: float, bb: float, bt: float
) -> None:
    # The estimate assumes both rates stay as they are and the baseline keeps its share of traffic.
    r = _compare(cb, ct, bb, bt)
    assert r.outcome is Outcome.INCONCLUSIVE
    needed = r.more_requests_needed
    assert needed is not None and needed > 0
    n = ct + needed
    grow = n / ct
    again = _compare(r.canary_rate * n, n, bb * grow, bt * grow)
    assert again.outcome is Outcome.PASS, again
    fewer = n - 1
    shrink = fewer / ct
    before = _compare(r.canary_rate * fewer, fewer, bb * shrink, bt * shrink)
    assert before.outcome is Outcome.INCONCLUSIVE


def test_comparison_requests_needed_is_none_when_canary_rate_exceeds_the_pass_threshold() -> None:
    r = _compare(12, 1_000, 45, 9_000)  # 1.2 % vs an allowance of 0.85 %: not shown worse yet
    assert r.outcome is Outcome.INCONCLUSIVE
    assert r.canary_rate > r.pass_threshold
    assert r.more_requests_needed is None


def test_tolerance_and_margin_widen_the_allowance() -> None:
    # canary 0.8 % vs baseline 0.5 %: worse than the baseline, within a 100 % tolerance.
    counts = (8_000, 1_000_000, 45_000, 9_000_000)
    assert _compare(*counts, tolerance=0.0, margin=0.0).outcome is Outcome.FAIL
    assert _compare(*counts, tolerance=1.0, margin=0.0).outcome is Outcome.PASS
    # canary 0.6 % vs baseline 0.5 %: shown worse, but within an absolute margin of 0.5 pp.
    counts = (6_000, 1_000_000, 45_000, 9_000_000)
    assert _compare(*counts, tolerance=0.0, margin=0.0).outcome is Outcome.FAIL
    assert _compare(*counts, tolerance=0.0, margin=0.005).outcome is Outcome.PASS


@pytest.mark.parametrize(("tolerance", "margin"), [(-0.1, 0.0), (0.0, -0.001)])
def test_comparison_rejects_negative_tolerance_or_margin(tolerance: float, margin: float) -> None:
    with pytest.raises(ValueError):
        _compare(1, 100, 1, 100, tolerance=tolerance, margin=margin)


def test_comparison_keeps_the_inputs_for_display() -> None:
    r = _compare(3, 700, 20, 6_300)
    assert (r.canary_bad, r.canary_total, r.baseline_bad, r.baseline_total) == (3, 700, 20, 6_300)
    assert (r.tolerance, r.margin, r.alpha) == (TOLERANCE, MARGIN, ALPHA)
    assert r.canary_rate == pytest.approx(3 / 700)
    assert r.baseline_rate == pytest.approx(20 / 6_300)

"""Kayenta-style Mann-Whitney judge (analyzer/stats/mann_whitney.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from analyzer import stats as stats_package
from analyzer.stats import MannWhitneyResult, Outcome, mann_whitney_compare


def _samples(
    shift: float, n: int = 20, m: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(10.0 + shift, 1.0, n), rng.normal(10.0, 1.0, m)


def test_is_exported_from_the_stats_package() -> None:
    assert stats_package.mann_whitney_compare is mann_whitney_compare
    assert stats_package.MannWhitneyResult is MannWhitneyResult
    assert "mann_whitney_compare" in stats_package.__all__


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(("n", "m"), [(3, 3), (5, 8), (20, 20), (30, 12)])
def test_hodges_lehmann_and_p_value_match_numpy_and_scipy(seed: int, n: int, m: int) -> None:
    canary, baseline = _samples(0.5, n, m, seed)
    r = mann_whitney_compare(canary, baseline)
    assert r.hodges_lehmann == np.median(np.subtract.outer(canary, baseline))
    expected_p = stats.mannwhitneyu(canary, baseline, alternative="two-sided").pvalue
    assert r.p_value == pytest.approx(expected_p, rel=1e-12)
    assert (r.canary_n, r.baseline_n) == (n, m)
    assert r.canary_mean == pytest.approx(np.mean(canary))
    assert r.baseline_mean == pytest.approx(np.mean(baseline))
    assert r.ci_lower <= r.hodges_lehmann <= r.ci_upper


def test_p_value_with_ties_matches_scipy() -> None:
    canary = np.array([0.0, 0.0, 0.01, 0.02, 0.02, 0.03, 0.0, 0.05])
    baseline = np.array([0.0, 0.0, 0.0, 0.01, 0.01, 0.0, 0.02, 0.0, 0.01])
    r = mann_whitney_compare(canary, baseline)
    assert r.p_value == pytest.approx(stats.mannwhitneyu(canary, baseline).pvalue, rel=1e-12)


def test_confidence_interval_is_the_hollander_wolfe_order_statistics() -> None:
    canary, baseline = _samples(1.0, 10, 10, seed=11)
    differences = np.sort(np.subtract.outer(canary, baseline).ravel())
    # C = round(nm/2 - z_{0.99} sqrt(nm(n+m+1)/12)) = round(50 - 2.3263 * 13.229) = round(19.23)
    c = round(50 - stats.norm.ppf(0.99) * math.sqrt(100 * 21 / 12))
    assert c == 19
    r = mann_whitney_compare(canary, baseline, confidence=0.98)
    assert r.ci_lower == differences[c - 1]
    assert r.ci_upper == differences[100 - c]
    # at 90 %: round(50 - 1.6449 * 13.229) = round(28.24) = 28
    r90 = mann_whitney_compare(canary, baseline, confidence=0.90)
    assert (r90.ci_lower, r90.ci_upper) == (differences[27], differences[100 - 28])


def test_interval_narrows_as_confidence_falls() -> None:
    canary, baseline = _samples(0.3, 15, 25, seed=2)
    widths = [
        mann_whitney_compare(canary, baseline, confidence=c).ci_upper
        - mann_whitney_compare(canary, baseline, confidence=c).ci_lower
        for c in (0.999, 0.98, 0.9, 0.5)
    ]
    assert widths == sorted(widths, reverse=True)


def test_confidence_interval_covers_a_known_shift() -> None:
    canary, baseline = _samples(1.5, 30, 30, seed=21)
    r = mann_whitney_compare(canary, baseline)
    assert r.ci_lower <= 1.5 <= r.ci_upper
    assert r.hodges_lehmann == pytest.approx(1.5, abs=0.5)


def test_confidence_interval_coverage_is_near_its_level() -> None:
    rng = np.random.default_rng(22)
    reps, shift = 600, 2.0
    canary = rng.exponential(1.0, (reps, 15)) + shift  # skewed data: ranks do not care
    baseline = rng.exponential(1.0, (reps, 12))
    covered = 0
    for i in range(reps):
        r = mann_whitney_compare(canary[i], baseline[i])
        covered += r.ci_lower <= shift <= r.ci_upper
    se = math.sqrt(0.98 * 0.02 / reps)
    assert covered / reps >= 0.98 - 3 * se, f"coverage {covered / reps:.3f}"


def test_tie_correction_only_narrows_the_interval() -> None:
    canary = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 5], dtype=float)
    baseline = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 0], dtype=float)
    tied = mann_whitney_compare(canary, baseline, tie_correction=True)
    plain = mann_whitney_compare(canary, baseline, tie_correction=False)
    assert tied.ci_lower >= plain.ci_lower
    assert tied.ci_upper <= plain.ci_upper
    assert tied.hodges_lehmann == plain.hodges_lehmann
    # without within-sample ties the correction changes nothing
    a, b = _samples(0.2, 12, 9, seed=3)
    assert mann_whitney_compare(a, b, tie_correction=True) == mann_whitney_compare(
        a, b, tie_correction=False
    )


# --- decision rules ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shift", "direction", "outcome"),
    [
        (2.0, "increase", Outcome.FAIL),
        (2.0, "either", Outcome.FAIL),
        (2.0, "decrease", Outcome.PASS),
        (-2.0, "decrease", Outcome.FAIL),
        (-2.0, "either", Outcome.FAIL),
        (-2.0, "increase", Outcome.PASS),
        (0.0, "increase", Outcome.PASS),
        (0.0, "decrease", Outcome.PASS),
        (0.0, "either", Outcome.PASS),
    ],
)
def test_high_and_low_fail_only_in_the_watched_direction(
    shift: float, direction: str, outcome: Outcome
) -> None:
    canary, baseline = _samples(shift, seed=4)
    r = mann_whitney_compare(canary, baseline, direction=direction)
    assert r.outcome is outcome, r.reason
    if shift > 0:
        assert r.ci_lower > 0.25 * abs(r.hodges_lehmann)
        assert "High" in r.reason or "higher" in r.reason
    if shift < 0:
        assert r.ci_upper < -0.25 * abs(r.hodges_lehmann)
        assert "Low" in r.reason or "lower" in r.reason


@pytest.mark.parametrize("tolerance", [0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0])
def test_high_means_ci_lower_above_tolerance_times_the_shift(tolerance: float) -> None:
    canary, baseline = _samples(0.8, 25, 25, seed=8)
    r = mann_whitney_compare(canary, baseline, tolerance=tolerance)
    high = r.ci_lower > tolerance * abs(r.hodges_lehmann)
    assert r.outcome is (Outcome.FAIL if high else Outcome.PASS)


def test_a_significant_but_small_relative_shift_passes() -> None:
    # The CI excludes 0 (p < 0.02) but its lower end is below 0.25 * |HL|: Kayenta passes it.
    canary, baseline = _samples(0.8, 25, 25, seed=8)
    r = mann_whitney_compare(canary, baseline)
    assert r.p_value < 0.02
    assert 0 < r.ci_lower <= 0.25 * r.hodges_lehmann
    assert r.outcome is Outcome.PASS
    assert mann_whitney_compare(canary, baseline, tolerance=0.0).outcome is Outcome.FAIL


def test_nans_are_removed_first() -> None:
    canary, baseline = _samples(3.0, 10, 12, seed=9)
    with_nans = mann_whitney_compare(
        np.concatenate([[np.nan], canary, [np.nan]]), np.concatenate([baseline, [np.nan]])
    )
    assert with_nans == mann_whitney_compare(canary, baseline)
    assert (with_nans.canary_n, with_nans.baseline_n) == (10, 12)
    assert with_nans.outcome is Outcome.FAIL


@pytest.mark.parametrize(
    ("canary", "baseline"),
    [([], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], []), ([], []), ([np.nan, np.nan], [1.0, 2.0, 3.0])],
)
def test_empty_side_is_inconclusive_no_data(canary: list[float], baseline: list[float]) -> None:
    r = mann_whitney_compare(canary, baseline)
    assert r.outcome is Outcome.INCONCLUSIVE
    assert r.reason.startswith("no data")
    assert math.isnan(r.hodges_lehmann) and math.isnan(r.p_value)


@pytest.mark.parametrize(
    ("canary", "baseline"),
    [([1.0, 2.0], [1.0, 2.0, 3.0]), ([1.0, 2.0, 3.0], [5.0]), ([9.0, 9.5], [1.0, 1.1])],
)
def test_fewer_than_three_values_on_a_side_is_inconclusive(
    canary: list[float], baseline: list[float]
) -> None:
    r = mann_whitney_compare(canary, baseline)
    assert r.outcome is Outcome.INCONCLUSIVE
    assert "too few values" in r.reason
    assert math.isnan(r.ci_lower) and math.isnan(r.ci_upper) and math.isnan(r.p_value)


def test_identical_data_passes() -> None:
    canary, _ = _samples(0.0, 15, 15, seed=10)
    r = mann_whitney_compare(canary, canary[::-1].copy())
    assert r.outcome is Outcome.PASS
    assert r.reason == "data are identical"
    assert r.hodges_lehmann == 0.0


def test_a_single_distinct_value_passes() -> None:
    r = mann_whitney_compare([0.0] * 5, [0.0] * 9)
    assert r.outcome is Outcome.PASS
    assert (r.hodges_lehmann, r.ci_lower, r.ci_upper, r.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_two_different_constants_are_a_shift() -> None:
    # Kayenta adds tiny noise to constant sides; the order statistics need none.
    r = mann_whitney_compare([2.0] * 5, [1.0] * 5)
    assert r.outcome is Outcome.FAIL
    assert (r.hodges_lehmann, r.ci_lower, r.ci_upper) == (1.0, 1.0, 1.0)


def test_fixed_horizon_mode_never_answers_inconclusive_with_enough_values() -> None:
    # Few, noisy, overlapping values: a wide interval, and therefore PASS, never INCONCLUSIVE.
    r = mann_whitney_compare([1.0, 5.0, 3.0], [2.0, 4.0, 6.0])
    assert r.outcome is Outcome.PASS
    assert r.ci_lower < 0 < r.ci_upper


def test_too_few_values_for_the_level_is_reported() -> None:
    # 3 vs 3 cannot reach 98 %: the interval is the full range of differences (level 90 %).
    r = mann_whitney_compare([4.0, 5.0, 6.0], [1.0, 2.0, 3.0])
    assert (r.ci_lower, r.ci_upper) == (1.0, 5.0)
    assert "level 90.0%" in r.reason
    assert r.outcome is Outcome.FAIL


def test_canary_minus_baseline_sign_convention() -> None:
    r = mann_whitney_compare([11.0, 12.0, 13.0, 14.0], [1.0, 2.0, 3.0, 4.0])
    assert r.hodges_lehmann == 10.0
    assert r.ci_lower > 0


@pytest.mark.parametrize(
    "kwargs",
    [{"direction": "up"}, {"confidence": 0.0}, {"confidence": 1.0}, {"tolerance": -0.1}],
)
def test_invalid_options_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        mann_whitney_compare([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], **kwargs)  # type: ignore[arg-type]


def test_infinite_values_are_rejected() -> None:
    with pytest.raises(ValueError):
        mann_whitney_compare([1.0, 2.0, math.inf], [1.0, 2.0, 3.0])


def test_result_is_frozen() -> None:
    r = mann_whitney_compare([1.0, 2.0, 3.0], [1.0, 2.0, 3.5])
    with pytest.raises(AttributeError):
        r.outcome = Outcome.FAIL  # type: ignore[misc]


def test_a_significant_but_small_relative_drop_is_not_low() -> None:
    # The mirror image of the test above: the CI excludes 0 but its upper end lies above
    # -0.25 * |HL|, so Kayenta's Low rule does not fire, even watching for decreases.
    canary, baseline = _samples(0.8, 25, 25, seed=8)
    r = mann_whitney_compare(baseline, canary, direction="decrease")
    assert -0.25 * abs(r.hodges_lehmann) <= r.ci_upper < 0
    assert r.outcome is Outcome.PASS
    assert mann_whitney_compare(baseline, canary, direction="decrease", tolerance=0.0).outcome is Outcome.FAIL

"""The e-processes behind every sequential check: formula, nulls, and the decision levels."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.stats import allowed_ratios, comparison_evidence, rate_bounds, slo_evidence
from analyzer.stats.eprocess import binomial_e_process, extra_requests_for, logit
from analyzer.stats.ratio import MIN_PRERUN_BAD, AllowedRatios
from tests.reference_eprocess import log_e_value

CASES = [
    # (successes per interval, trials per interval, null probability per interval)
    ([0], [0], [0.01]),
    ([3], [100], [0.01]),
    ([12], [400], [0.01]),
    ([0], [2000], [0.005]),
    ([5, 9, 40], [300, 600, 3000], [0.02, 0.05, 0.3]),
    ([1, 0, 2, 30], [2, 5, 3, 60], [0.05, 0.09, 0.09, 0.33]),
]


@pytest.mark.parametrize("upward", [True, False], ids=["fail", "pass"])
@pytest.mark.parametrize("case", CASES)
def test_e_values_equal_the_continuous_mixture_of_the_formula(
    case: tuple[list[float], list[float], list[float]], upward: bool
) -> None:
    s, k, p = case
    engine = binomial_e_process(np.array(s, float), np.array(k, float), logit(p), upward=upward)
    reference = log_e_value(s, k, logit(p), upward=upward)
    # equal as e-values: to 2 % where there is evidence, to 0.01 where there is none (the engine's
    # grid does not resolve how fast a vanishing e-value vanishes, which decides nothing)
    got = float(engine.log_e[-1])
    if reference > -1.0:
        assert got == pytest.approx(reference, abs=0.02)
    else:
        assert math.exp(got) == pytest.approx(math.exp(reference), abs=0.01)


def test_evidence_grows_in_the_direction_of_the_data() -> None:
    # 3 % errors against a 1 % null: FAIL evidence, no PASS evidence; the reverse at 0.1 %.
    hi = slo_evidence(np.full(10, 30.0), np.full(10, 1000.0), 0.01)
    lo = slo_evidence(np.full(10, 1.0), np.full(10, 1000.0), 0.01)
    assert hi.fail.log_e[-1] > math.log(1e6) and hi.passes.log_e[-1] < 0
    assert lo.passes.log_e[-1] > math.log(1e3) and lo.fail.log_e[-1] < 0


def test_slo_gate_false_fail_and_false_pass_rates_at_its_boundary_are_within_alpha_and_beta() -> None:
    # Ville: at the null boundary the e-process reaches 1/alpha at any of 200 looks w.p. ≤ alpha.
    rng = np.random.default_rng(11)
    runs, looks, n, p = 4000, 200, 50, 0.01
    bad = rng.binomial(n, p, size=(runs, looks)).astype(float)
    ev = slo_evidence(bad, np.full((runs, looks), float(n)), p)
    alpha, beta = 0.05, 0.10
    false_fail = float((ev.fail.log_e.max(axis=1) >= math.log(1 / alpha)).mean())
    false_pass = float((ev.passes.log_e.max(axis=1) >= math.log(1 / beta)).mean())
    se = math.sqrt(alpha * (1 - alpha) / runs)
    assert false_fail <= alpha + 3 * se
    assert false_pass <= beta + 3 * math.sqrt(beta * (1 - beta) / runs)
    # and the test is not trivially silent: a 2x rate is caught in most runs
    bad2 = rng.binomial(n, 2 * p, size=(runs, looks)).astype(float)
    power = slo_evidence(bad2, np.full((runs, looks), float(n)), p).fail.log_e.max(axis=1)
    assert float((power >= math.log(1 / alpha)).mean()) > 0.9


def test_comparison_is_exact_under_shared_incidents_and_a_weight_ramp() -> None:
    # A/A: the canary share moves 5 % → 10 % → 50 %, and an incident multiplies BOTH versions'
    # error rate by 10 for a while. The conditional test sees only the ratio: false fails ≤ alpha.
    rng = np.random.default_rng(5)
    runs, looks = 3000, 60
    share = np.repeat([0.05, 0.10, 0.50], 20)
    rate = np.full(looks, 0.005)
    rate[25:35] *= 10.0
    n = rng.poisson(2000 * share, size=(runs, looks)).astype(float)
    m = rng.poisson(2000 * (1 - share), size=(runs, looks)).astype(float)
    c = rng.binomial(n.astype(int), rate).astype(float)
    b = rng.binomial(m.astype(int), rate).astype(float)
    ratios = allowed_ratios(
        b, m, np.full(runs, 1000.0), np.full(runs, 200000.0),
        tolerance=0.0, promote_tolerance=0.0, margin=0.0, fallback_alpha=0.005, fallback_beta=0.01,
    )
    assert np.all(ratios.fail == 1.0)  # the null is exactly "no worse": the hardest case
    ev = comparison_evidence(c, n, b, m, ratios)
    false_fail = float((ev.fail.log_e.max(axis=1) >= math.log(20)).mean())
    assert false_fail <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)
    # a canary 3x worse is caught despite the incident
    c3 = rng.binomial(n.astype(int), np.minimum(3 * rate, 1)).astype(float)
    caught = comparison_evidence(c3, n, b, m, ratios).fail.log_e.max(axis=1) >= math.log(20)
    assert float(caught.mean()) > 0.95


def test_allowed_ratios_from_the_prerun_window_follow_the_documented_rule() -> None:
    r = allowed_ratios(
        np.array([5.0, 7.0]), np.array([1000.0, 1000.0]), np.array(50.0), np.array(10000.0),
        tolerance=0.5, promote_tolerance=0.75, margin=0.001, fallback_alpha=0.001, fallback_beta=0.01,
    )
    assert np.allclose(r.fail, 1.5 + 0.001 / 0.005)
    assert np.allclose(r.passes, 1.75 + 0.001 / 0.005)
    assert np.all(r.from_prerun)


def test_without_enough_prerun_errors_each_look_uses_the_baselines_bounds_so_far() -> None:
    b_bad = np.array([3.0, 8.0, 1.0, 12.0])
    b_total = np.array([1000.0, 2000.0, 500.0, 3000.0])
    pre_bad, pre_total = MIN_PRERUN_BAD - 1.0, 6000.0
    r = allowed_ratios(
        b_bad, b_total, np.array(pre_bad), np.array(pre_total),
        tolerance=0.5, promote_tolerance=0.75, margin=0.001, fallback_alpha=0.001, fallback_beta=0.01,
    )
    assert not r.from_prerun.any()
    for i in range(4):
        seen_bad = pre_bad + b_bad[: i + 1].sum()
        seen_total = pre_total + b_total[: i + 1].sum()
        lower = float(rate_bounds(seen_bad, seen_total, 0.001).lower[0])
        upper = float(rate_bounds(seen_bad, seen_total, 0.01).upper[0])
        assert r.fail[i] == pytest.approx(1.5 + 0.001 / lower)
        assert r.passes[i] == pytest.approx(1.75 + 0.001 / upper)


def _fresh_pairs(
    canary_rate: float, runs: int, seed: int, per_minute: int = 200
) -> tuple[np.ndarray, ...]:
    """Fresh-baseline pairs: `per_minute` requests per version in 1-minute intervals for an hour."""
    rng = np.random.default_rng(seed)
    n = np.full((runs, 60), float(per_minute))
    c = rng.binomial(per_minute, canary_rate, size=(runs, 60)).astype(float)
    b = rng.binomial(per_minute, 0.005, size=(runs, 60)).astype(float)
    return c, n, b, n


def _fresh_ratios(b: np.ndarray, m: np.ndarray, tolerance: float) -> AllowedRatios:
    runs = b.shape[0]
    return allowed_ratios(
        b, m, np.zeros(runs), np.zeros(runs), tolerance=tolerance, promote_tolerance=1.5 * tolerance,
        margin=0.001, fallback_alpha=0.003, fallback_beta=0.01,
    )


def test_the_plug_in_null_holds_alpha_at_the_contracts_boundary_on_fresh_baselines() -> None:
    # canary exactly at baseline × 1.5 + margin: the hardest null; every look re-tests every interval
    # (at 4,000 requests/min a null without the margin's share is rejected in most runs)
    runs = 400
    c, n, b, m = _fresh_pairs(0.005 * 1.5 + 0.001, runs, seed=11, per_minute=4000)
    ev = comparison_evidence(c, n, b, m, _fresh_ratios(b, m, 0.5))
    false_fail = float((ev.fail.log_e.max(axis=1) >= math.log(1 / 0.027)).mean())
    assert false_fail <= 0.03 + 3 * math.sqrt(0.03 * 0.97 / runs)


def test_the_plug_in_null_catches_a_fourfold_regression_on_a_fresh_baseline() -> None:
    # before: a null fixed interval by interval from the earlier intervals caught 23 % in the hour
    c, n, b, m = _fresh_pairs(0.02, 200, seed=12)
    ev = comparison_evidence(c, n, b, m, _fresh_ratios(b, m, 1.0))
    caught = ev.fail.log_e >= math.log(1 / 0.027)
    assert float(caught.any(axis=1).mean()) >= 0.7
    # look t weighs every interval up to t against look t's null: the last look's log-likelihood
    # ratios are those of the whole hour at the last null
    first = _fresh_ratios(b[:1], m[:1], 1.0)
    single = AllowedRatios(
        fail=first.fail[0], passes=first.passes[0],
        baseline_rate=first.baseline_rate[0], from_prerun=first.from_prerun[0],
    )
    one = comparison_evidence(c[0], n[0], b[0], m[0], single)
    assert np.allclose(one.fail.log_e, ev.fail.log_e[0])


def test_promote_tolerance_below_tolerance_is_refused() -> None:
    with pytest.raises(ValueError):
        allowed_ratios(
            np.ones(2), np.ones(2), np.array(0.0), np.array(0.0),
            tolerance=0.5, promote_tolerance=0.4, margin=0.0, fallback_alpha=0.01, fallback_beta=0.01,
        )


@pytest.mark.parametrize("rate", [0.0, 0.002, 0.006])
def test_extra_requests_for_a_pass_are_enough_and_not_many_more(rate: float) -> None:
    p0 = 0.01
    o = float(logit(p0))
    level = math.log(10)
    start = binomial_e_process(np.array([rate * 200]), np.array([200.0]), o, upward=False)
    more = extra_requests_for(start.last_log_lr, level, lambda x: (x * rate, x, o), upward=False)
    assert more is not None and more > 0

    def after(x: float) -> float:
        s = np.array([rate * 200, rate * x])
        k = np.array([200.0, x])
        return float(binomial_e_process(s, k, o, upward=False).log_e[-1])

    assert after(more) >= level - 1e-9
    assert after(more * 0.9) < level


def test_no_extra_requests_pass_a_rate_above_the_bound() -> None:
    o = float(logit(0.01))
    start = binomial_e_process(np.array([4.0]), np.array([200.0]), o, upward=False)
    assert extra_requests_for(start.last_log_lr, math.log(10), lambda x: (x * 0.02, x, o), upward=False) is None

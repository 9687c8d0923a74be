"""The rules that turn a metric's per-check evidence into a status after each look."""

from __future__ import annotations

import math

import numpy as np
import pytest

from analyzer.looks import (
    CHECK_WEIGHTS,
    FAIL,
    INCONCLUSIVE,
    NO_DATA,
    PASS,
    check_weights,
    latency_looks,
    ratio_looks,
)
from analyzer.plan import MetricPlan
from analyzer.spec import parse_analysis, plan_metric
from analyzer.stats import comparison_bucket_bound
from tests.helpers import example_analysis

BOUNDS = np.array([0.05, 0.1, 0.25, 0.5, 1.0, np.inf])


def metric(**changes: object) -> MetricPlan:
    m: dict[str, object] = {
        "name": "error-rate",
        "template": "istio-error-rate",
        "slo": {"max": 0.01},
        "compare": {"tolerance": 0.5, "margin": 0.001},
    }
    m.update(changes)
    m = {k: v for k, v in m.items() if v is not None}
    return plan_metric(parse_analysis(dict(example_analysis(), metrics=[m])).metrics[0])


def latency(**changes: object) -> MetricPlan:
    fields: dict[str, object] = {"slo": {"max": "1s"}}
    fields.update(changes)
    return metric(name="p99", template="istio-latency", quantile=0.99, **fields)


def test_check_weights_are_the_documented_ones() -> None:
    # the SLO holds and never fails: the FAIL e-value averages the rollback trigger and comparison
    assert CHECK_WEIGHTS == {"trigger": 0.1, "compare": 0.9}
    assert check_weights(metric()) == {"trigger": 0.1, "compare": 0.9}
    assert check_weights(metric(compare=None)) == {"trigger": 1.0}
    assert check_weights(metric(slo=None)) == {"compare": 1.0}
    assert check_weights(metric(slo={"abortAbove": "2%"}, compare=None)) == {"trigger": 1.0}


def _looks(m: MetricPlan, c_bad: list[float], c_total: list[float], b_bad: list[float], b_total: list[float], alpha: float = 0.03):  # type: ignore[no-untyped-def]
    return ratio_looks(
        m, np.array(c_bad, float), np.array(c_total, float), np.array(b_bad, float),
        np.array(b_total, float), np.array(500.0), np.array(100000.0), alpha=alpha, beta=0.1,
    )


def test_a_metric_fails_when_the_weighted_mean_of_its_fail_e_values_reaches_one_over_alpha() -> None:
    rng = np.random.default_rng(2)
    m = metric()
    for _ in range(200):
        n = rng.integers(50, 3000, size=6).astype(float)
        c = rng.binomial(n.astype(int), rng.uniform(0.002, 0.03)).astype(float)
        ml = _looks(m, list(c), list(n), list(n * 0.05), list(n * 9))
        _, trigger, cmp_ = ml.checks
        assert trigger.check == "trigger" and cmp_.check == "compare"
        mean = np.log(0.1 * np.exp(trigger.fail.log_e) + 0.9 * np.exp(cmp_.fail.log_e))
        crossed = np.maximum.accumulate(mean >= math.log(1 / 0.03))
        assert np.array_equal(ml.codes == FAIL, crossed)


def test_a_metric_passes_only_when_every_check_passes() -> None:
    # 0.3 % errors: within the 1 % SLO, but 3x the baseline's 0.1 % (beyond the comparison)
    m = metric()
    ml = ratio_looks(
        m, np.full(30, 3.0), np.full(30, 1000.0), np.full(30, 9.0), np.full(30, 9000.0),
        np.array(100.0), np.array(100000.0), alpha=0.03, beta=0.1,
    )
    slo, _, cmp_ = ml.checks
    assert slo.passes.log_e[-1] >= math.log(10)  # the SLO check alone has passed
    assert cmp_.passes.log_e[-1] < math.log(10)
    assert ml.codes[-1] != PASS
    # with the SLO alone it passes
    alone = ratio_looks(
        metric(compare=None), np.full(30, 3.0), np.full(30, 1000.0), None, None, None, None,
        alpha=0.03, beta=0.1,
    )
    assert alone.codes[-1] == PASS


def test_a_failure_stays_failed_after_the_canary_recovers() -> None:
    bad = [40.0, 40.0] + [0.0] * 60
    ml = _looks(metric(), bad, [1000.0] * 62, [5.0] * 62, [9000.0] * 62)
    assert ml.codes[1] == FAIL and np.all(ml.codes[1:] == FAIL)
    assert ml.log_e_fail[-1] < ml.fail_level  # the evidence has faded; the verdict has not


def test_no_canary_requests_is_no_data_never_a_pass() -> None:
    ml = _looks(metric(), [0, 0, 1], [0, 0, 100], [1, 1, 1], [900, 900, 900])
    assert list(ml.codes[:2]) == [NO_DATA, NO_DATA]
    assert ml.codes[2] == INCONCLUSIVE


def test_the_fallback_for_little_prerun_data_is_paid_from_the_metrics_alpha() -> None:
    m = metric()
    few = ratio_looks(
        m, np.ones(3), np.full(3, 100.0), np.ones(3), np.full(3, 900.0),
        np.array(5.0), np.array(1000.0), alpha=0.03, beta=0.1,
    )
    enough = ratio_looks(
        m, np.ones(3), np.full(3, 100.0), np.ones(3), np.full(3, 900.0),
        np.array(50.0), np.array(10000.0), alpha=0.03, beta=0.1,
    )
    assert float(enough.fail_level) == pytest.approx(math.log(1 / 0.03))
    assert float(few.fail_level) == pytest.approx(math.log(1 / (0.03 * (1 - 0.1 * 0.9))))
    assert float(few.pass_level) == pytest.approx(math.log(1 / (0.1 * 0.9)))


def test_leading_axes_give_the_same_codes_as_one_run_at_a_time() -> None:
    rng = np.random.default_rng(4)
    n = rng.poisson(300, size=(5, 40)).astype(float)
    m_ = rng.poisson(2700, size=(5, 40)).astype(float)
    c = rng.binomial(n.astype(int), 0.012).astype(float)
    b = rng.binomial(m_.astype(int), 0.005).astype(float)
    pre_b, pre_n = np.array([10.0, 40.0, 60.0, 0.0, 35.0]), np.full(5, 8000.0)
    batch = ratio_looks(metric(), c, n, b, m_, pre_b, pre_n, alpha=0.03, beta=0.1).codes
    for r in range(5):
        one = ratio_looks(metric(), c[r], n[r], b[r], m_[r], pre_b[r], pre_n[r], alpha=0.03, beta=0.1)
        assert np.array_equal(batch[r], one.codes)


def _histograms(rng: np.random.Generator, n: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.stack([rng.multinomial(int(t), probs) for t in n]).astype(float)


def test_the_latency_threshold_is_frozen_from_the_prerun_window() -> None:
    rng = np.random.default_rng(6)
    probs = np.array([0.5, 0.3, 0.15, 0.04, 0.008, 0.002])
    pre = rng.multinomial(20000, probs).astype(float)
    b = _histograms(rng, np.full(20, 900), probs)
    c = _histograms(rng, np.full(20, 100), probs)
    ml = latency_looks(latency(), BOUNDS, c, b, pre, alpha=0.02, beta=0.1)
    cmp_ = ml.checks[-1]
    expected = comparison_bucket_bound(0.99, BOUNDS, pre)
    assert np.all(cmp_.detail["threshold"] == expected)
    assert float(cmp_.detail["thresholdChosenAtLook"]) == 0.0
    # the run's baseline does not move it: a much slower baseline, same threshold
    slow = _histograms(rng, np.full(20, 900), probs[::-1].copy())
    again = latency_looks(latency(), BOUNDS, c, slow, pre, alpha=0.02, beta=0.1).checks[-1]
    assert np.all(again.detail["threshold"] == expected)


def test_without_prerun_data_the_threshold_is_frozen_once_and_earlier_intervals_are_not_tested() -> None:
    rng = np.random.default_rng(8)
    probs = np.array([0.5, 0.3, 0.15, 0.04, 0.008, 0.002])
    b = _histograms(rng, np.full(20, 900), probs)  # 3,000 requests reached in the 4th interval
    c = _histograms(rng, np.full(20, 100), probs)
    c[:4, -1] += 80  # the canary is very slow before the threshold is chosen...
    ml = latency_looks(latency(slo=None), BOUNDS, c, b, None, alpha=0.02, beta=0.1)
    cmp_ = ml.checks[0]
    assert float(cmp_.detail["thresholdChosenAtLook"]) == 4.0
    assert np.all(cmp_.fail.log_e[:4] == 0.0)  # ...which those intervals cannot show
    assert np.all(ml.codes != FAIL)


def test_an_slo_breach_alone_holds_and_never_fails() -> None:
    # 0.8 % errors: beyond the 0.5 % SLO, under the 1 % rollback trigger, the baseline the same
    m = metric(slo={"max": 0.005}, compare={"tolerance": 0.5, "margin": 0.001})
    n = np.full(60, 2000.0)
    ml = ratio_looks(
        m, n * 0.008, n, n * 9 * 0.008, n * 9, np.array(400.0), np.array(50000.0),
        alpha=0.03, beta=0.1,
    )
    assert not np.any(ml.codes == FAIL)
    assert ml.held[-1] and ml.shared[-1]  # the baseline breaches it too: an incident on both
    assert ml.codes[-1] == INCONCLUSIVE
    # the canary alone beyond the SLO, the baseline within and the canary within the comparison's
    # allowance (0.45 % × 2 + 0.1 %): still a hold, not shared
    wide = metric(slo={"max": 0.005}, compare={"tolerance": 1.0, "margin": 0.001})
    alone = ratio_looks(
        wide, n * 0.008, n, n * 9 * 0.0045, n * 9, np.array(225.0), np.array(50000.0),
        alpha=0.03, beta=0.1,
    )
    assert not np.any(alone.codes == FAIL)
    assert alone.held.any() and not alone.shared.any()


def test_the_rollback_trigger_fails_whatever_the_baseline_does() -> None:
    # both versions at 3 %: the comparison sees nothing, the 1 % default trigger fails the canary
    m = metric(slo={"max": 0.005})
    n = np.full(20, 2000.0)
    ml = ratio_looks(
        m, n * 0.03, n, n * 9 * 0.03, n * 9, np.array(1500.0), np.array(50000.0),
        alpha=0.03, beta=0.1,
    )
    assert ml.codes[-1] == FAIL
    trigger = next(c for c in ml.checks if c.check == "trigger")
    assert float(trigger.detail["max"]) == 0.01
    # an explicit trigger beyond the incident's rate: no fail, a shared hold
    loose = metric(slo={"max": 0.005, "abortAbove": "5%"})
    held = ratio_looks(
        loose, n * 0.03, n, n * 9 * 0.03, n * 9, np.array(1500.0), np.array(50000.0),
        alpha=0.03, beta=0.1,
    )
    assert not np.any(held.codes == FAIL) and held.shared[-1]


def test_the_default_trigger_is_the_briefs_or_twice_a_looser_slo() -> None:
    assert metric(slo={"max": 0.005}).abort_bad_rate == 0.01
    assert metric(slo={"max": 0.02}).abort_bad_rate == 0.04
    assert latency().abort_seconds == 2.0  # twice the 1 s SLO
    assert latency(slo={"max": "500ms"}).abort_seconds == 1.0
    success = metric(name="ok", template="istio-success-rate", slo={"min": 0.995}, compare=None)
    assert success.abort_bad_rate == pytest.approx(0.01)
    with pytest.raises(Exception, match="abortBelow"):
        metric(name="ok", template="istio-success-rate", slo={"min": 0.995, "abortAbove": 0.99})
    with pytest.raises(Exception, match="beyond the SLO"):
        metric(slo={"max": 0.02, "abortAbove": 0.01})


def test_a_breach_shows_in_either_view_of_the_baseline() -> None:
    # the label takes the larger of the baseline's own evidence and its rates weighed by the
    # canary's requests: each view alone misses one of these incidents
    from analyzer.stats.ratio import breach_evidence

    level = math.log(20)
    # late incident at the canary's big step: the baseline's run-long rate stays under 1 %
    b_total = np.full(12, 10_000.0)
    b_bad = np.array([50.0] * 10 + [300.0, 300.0])
    c_total = np.array([10.0] * 10 + [5_000.0, 5_000.0])
    own = breach_evidence([b_bad], [b_total], 0.01)
    both = breach_evidence([b_bad, b_bad / b_total * c_total], [b_total, c_total], 0.01)
    assert own[-1] < level <= both[-1]
    # a baseline over the SLO throughout, while the canary takes a trickle
    b_bad = np.full(12, 200.0)
    c_total = np.full(12, 10.0)
    weighed = breach_evidence([b_bad / b_total * c_total], [c_total], 0.01)
    both = breach_evidence([b_bad, b_bad / b_total * c_total], [b_total, c_total], 0.01)
    assert weighed[-1] < level <= both[-1]

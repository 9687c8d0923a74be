"""Metric verdicts → analysis verdict: any failure fails, all-of passes by default, opt-in score."""

from __future__ import annotations

import pytest

from analyzer.judge import decide, judge, score
from analyzer.plan import Scoring
from analyzer.verdicts import MetricReport, MetricStatus, Verdict


def metric(
    name: str,
    status: MetricStatus,
    *,
    critical: bool = False,
    weight: float = 1.0,
    needed: int | None = None,
) -> MetricReport:
    return MetricReport(
        name=name,
        kind="ratio",
        status=status,
        reason=f"{name} is {status}",
        critical=critical,
        weight=weight,
        canary={},
        baseline={},
        checks=[],
        alpha=0.01,
        more_requests_needed=needed,
    )


P, F, U, N = MetricStatus.PASS, MetricStatus.FAIL, MetricStatus.INCONCLUSIVE, MetricStatus.NO_DATA


def test_all_metrics_pass_is_a_pass_with_full_score() -> None:
    j = judge([metric("a", P), metric("b", P)])
    assert j.verdict is Verdict.PASS and j.score == 100.0
    assert "All 2 metrics hold" in j.reason


def test_any_failing_metric_fails_by_default() -> None:
    j = judge([metric("a", P), metric("b", F), metric("c", U)])
    assert j.verdict is Verdict.FAIL
    assert j.reason.startswith("Metric b failed")
    assert j.score == pytest.approx(33.33)


def test_critical_failure_fails_even_in_score_mode_above_threshold() -> None:
    metrics = [metric("a", F, critical=True, weight=1), metric("b", P, weight=9)]
    j = judge(metrics, Scoring(mode="score", pass_threshold=75))
    assert j.verdict is Verdict.FAIL and j.score == 90.0
    assert j.reason.startswith("Critical metric a failed")


def test_no_data_is_never_a_pass() -> None:
    j = judge([metric("a", P), metric("b", N)])
    assert j.verdict is Verdict.INCONCLUSIVE
    assert "No data for b" in j.reason


def test_no_data_cannot_lift_a_score_to_pass() -> None:
    j = judge([metric("a", P), metric("b", N)], Scoring(mode="score", pass_threshold=75))
    assert j.verdict is Verdict.INCONCLUSIVE and j.score == 50.0


def test_score_mode_never_promotes_past_a_failed_metric() -> None:
    # a failure is evidence (alpha covers every metric): even a light one fails the analysis
    metrics = [metric("a", P, weight=4), metric("b", F, weight=1)]
    j = judge(metrics, Scoring(mode="score", pass_threshold=75))
    assert j.verdict is Verdict.FAIL and j.score == 80.0
    assert j.reason.startswith("Metric b failed")


def test_score_mode_passes_at_the_threshold_without_failures() -> None:
    metrics = [metric("a", P, weight=3), metric("b", U, weight=1)]
    assert judge(metrics, Scoring(mode="score", pass_threshold=75)).verdict is Verdict.PASS
    assert judge(metrics, Scoring(mode="score", pass_threshold=76)).verdict is Verdict.INCONCLUSIVE


def test_inconclusive_reason_says_how_many_more_requests() -> None:
    j = judge([metric("a", P), metric("b", U, needed=1200)])
    assert j.verdict is Verdict.INCONCLUSIVE
    assert "1,200 more canary requests" in j.reason


def test_inconclusive_reason_says_how_many_minutes_at_the_current_rate() -> None:
    b = metric("b", U, needed=1200)
    from dataclasses import replace

    j = judge([metric("a", P), replace(b, more_minutes_needed=7.6)])
    assert "1,200 more canary requests are needed (~8 min at the current rate)" in j.reason


def test_score_is_weighted() -> None:
    assert score([metric("a", P, weight=3), metric("b", F, weight=1)]) == 75.0
    assert score([]) == 0.0


@pytest.mark.parametrize(
    ("statuses", "critical", "expected"),
    [
        ([P, P], [False, False], Verdict.PASS),
        ([P, F], [False, False], Verdict.FAIL),
        ([U, F], [True, False], Verdict.FAIL),
        ([P, U], [False, False], Verdict.INCONCLUSIVE),
        ([P, N], [False, True], Verdict.INCONCLUSIVE),
        ([N, N], [False, False], Verdict.INCONCLUSIVE),
        ([F, P], [True, False], Verdict.FAIL),
        ([F, N], [False, False], Verdict.FAIL),
    ],
)
def test_decide_matches_judge(
    statuses: list[MetricStatus], critical: list[bool], expected: Verdict
) -> None:
    assert decide(statuses, critical, [1.0] * len(statuses)) is expected
    reports = [
        metric(f"m{i}", s, critical=c)
        for i, (s, c) in enumerate(zip(statuses, critical, strict=True))
    ]
    assert judge(reports).verdict is expected
    scored = decide(statuses, critical, [1.0] * len(statuses), Scoring(mode="score", pass_threshold=100))
    assert scored is expected  # at threshold 100 the score mode is the all-of mode

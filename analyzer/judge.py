"""Metric verdicts → one analysis verdict, a score and a reason a person can act on.

Rules (pure):
* Any failing metric fails the analysis, in every mode: the false-abort budget alpha covers every
  metric (`critical` only gives a metric a larger share of it, see `analyzer.budget`), so a
  failure is evidence, and a canary is never promoted past one.
* Default scoring mode `all` (the platform's promotion criteria are all-of): the analysis passes
  only when every metric passes; otherwise it is inconclusive. No data is never a pass.
* Opt-in mode `score` (Kayenta-style, peers.md §1.7): score = 100 × Σ weights of passing metrics /
  Σ all weights. With no failure, the analysis passes when the score reaches `pass_threshold`, and
  is otherwise inconclusive. Metrics without data count as not passing, so missing data can never
  lift a score.
* The score is always reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from analyzer.plan import Scoring
from analyzer.verdicts import AnalysisReport, Judgement, MetricReport, MetricStatus, Verdict


def score(metrics: Sequence[MetricReport]) -> float:
    total = sum(m.weight for m in metrics)
    if total <= 0:
        return 0.0
    passed = sum(m.weight for m in metrics if m.status is MetricStatus.PASS)
    return round(100.0 * passed / total, 2)


def decide(
    statuses: Sequence[MetricStatus],
    critical: Sequence[bool],
    weights: Sequence[float],
    scoring: Scoring | None = None,
) -> Verdict:
    """The verdict alone, from metric statuses: the rules of `judge` without the prose.

    Cheap enough to run at every look of thousands of simulated canaries (benchmarks).
    """
    scoring = scoring or Scoring()
    if not statuses:
        return Verdict.INCONCLUSIVE
    if len(critical) != len(statuses) or len(weights) != len(statuses):
        raise ValueError("one critical flag and one weight per metric status")
    if any(s is MetricStatus.FAIL for s in statuses):
        return Verdict.FAIL
    if scoring.mode == "all":
        if all(s is MetricStatus.PASS for s in statuses):
            return Verdict.PASS
        return Verdict.INCONCLUSIVE
    total = sum(weights) or 1.0
    value = (
        100.0
        * sum(w for s, w in zip(statuses, weights, strict=True) if s is MetricStatus.PASS)
        / total
    )
    if round(value, 2) >= scoring.pass_threshold:
        return Verdict.PASS
    return Verdict.INCONCLUSIVE


def judge(metrics: Sequence[MetricReport], scoring: Scoring | None = None) -> Judgement:
    scoring = scoring or Scoring()
    if not metrics:
        return Judgement(Verdict.INCONCLUSIVE, 0.0, "No metrics to judge.")
    verdict = decide(
        [m.status for m in metrics],
        [m.critical for m in metrics],
        [m.weight for m in metrics],
        scoring,
    )
    return Judgement(verdict, score(metrics), _reason(verdict, metrics, scoring))


def _reason(verdict: Verdict, metrics: Sequence[MetricReport], scoring: Scoring) -> str:
    value = score(metrics)
    failed = [m for m in metrics if m.status is MetricStatus.FAIL]
    critical = [m for m in failed if m.critical]
    if verdict is Verdict.FAIL:
        if critical:
            return f"Critical metric {critical[0].name} failed: {critical[0].reason}."
        others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return f"Metric {failed[0].name} failed{others}: {failed[0].reason}."
    if verdict is Verdict.PASS:
        if scoring.mode == "all":
            return _all_pass(metrics)
        return f"Score {value:g} reaches the pass threshold {scoring.pass_threshold:g}."
    if scoring.mode == "score":
        return f"Score {value:g} is below {scoring.pass_threshold:g} so far: " + _undecided(metrics)
    return _undecided(metrics)


def _all_pass(metrics: Sequence[MetricReport]) -> str:
    names = ", ".join(m.name for m in metrics)
    return f"All {len(metrics)} metrics hold ({names}): safe to promote."


def _undecided(metrics: Sequence[MetricReport]) -> str:
    no_data = [m for m in metrics if m.status is MetricStatus.NO_DATA]
    if no_data:
        return f"No data for {', '.join(m.name for m in no_data)}: check the selectors and that the canary receives traffic."
    held = [m for m in metrics if m.status is MetricStatus.INCONCLUSIVE and m.held]
    if held:
        shared = [m.name for m in held if m.shared_incident]
        alone = [m.name for m in held if not m.shared_incident]
        parts = []
        if shared:
            parts.append(f"incident on both versions: {', '.join(shared)} breach the SLO on the baseline too")
        if alone:
            parts.append(f"the canary alone breaches the SLO of {', '.join(alone)}")
        return "Hold: " + "; ".join(parts) + ". No rollback: the SLO is a promotion criterion; the rollout waits."
    open_metrics = [m for m in metrics if m.status is MetricStatus.INCONCLUSIVE]
    needed = [m.more_requests_needed for m in open_metrics if m.more_requests_needed]
    names = ", ".join(m.name for m in open_metrics)
    if needed and len(needed) == len(open_metrics):
        minutes = [m.more_minutes_needed for m in open_metrics if m.more_minutes_needed is not None]
        when = f" (~{max(minutes):.0f} min at the current rate)" if len(minutes) == len(needed) else ""
        return (
            f"Not enough evidence yet for {names}: keep watching; about {max(needed):,} more "
            f"canary requests are needed{when}."
        )
    return f"Not enough evidence yet for {names}: keep watching (or extend the step / raise canary traffic)."


def with_sticky_failures(
    scoring: Scoring, report: AnalysisReport, failed: dict[str, MetricReport], look: int
) -> AnalysisReport:
    """A metric that failed at any look stays failed: record new failures in `failed` (updated in
    place) and judge the look with every recorded failure in place of the fresh status."""
    for m in report.metrics:
        if m.status is MetricStatus.FAIL and m.name not in failed:
            failed[m.name] = replace(m, failed_at_look=look)
    if not failed:
        return report
    metrics = [failed.get(m.name, m) for m in report.metrics]
    verdict = judge(metrics, scoring)
    return replace(
        report, metrics=metrics, verdict=verdict.verdict, score=verdict.score, reason=verdict.reason
    )

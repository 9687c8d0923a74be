"""Metric verdicts → one analysis verdict, a score and a reason a person can act on.

Rules (pure):
* A failing **critical** metric fails the analysis at once, whatever the others say.
* Default scoring mode `all` (the platform's promotion criteria are all-of): any failing metric
  fails the analysis; the analysis passes only when every metric passes; otherwise it is
  inconclusive. No data is never a pass.
* Opt-in mode `score` (Kayenta-style, peers.md §1.7): score = 100 × Σ weights of passing metrics /
  Σ all weights. The analysis passes when the score reaches `pass_threshold`, fails when it can no
  longer reach it even if every undecided metric passed, and is otherwise inconclusive.
  Metrics without data count as not passing, so missing data can never lift a score.
* The score is always reported.
"""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.spec import ScoringSpec
from analyzer.verdicts import Judgement, MetricReport, MetricStatus, Verdict


def score(metrics: Sequence[MetricReport]) -> float:
    total = sum(m.weight for m in metrics)
    if total <= 0:
        return 0.0
    passed = sum(m.weight for m in metrics if m.status is MetricStatus.PASS)
    return round(100.0 * passed / total, 2)


def judge(metrics: Sequence[MetricReport], scoring: ScoringSpec | None = None) -> Judgement:
    scoring = scoring or ScoringSpec()
    if not metrics:
        return Judgement(Verdict.INCONCLUSIVE, 0.0, "No metrics to judge.")
    value = score(metrics)
    failed = [m for m in metrics if m.status is MetricStatus.FAIL]
    critical = [m for m in failed if m.critical]
    if critical:
        m = critical[0]
        return Judgement(Verdict.FAIL, value, f"Critical metric {m.name} failed: {m.reason}.")
    if scoring.mode == "all":
        if failed:
            m = failed[0]
            others = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            return Judgement(Verdict.FAIL, value, f"Metric {m.name} failed{others}: {m.reason}.")
        if all(m.status is MetricStatus.PASS for m in metrics):
            return Judgement(Verdict.PASS, value, _all_pass(metrics))
        return Judgement(Verdict.INCONCLUSIVE, value, _undecided(metrics))
    total_weight = sum(m.weight for m in metrics) or 1.0
    failed_weight = sum(m.weight for m in failed)
    best_possible = 100.0 * (1.0 - failed_weight / total_weight)
    if value >= scoring.pass_threshold:
        note = f" ({len(failed)} non-critical metric(s) failed)" if failed else ""
        return Judgement(
            Verdict.PASS,
            value,
            f"Score {value:g} reaches the pass threshold {scoring.pass_threshold:g}{note}.",
        )
    if best_possible < scoring.pass_threshold:
        names = ", ".join(m.name for m in failed)
        return Judgement(
            Verdict.FAIL,
            value,
            f"Score cannot reach the pass threshold {scoring.pass_threshold:g} "
            f"(at most {best_possible:.4g}) because {names} failed.",
        )
    return Judgement(
        Verdict.INCONCLUSIVE,
        value,
        f"Score {value:g} is below {scoring.pass_threshold:g} so far: " + _undecided(metrics),
    )


def _all_pass(metrics: Sequence[MetricReport]) -> str:
    names = ", ".join(m.name for m in metrics)
    return f"All {len(metrics)} metrics hold ({names}): safe to promote."


def _undecided(metrics: Sequence[MetricReport]) -> str:
    no_data = [m for m in metrics if m.status is MetricStatus.NO_DATA]
    if no_data:
        return f"No data for {', '.join(m.name for m in no_data)}: check the selectors and that the canary receives traffic."
    open_metrics = [m for m in metrics if m.status is MetricStatus.INCONCLUSIVE]
    needed = [m.more_requests_needed for m in open_metrics if m.more_requests_needed]
    names = ", ".join(m.name for m in open_metrics)
    if needed and len(needed) == len(open_metrics):
        return (
            f"Not enough evidence yet for {names}: keep watching; about {max(needed):,} more "
            "canary requests are needed."
        )
    return f"Not enough evidence yet for {names}: keep watching (or extend the step / raise canary traffic)."

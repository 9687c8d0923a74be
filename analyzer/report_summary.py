"""A run's report as a short text for a terminal (`verdict report ID` on a terminal, or
`--output text`): what was decided and why, the steps, each metric's last figures with their
units, and how to get the full report. Pure: the report's JSON document in, lines out."""

from __future__ import annotations

from typing import Any

from analyzer.render import short_figure


def _where(step: Any, weight: Any) -> str:
    parts = [
        f"step {step}" if step is not None else "",
        f"canary {weight} %" if weight is not None else "",
    ]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


def summary_lines(document: dict[str, Any]) -> list[str]:
    """The summary of a report document (`analyzer.report.report_document`)."""
    run = document["run"]
    decision = document.get("decision")
    lines = [
        f"run {run['id']}  analysis {run['analysis']}  {run['namespace']}/{run['rollout']}  "
        f"({run['way']}, {run['looks']} looks from {run['startedAt']})"
    ]
    headline = str(document.get("headline") or "no looks yet").upper()
    if decision is not None:
        at = f" at look {decision['look']}" if decision.get("look") is not None else ""
        where = _where(decision.get("step"), decision.get("weight"))
        lines.append(f"{headline}{at}{where}: {decision['reason']}")
    elif document.get("reason"):
        lines.append(f"{headline}: {document['reason']}")
    else:
        lines.append(headline)
    steps = [
        f"{s['step']} ({s['weight']} %) {s['verdict'] or '-'}"
        for s in document.get("steps") or []
        if s.get("step") is not None
    ]
    if steps:
        lines.append("steps: " + ", ".join(steps))
    metrics = document.get("metrics") or []
    if metrics:
        width = max(len(m["name"]) for m in metrics) + 2
        lines.append(f"{'metric':<{width}}{'verdict':<14}{'canary':<12}baseline")
        for m in metrics:
            final = m.get("final") or {}
            canary = short_figure(final.get("canary") or {})
            baseline = short_figure(final.get("baseline") or {})
            lines.append(f"{m['name']:<{width}}{m['verdict']:<14}{canary:<12}{baseline}")
    return lines


def full_report_hint(run_id: str) -> str:
    """How to get the full report (plots, every look) from a terminal."""
    return (
        f"The full report, with plots: `verdict report {run_id} --out report.html` "
        "(or --output md / json)"
    )

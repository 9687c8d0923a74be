"""The report as Markdown (for a pull request or a ticket; the plots are in the HTML)."""

from __future__ import annotations

from analyzer.report.model import RunReport
from analyzer.report.text import headline, show, step_name, when


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def report_markdown(report: RunReport) -> str:
    run = report.run
    lines = [
        f"# Verdict: {headline(report.headline)} — {report.rollout}",
        "",
        f"**{headline(report.headline)}**: {report.reason}",
        "",
        f"- run `{run.id}` ({report.way}), analysis `{run.key.analysis}`, canary `{run.key.canary_hash}`",
        f"- started {when(run.started_at)}, {run.looks} looks, last look {when(report.looks[-1].time if report.looks else None)}",
    ]
    if report.decision is not None:
        d = report.decision
        at = f" at {d.weight} % canary weight" if d.weight is not None else ""
        lines.append(f"- decided at look {d.look}{at}, {when(d.time)}")
    if report.steps:
        lines += [
            "",
            "## Steps",
            "",
            "| step | weight | started | ended | verdict |",
            "|---|---|---|---|---|",
        ]
        for s in report.steps:
            weight = "-" if s.weight is None else f"{s.weight} %"
            lines.append(
                f"| {step_name(s.step)} | {weight} | {when(s.started)} | {when(s.ended)} | {s.verdict or '-'} |"
            )
    lines += [
        "",
        "## Metrics",
        "",
        "| metric | verdict | canary | baseline | why |",
        "|---|---|---|---|---|",
    ]
    for m in report.metrics:
        last = m.points[-1] if m.points else None
        name = m.name + (" (critical)" if m.critical else "")
        lines.append(
            f"| {_cell(name)} | {m.verdict} | {show(last.canary if last else None, m.unit)} | "
            f"{show(last.baseline if last else None, m.unit)} | {_cell(m.reason)} |"
        )
    if report.looks:
        lines += [
            "",
            "## Looks",
            "",
            "| look | time | step | weight | verdict |",
            "|---|---|---|---|---|",
        ]
        for lk in report.looks:
            mark = " ← decision" if lk.look == report.deciding_look else ""
            weight = "-" if lk.weight is None else f"{lk.weight} %"
            lines.append(
                f"| {lk.look}{mark} | {when(lk.time)} | {lk.step or '-'} | {weight} | {lk.verdict} |"
            )
    lines += ["", f"Plots: `verdict report {run.id} --format html`.", ""]
    return "\n".join(lines)

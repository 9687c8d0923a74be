"""The report as Markdown (for a pull request or a ticket; the plots are in the HTML).

Every text that comes from a run (names, reasons, verdicts) is escaped: HTML is shown as text,
never as tags (`<script>`, `<img onerror>`), and Markdown's own syntax (links, images,
emphasis, table cells) is shown as the characters it is made of, so no name makes a link.
"""

from __future__ import annotations

import re

from analyzer.report.model import RunReport
from analyzer.report.text import headline, show, step_name, when

_HTML = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MARKDOWN = frozenset("\\`*_[]|~")
"""Escaped with a backslash: emphasis, code, links and images (no `[`, no link), table cells."""


def _text(value: object) -> str:
    """`value` as Markdown text that shows exactly its characters, on one line."""
    out = []
    for char in " ".join(str(value).splitlines()):
        if char in _HTML:
            out.append(_HTML[char])
        elif char in _MARKDOWN:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def _cell(value: object) -> str:
    return _text(value)


def _code(value: object) -> str:
    """`value` as a code span (nothing in it is read as Markdown or HTML), on one line."""
    text = " ".join(str(value).splitlines())
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def report_markdown(report: RunReport) -> str:
    run = report.run
    lines = [
        f"# Verdict: {_text(headline(report.headline))} — {_text(report.rollout)}",
        "",
        f"**{_text(headline(report.headline))}**: {_text(report.reason)}",
        "",
        f"- run {_code(run.id)} ({_text(report.way)}), analysis {_code(run.key.analysis)}, canary {_code(run.key.canary_hash)}",
        f"- started {when(run.started_at)}, {report.look_count} looks, last look {when(report.looks[-1].time if report.looks else None)}",
    ]
    if report.decision is not None:
        d = report.decision
        at = f" at {d.weight} % canary weight" if d.weight is not None else ""
        lines.append(f"- decided at look {d.look}{at}, {when(d.time)}")
    if report.manual:
        lines += [
            "",
            "## Manual actions",
            "",
            "| time | action | by | reason |",
            "|---|---|---|---|",
        ]
        for a in report.manual:
            lines.append(
                f"| {when(a.time)} | {_cell(a.action)} | {_cell(a.by)} | {_cell(a.reason or '-')} |"
            )
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
                f"| {step_name(s.step)} | {weight} | {when(s.started)} | {when(s.ended)} | {_cell(s.verdict or '-')} |"
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
            f"| {_cell(name)} | {_cell(m.verdict)} | {show(last.canary if last else None, m.unit)} | "
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
                f"| {lk.look}{mark} | {when(lk.time)} | {lk.step or '-'} | {weight} | {_cell(lk.verdict)} |"
            )
    lines += ["", f"Plots: {_code(f'verdict report {run.id} --format html')}.", ""]
    return "\n".join(lines)

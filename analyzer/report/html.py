"""The report as one self-contained HTML page: styles inline, plots as embedded PNGs."""

from __future__ import annotations

import base64
from html import escape

from analyzer.report.manual import manual_html
from analyzer.report.model import RunReport
from analyzer.report.plots import metric_png
from analyzer.report.text import headline, requests_shown, show, step_name, when

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:60rem;color:#222;padding:0 1rem}
h1{margin:.2rem 0}.verdict{display:inline-block;padding:.3rem .8rem;border-radius:.3rem;color:#fff;font-weight:700}
.good{background:#2e7d32}.bad{background:#c62828}.wait{background:#ef6c00}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left}
th{background:#f5f5f5}.deciding{background:#fff3cd}.reason{font-size:1.05rem}
section.metric{margin:1.5rem 0;border-top:1px solid #eee;padding-top:.5rem}img{max-width:100%}
.muted{color:#666;font-size:.85rem}
"""
_CLASS = {
    "promoted": "good",
    "pass": "good",
    "aborted": "bad",
    "fail": "bad",
    "rolled-back": "bad",
    "switched-back": "bad",
}


def report_html(report: RunReport) -> str:
    run = report.run
    outcome = report.headline
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Verdict {escape(headline(outcome))}: {escape(report.rollout)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f'<p class="muted">Verdict run report · run <code>{escape(run.id)}</code> · {escape(report.way)}</p>',
        f'<h1>{escape(report.rollout)} <span id="verdict" class="verdict {_CLASS.get(outcome, "wait")}"'
        f' data-outcome="{escape(outcome)}">{escape(headline(outcome))}</span></h1>',
        f'<p id="reason" class="reason">{escape(report.reason)}</p>',
        "<table>",
        _row("analysis", run.key.analysis),
        _row("canary", run.key.canary_hash),
        _row("started", when(run.started_at)),
        _row("looks", str(report.look_count)),
    ]
    if report.decision is not None:
        d = report.decision
        at = f" at {d.weight} % canary weight" if d.weight is not None else ""
        parts.append(_row("decided", f"{when(d.time)}, look {d.look}{at}"))
    parts.append("</table>")
    parts += manual_html(report.manual)
    if report.steps:
        parts.append(
            "<h2>Steps</h2><table><tr><th>step</th><th>canary weight</th><th>started</th><th>ended</th><th>verdict</th></tr>"
        )
        for s in report.steps:
            weight = "-" if s.weight is None else f"{s.weight} %"
            parts.append(
                f"<tr><td>{escape(step_name(s.step))}</td><td>{weight}</td><td>{when(s.started)}</td>"
                f"<td>{when(s.ended)}</td><td>{escape(s.verdict or '-')}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Metrics</h2>")
    for m in report.metrics:
        last = m.points[-1] if m.points else None
        png = base64.b64encode(metric_png(report, m)).decode("ascii")
        critical = " (critical)" if m.critical else ""
        parts += [
            f'<section class="metric" id="metric-{escape(m.name)}">',
            f"<h3>{escape(m.name)}{critical}: {escape(m.verdict)}</h3>",
            f"<p>{escape(m.reason)}</p>",
            "<table><tr><th></th><th>canary</th><th>baseline</th></tr>",
            f"<tr><th>{'latency' if m.unit == 'seconds' else 'rate'}</th>"
            f"<td>{show(last.canary if last else None, m.unit)}</td>"
            f"<td>{show(last.baseline if last else None, m.unit)}</td></tr>",
            f"<tr><th>requests</th><td>{_requests(m.final.get('canary'))}</td>"
            f"<td>{_requests(m.final.get('baseline'))}</td></tr></table>",
        ]
        for check in m.final.get("checks") or ():
            parts.append(
                f'<p class="muted">{escape(str(check.get("check")))} → {escape(str(check.get("outcome")))}: '
                f"{escape(str(check.get('reason')))}</p>"
            )
        if m.failed_at_look is not None:
            parts.append(f"<p>Failed at look {m.failed_at_look}.</p>")
        parts.append(
            f'<img class="plot" alt="{escape(m.name)}: canary vs baseline over time" '
            f'src="data:image/png;base64,{png}"></section>'
        )
    if report.looks:
        parts.append(
            "<h2>Looks</h2><table><tr><th>look</th><th>time</th><th>step</th><th>weight</th><th>verdict</th><th>score</th></tr>"
        )
        for lk in report.looks:
            deciding = lk.look == report.deciding_look
            cls = ' class="deciding" id="deciding-look"' if deciding else ""
            weight = "-" if lk.weight is None else f"{lk.weight} %"
            score = "-" if lk.score is None else f"{lk.score:g}"
            parts.append(
                f"<tr{cls}><td>{lk.look}{' (decision)' if deciding else ''}</td><td>{when(lk.time)}</td>"
                f"<td>{lk.step or '-'}</td><td>{weight}</td><td>{escape(lk.verdict)}</td><td>{score}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _row(name: str, value: str) -> str:
    return f"<tr><th>{escape(name)}</th><td>{escape(value)}</td></tr>"


def _requests(side: object) -> str:
    return requests_shown(side.get("requests") if isinstance(side, dict) else None)

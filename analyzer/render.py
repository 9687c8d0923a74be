"""Reports as JSON documents and as readable text tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from analyzer.verdicts import AnalysisReport, CheckReport, MetricReport

if TYPE_CHECKING:
    from rich.console import Console

EXIT_CODES = {"pass": 0, "fail": 1, "inconclusive": 3}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def check_json(check: CheckReport) -> dict[str, Any]:
    out: dict[str, Any] = {
        "check": check.check,
        "outcome": check.outcome,
        "reason": check.reason,
        "statistic": _clean(check.statistic),
    }
    if check.more_requests_needed is not None:
        out["moreRequestsNeeded"] = check.more_requests_needed
    return out


def metric_json(metric: MetricReport, *, compact: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": metric.name,
        "verdict": str(metric.status),
        "reason": metric.reason,
        "critical": metric.critical,
        "canary": _clean(metric.canary),
        "baseline": _clean(metric.baseline),
    }
    if not compact:
        out["kind"] = metric.kind
        out["weight"] = metric.weight
        out["alpha"] = metric.alpha
        out["checks"] = [check_json(c) for c in metric.checks]
    if metric.failed_at_look is not None:
        out["failedAtLook"] = metric.failed_at_look
    if metric.more_requests_needed is not None:
        out["moreRequestsNeeded"] = metric.more_requests_needed
    if metric.more_minutes_needed is not None:
        out["moreMinutesNeeded"] = metric.more_minutes_needed
    return out


def report_json(report: AnalysisReport) -> dict[str, Any]:
    return {
        "analysis": report.name,
        "verdict": str(report.verdict),
        "score": report.score,
        "reason": report.reason,
        "exitCode": EXIT_CODES[str(report.verdict)],
        "window": {
            "start": report.start.isoformat().replace("+00:00", "Z"),
            "end": report.end.isoformat().replace("+00:00", "Z"),
            "intervalSeconds": report.interval_seconds,
            "looks": report.looks,
        },
        "alpha": report.alpha,
        "metrics": [metric_json(m) for m in report.metrics],
    }


_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "no data": "magenta"}


def _figure(fig: dict[str, Any], kind: str) -> str:
    if not fig:
        return "no data"
    if kind == "histogram":
        seconds = fig.get("seconds")
        q = fig.get("quantile", 0.99)
        shown = "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"
        return f"p{q * 100:g} {shown} ({fig['requests']:,.0f} req)"
    rate = fig.get("rate")
    shown = "n/a" if rate is None else f"{rate * 100:.3f} %"
    return f"{shown} ({fig['bad']:,.0f}/{fig['requests']:,.0f})"


def print_report(report: AnalysisReport, console: Console) -> None:
    from rich.table import Table

    style = _STYLE[str(report.verdict)]
    console.print(
        f"[bold]{report.name}[/bold]  verdict [{style}]{str(report.verdict).upper()}[/{style}]  "
        f"score {report.score:g}  ({report.looks} looks of {report.interval_seconds:g}s, alpha {report.alpha:g})"
    )
    table = Table(show_lines=False)
    for column in ("metric", "verdict", "canary", "baseline", "why"):
        table.add_column(column, overflow="fold")
    for m in report.metrics:
        st = _STYLE[str(m.status)]
        name = m.name + (" (critical)" if m.critical else "")
        table.add_row(
            name,
            f"[{st}]{m.status}[/{st}]",
            _figure(m.canary, m.kind),
            _figure(m.baseline, m.kind),
            m.reason,
        )
    console.print(table)
    console.print(report.reason)

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
    if metric.held:
        out["held"] = True
        out["sharedIncident"] = metric.shared_incident
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
            "seconds": (report.end - report.start).total_seconds(),
            "intervalSeconds": report.interval_seconds,
            "looks": report.looks,
        },
        "alpha": report.alpha,
        "metrics": [metric_json(m) for m in report.metrics],
    }


_STYLE = {"pass": "green", "fail": "bold red", "inconclusive": "yellow", "no data": "magenta"}


def _shows_good(fig: dict[str, Any]) -> bool:
    """Whether a ratio's `rate` is its good share (a success rate: 1 - bad / requests)."""
    rate, bad, requests = fig.get("rate"), fig.get("bad"), fig.get("requests")
    if not isinstance(rate, float | int) or not isinstance(bad, float | int):
        return False
    if not isinstance(requests, float | int) or requests <= 0:
        return False
    good = 1.0 - bad / requests
    return abs(rate - good) < abs(rate - bad / requests)


def _figure(fig: dict[str, Any], kind: str) -> str:
    """A side's figure with the counts it comes from: `p99 283 ms (15,654 req)`, `0.115 %
    (18/15,654)` for an error rate, `99.885 % (15,636/15,654)` for a success rate (its
    counts are the good requests, not the failures)."""
    if not fig:
        return "no data"
    if kind == "histogram":
        seconds = fig.get("seconds")
        q = fig.get("quantile", 0.99)
        shown = "n/a" if seconds is None else f"{seconds * 1000:.0f} ms"
        return f"p{q * 100:g} {shown} ({fig['requests']:,.0f} req)"
    rate = fig.get("rate")
    shown = "n/a" if rate is None else f"{rate * 100:.3f} %"
    part = fig["requests"] - fig["bad"] if _shows_good(fig) else fig["bad"]
    return f"{shown} ({part:,.0f}/{fig['requests']:,.0f})"


def short_figure(fig: dict[str, Any]) -> str:
    """A side's headline figure with its unit, for a look line: `283 ms`, `0.115 %`;
    `n/a` when there is none."""
    seconds, rate = fig.get("seconds"), fig.get("rate")
    if isinstance(seconds, float | int) and math.isfinite(seconds):
        return f"{seconds * 1000:.3g} ms" if seconds < 1 else f"{seconds:.3g} s"
    if isinstance(rate, float | int) and math.isfinite(rate):
        percent = rate * 100
        return f"{percent:.2f} %" if percent >= 10 else f"{percent:.3g} %"
    return "n/a"


def span(seconds: float) -> str:
    """A length of time as people read it: `30 s`, `12 min`, `2 min 30 s`, `1 h 5 min`."""
    whole = round(seconds)
    if abs(seconds - whole) > 1e-6 or whole < 60:
        return f"{seconds:g} s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else "",
             f"{secs} s" if secs else ""]  # fmt: skip
    return " ".join(p for p in parts if p)


LOOK_LEGEND = "each look: metric verdict, canary vs baseline"


def look_lines(
    report: AnalysisReport,
    *,
    step: int,
    weight: int,
    look: int,
    steps: int | None = None,
    seconds_left: float | None = None,
    width: int = 80,
) -> list[str]:
    """One look as lines of at most `width` characters: the step, the canary's weight, the
    look and the verdict, then every metric's verdict with the canary's and the baseline's
    figures, units included (`latency-p99 pass 283 ms vs 260 ms`), as many to a line as fit
    (a metric is never cut across lines)."""
    of = f"/{steps}" if steps else ""
    left = "" if seconds_left is None else f"  {max(seconds_left, 0.0):.0f} s left"
    head = f"step {step}{of}  canary {weight} %  look {look}  {report.verdict!s}{left}"
    lines = [head]
    indent = "  "
    current = ""
    for m in report.metrics:
        chunk = f"{m.name} {m.status!s} {short_figure(m.canary)} vs {short_figure(m.baseline)}"
        joined = f"{current}   {chunk}" if current else chunk
        if current and len(indent) + len(joined) > width:
            lines.append(indent + current)
            current = chunk
        else:
            current = joined
    if current:
        lines.append(indent + current)
    return lines


def print_report(report: AnalysisReport, console: Console, *, reason: bool = True) -> None:
    """The report as a table; `reason`: end with the analysis' reason (left out when the
    caller prints a decision that carries it)."""
    from rich.table import Table

    style = _STYLE[str(report.verdict)]
    length = span((report.end - report.start).total_seconds())
    console.print(
        f"[bold]{report.name}[/bold]  verdict [{style}]{str(report.verdict).upper()}[/{style}]  "
        f"score {report.score:g}  ({report.looks} looks, one every "
        f"{span(report.interval_seconds)}, over {length}; alpha {report.alpha:g})",
        highlight=False,
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
    if reason:
        console.print(report.reason, highlight=False)

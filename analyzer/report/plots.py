"""One PNG per metric: canary vs baseline over the run's looks, with the decision bounds.

matplotlib is imported here only (lazily, with the non-interactive Agg backend): nothing else in
Verdict pays for it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from analyzer.report.model import Band, MetricHistory, MetricPoint, RunReport

_CANARY = "#d62728"
_BASELINE = "#1f77b4"
_BAND_COLOURS = ("#d62728", "#1f77b4", "#9467bd", "#8c564b")
_LIMIT_COLOURS = ("#2ca02c", "#ff7f0e", "#7f7f7f", "#17becf", "#bcbd22")


def metric_png(report: RunReport, metric: MetricHistory, *, dpi: int = 100) -> bytes:
    """The PNG of one metric (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    has_share = any(p.share_bands or p.share_limits or p.share_values for p in metric.points)
    has_evidence = any(p.evidence for p in metric.points)
    rows = 1 + has_share + has_evidence
    fig = Figure(figsize=(9.5, 1.2 + 2.2 * rows), dpi=dpi, layout="constrained")
    axes = list(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
    value_axis = axes[0]
    times = [p.time for p in metric.points]
    scale, unit_label = (1000.0, "ms") if metric.unit == "seconds" else (100.0, "%")
    _steps(value_axis, report, times)
    _series(value_axis, times, [p.canary for p in metric.points], scale, "canary", _CANARY)
    _series(value_axis, times, [p.baseline for p in metric.points], scale, "baseline", _BASELINE)
    _bands(value_axis, metric.points, times, scale, lambda p: p.bands)
    _limits(value_axis, metric.points, times, scale, lambda p: p.limits)
    _focus(
        value_axis,
        [
            v * scale
            for p in metric.points
            for v in (p.canary, p.baseline, *p.limits.values())
            if v is not None
        ],
    )
    value_axis.set_ylabel(
        f"{'p' + _quantile(metric) + ' ' if metric.unit == 'seconds' else ''}{unit_label}"
    )
    title = f"{metric.name}: {metric.verdict}" + (" (critical)" if metric.critical else "")
    value_axis.set_title(title, loc="left", fontsize=11)
    if has_share:
        share_axis = axes[1]
        _steps(share_axis, report, times)
        _bands(share_axis, metric.points, times, 100.0, lambda p: p.share_bands)
        _lines(share_axis, metric.points, times, 100.0, lambda p: p.share_values)
        _limits(share_axis, metric.points, times, 100.0, lambda p: p.share_limits)
        share_axis.set_ylabel("% slower than threshold")
    if has_evidence:
        evidence_axis = axes[-1]
        _steps(evidence_axis, report, times)
        _lines(evidence_axis, metric.points, times, 1.0, lambda p: p.evidence)
        _limits(evidence_axis, metric.points, times, 1.0, lambda p: p.evidence_limits)
        evidence_axis.set_yscale("log")
        evidence_axis.set_ylabel("e-value (decides at the line)")
    deciding = report.deciding_look
    for axis in axes:
        for p in metric.points:
            if p.look == deciding:
                axis.axvline(p.time, color="black", linestyle=":", linewidth=1.2)
        axis.grid(True, alpha=0.3)
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    axes[-1].set_xlabel(
        "time (UTC)" + (f"; dotted line: the deciding look {deciding}" if deciding else "")
    )
    if len(times) > 1:
        fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _focus(axis: Any, important: Sequence[float]) -> None:
    """Keep the values and the thresholds readable: early bounds are wide and would flatten
    them, so the axis stops at 2.5 times the largest of them (wider bands are cut)."""
    if not important:
        return
    top = max(important) * 2.5
    if top > 0 and axis.get_ylim()[1] > top:
        axis.set_ylim(bottom=min(0.0, min(important)), top=top)


def _quantile(metric: MetricHistory) -> str:
    q = (metric.final.get("canary") or {}).get("quantile")
    return f"{float(q) * 100:g}" if isinstance(q, int | float) else ""


def _steps(axis: Any, report: RunReport, times: Sequence[datetime]) -> None:
    for i, step in enumerate(report.steps):
        if step.step is None or step.started is None:
            continue
        end = step.ended or (times[-1] if times else step.started)
        axis.axvspan(step.started, end, color="#000000", alpha=0.04 + 0.03 * (i % 2), linewidth=0)
        if step.weight is not None:
            axis.annotate(
                f"{step.weight} %",
                xy=(step.started, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -10),
                textcoords="offset points",
                fontsize=7,
                color="#555555",
            )


def _series(
    axis: Any,
    times: Sequence[datetime],
    values: Sequence[float | None],
    scale: float,
    label: str,
    colour: str,
) -> None:
    xs = [t for t, v in zip(times, values, strict=True) if v is not None]
    ys = [v * scale for v in values if v is not None]
    if xs:
        axis.plot(xs, ys, marker="o", markersize=3, linewidth=1.6, color=colour, label=label)


def _by_label(
    points: Sequence[MetricPoint], times: Sequence[datetime], pick: Callable[[MetricPoint], Any]
) -> dict[str, tuple[list[datetime], list[Any]]]:
    """Each label `pick` gives (a mapping label -> value at a point), with its times and values,
    in the order the labels first appear."""
    series: dict[str, tuple[list[datetime], list[Any]]] = {}
    for t, p in zip(times, points, strict=True):
        for label, value in pick(p).items():
            xs, values = series.setdefault(label, ([], []))
            xs.append(t)
            values.append(value)
    return series


def _lines(
    axis: Any,
    points: Sequence[MetricPoint],
    times: Sequence[datetime],
    scale: float,
    pick: Callable[[MetricPoint], Mapping[str, float]],
) -> None:
    for i, (label, (xs, values)) in enumerate(_by_label(points, times, pick).items()):
        ys = [max(v * scale, 1e-12) for v in values]  # a log axis has no zero
        colour = _BAND_COLOURS[i % len(_BAND_COLOURS)]
        axis.plot(xs, ys, marker="o", markersize=3, linewidth=1.4, color=colour, label=label)


def _bands(
    axis: Any,
    points: Sequence[MetricPoint],
    times: Sequence[datetime],
    scale: float,
    pick: Callable[[MetricPoint], Sequence[Band]],
) -> None:
    series = _by_label(points, times, lambda p: {b.label: b for b in pick(p)})
    for i, (label, (xs, bands)) in enumerate(series.items()):
        lo = [b.lower * scale for b in bands]
        hi = [b.upper * scale for b in bands]
        colour = _BAND_COLOURS[i % len(_BAND_COLOURS)]
        if len(xs) == 1:
            middle, half = (lo[0] + hi[0]) / 2, (hi[0] - lo[0]) / 2
            axis.errorbar(xs, [middle], yerr=[[half]], color=colour, capsize=4, label=label)
        else:
            axis.fill_between(xs, lo, hi, step="post", color=colour, alpha=0.15, label=label)


def _limits(
    axis: Any,
    points: Sequence[MetricPoint],
    times: Sequence[datetime],
    scale: float,
    pick: Callable[[MetricPoint], Mapping[str, float]],
) -> None:
    for i, (label, (xs, values)) in enumerate(_by_label(points, times, pick).items()):
        ys = [v * scale for v in values]
        colour = _LIMIT_COLOURS[i % len(_LIMIT_COLOURS)]
        if len(xs) == 1:
            axis.axhline(ys[0], color=colour, linestyle="--", linewidth=1.1, label=label)
        else:
            axis.step(
                xs, ys, where="post", color=colour, linestyle="--", linewidth=1.1, label=label
            )

"""One PNG per metric: canary vs baseline over the run's looks, with the decision bounds.

matplotlib is imported here only (lazily, with the non-interactive Agg backend): nothing else in
Verdict pays for it.

Every panel draws at any traffic level: e-values are drawn as their base-10 logarithm on a
linear axis labelled in powers of ten (an e-value of 1e304, or the float cap, is the point
304 or 308.25, not a number matplotlib has to raise to a power), values beyond what an axis can
hold are left out, and the thresholds are always inside the axis. Each kind of line has one
colour and one place in the legend, whatever the order the checks recorded them in. A look at
which a metric neither passed nor failed is ringed ("not enough evidence yet"), and a run of a
single look gets a marker with its value and thresholds spanning the axis.
"""

from __future__ import annotations

import io
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from analyzer.report.model import Band, MetricHistory, MetricPoint, RunReport
from analyzer.report.text import show

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_CANARY = "#d62728"
_BASELINE = "#1f77b4"
_UNDECIDED = "#555555"
_UNDECIDED_LABEL = "not enough evidence yet (neither passed nor failed at this look)"
_LARGEST_DRAWN = 1e12
"""Values (in the axis' unit: %, ms) beyond this are not drawn: an axis cannot hold them."""
_E_FLOOR = -12.0
"""log10 of the smallest e-value drawn: smaller ones (and 0) are drawn at 10^-12."""
_E_CEILING = math.log10(sys.float_info.max)
"""log10 of the largest e-value there is (≈ 308.25): an e-value that overflowed is drawn here."""

# Each kind of line, by the start of its label: its place in the legend and its colours (one
# shade per check, in the order of the check names).
_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("canary share slower", ("#9467bd", "#c5b0d5")),
    ("canary bound", ("#d62728", "#ff9896")),
    ("canary", (_CANARY,)),
    ("baseline bound", ("#1f77b4", "#aec7e8")),
    ("baseline", (_BASELINE,)),
    (_UNDECIDED_LABEL, (_UNDECIDED,)),
    ("SLO max", ("#222222", "#666666")),
    ("SLO min", ("#222222", "#666666")),
    ("SLO: allowed share slower", ("#222222", "#666666")),
    ("latency threshold", ("#7f7f7f", "#bbbbbb")),
    ("fails above", ("#ff7f0e", "#8c564b")),
    ("passes below", ("#2ca02c", "#17becf")),
    ("passes at or below", ("#2ca02c", "#17becf")),
    ("evidence the canary is worse", ("#d62728", "#e377c2")),
    ("evidence the canary is no worse", ("#2ca02c", "#17becf")),
    ("fails at", ("#ff7f0e", "#8c564b")),
    ("passes at", ("#2ca02c", "#17becf")),
)
_OTHER = ("#7f7f7f", "#bcbd22", "#17becf")
_CHECKS = ("slo", "compare", "mann-whitney")
"""The checks' shades: the same check has the same shade in every report."""


def metric_png(report: RunReport, metric: MetricHistory, *, dpi: int = 100) -> bytes:
    """The PNG of one metric (see the module docstring)."""
    fig = metric_figure(report, metric, dpi=dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def metric_figure(report: RunReport, metric: MetricHistory, *, dpi: int = 100) -> Figure:
    """The figure of one metric: its value over the looks, the share of slow requests
    (latency metrics), and the sequential evidence (checks that report e-values)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    has_share = any(p.share_bands or p.share_limits or p.share_values for p in metric.points)
    has_evidence = any(p.evidence for p in metric.points)
    rows = 1 + has_share + has_evidence
    fig = Figure(figsize=(9.5, 1.2 + 2.2 * rows), dpi=dpi, layout="constrained")
    axes = list(fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0])
    points = metric.points
    times = [p.time for p in points]
    checks = _check_names(points)
    single = len(points) == 1
    value_axis = axes[0]
    scale, unit_label = (1000.0, "ms") if metric.unit == "seconds" else (100.0, "%")
    _steps(value_axis, report, times)
    drawn = _series(value_axis, times, [p.canary for p in points], scale, "canary", _CANARY)
    drawn += _series(value_axis, times, [p.baseline for p in points], scale, "baseline", _BASELINE)
    first = _scaled(points[0].canary, scale) if single else None
    if first is not None:
        _label_value(value_axis, times[0], first, show(points[0].canary, metric.unit))
    _undecided(value_axis, points, times, scale)
    _bands(value_axis, points, times, scale, lambda p: p.bands, checks)
    _limits(value_axis, points, times, scale, lambda p: p.limits, checks)
    if not drawn:
        what = "latency" if metric.unit == "seconds" else "rate"
        value_axis.text(
            0.5,
            0.5,
            f"no requests recorded: no {what} to draw",
            transform=value_axis.transAxes,
            ha="center",
            va="center",
            fontsize=9,
            color=_UNDECIDED,
        )
    _focus(
        value_axis,
        [
            y
            for p in points
            for v in (p.canary, p.baseline, *p.limits.values())
            if (y := _scaled(v, scale)) is not None
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
        _bands(share_axis, points, times, 100.0, lambda p: p.share_bands, checks)
        _lines(share_axis, points, times, lambda p: _scaled_map(p.share_values, 100.0), checks)
        _limits(share_axis, points, times, 100.0, lambda p: p.share_limits, checks)
        share_axis.set_ylabel("% slower than threshold")
    if has_evidence:
        _evidence(axes[-1], report, points, times, checks)
    deciding = report.deciding_look
    for axis in axes:
        for p in points:
            if p.look == deciding:
                axis.axvline(p.time, color="black", linestyle=":", linewidth=1.2)
        axis.grid(True, alpha=0.3)
        _legend(axis)
    axes[-1].set_xlabel(
        "time (UTC)" + (f"; dotted line: the deciding look {deciding}" if deciding else "")
    )
    if len(set(times)) > 1:
        fig.autofmt_xdate()
    return fig


def _evidence(
    axis: Any,
    report: RunReport,
    points: Sequence[MetricPoint],
    times: Sequence[datetime],
    checks: Sequence[str],
) -> None:
    """The e-values and their thresholds as log10 on a linear axis, ticks shown as 10^k."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    _steps(axis, report, times)
    ys = _lines(axis, points, times, lambda p: _log_map(p.evidence), checks)
    logs = [
        (t, y) for t, p in zip(times, points, strict=True) for y in _log_map(p.evidence).values()
    ]
    # a single look: every value beside its marker; else the largest e-value of the run
    if len(points) == 1:
        for t, y in logs:
            _label_value(axis, t, y, _e_label(y))
    elif logs:
        t, y = max(logs, key=lambda ty: (ty[1], ty[0]))  # the latest look with the largest
        _label_value(axis, t, y, _e_label(y), below=True)
    limits = _limits(axis, points, times, 1.0, lambda p: _log_map(p.evidence_limits), checks)
    shown = [*ys, *limits]
    if shown:
        low, high = min(shown), max(shown)
        pad = max(0.6, (high - low) * 0.08)
        axis.set_ylim(low - pad, high + pad)
    axis.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    axis.yaxis.set_major_formatter(FuncFormatter(_power_of_ten))
    axis.set_ylabel("e-value (decides at the line)")


def _e_label(log: float) -> str:
    """An e-value (given as its log10) as people read it: `3.2`, `0.05`, `10^304`."""
    if log <= _E_FLOOR:
        return "≤ $10^{-12}$"
    if abs(log) < 4:
        return f"{10.0**log:.3g}"
    return _power_of_ten(log)


def _power_of_ten(exponent: float, _position: int | None = None) -> str:
    """A tick (or value) of the evidence axis, a log10, as the power of ten it stands for; no
    tick beyond the smallest e-value drawn and the largest there can be."""
    if not math.isfinite(exponent) or not _E_FLOOR <= exponent <= _E_CEILING:
        return ""
    return f"$10^{{{round(exponent) or 0}}}$"


def _log_map(values: Mapping[str, float]) -> dict[str, float]:
    """e-values as log10, clipped to what the axis draws (0 and tiny ones at the floor)."""
    out: dict[str, float] = {}
    for label, value in values.items():
        if value != value:
            continue
        log = math.log10(value) if value > 0 else -math.inf
        out[label] = min(max(log, _E_FLOOR), _E_CEILING)
    return out


def _scaled(value: float | None, scale: float) -> float | None:
    """`value` in the axis' unit, or None when there is none or the axis cannot hold it."""
    if value is None:
        return None
    y = value * scale
    return y if math.isfinite(y) and abs(y) <= _LARGEST_DRAWN else None


def _scaled_map(values: Mapping[str, float], scale: float) -> dict[str, float]:
    return {k: y for k, v in values.items() if (y := _scaled(v, scale)) is not None}


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
    if isinstance(q, bool) or not isinstance(q, int | float) or not math.isfinite(q):
        return ""
    return f"{float(q) * 100:g}"


def _check_names(points: Sequence[MetricPoint]) -> list[str]:
    """The checks named in the labels (`... (check)`): the known ones in their order, then any
    other, sorted; each gets its shade."""
    names: set[str] = set()
    for p in points:
        labels = [*p.limits, *p.share_limits, *p.share_values, *p.evidence, *p.evidence_limits]
        labels += [b.label for b in (*p.bands, *p.share_bands)]
        names.update(_check_of(label) for label in labels)
    return [*_CHECKS, *sorted(names - set(_CHECKS))]


def _check_of(label: str) -> str:
    return label[label.rfind("(") + 1 : -1] if label.endswith(")") and "(" in label else ""


def _kind(label: str) -> int:
    """The label's place in `_KINDS` (the longest matching start), or len(_KINDS)."""
    best, length = len(_KINDS), -1
    for i, (start, _colours) in enumerate(_KINDS):
        if label.startswith(start) and len(start) > length:
            best, length = i, len(start)
    return best


def _colour(label: str, checks: Sequence[str]) -> str:
    kind = _kind(label)
    colours = _KINDS[kind][1] if kind < len(_KINDS) else _OTHER
    check = _check_of(label)
    shade = checks.index(check) if check in checks else 0
    return colours[shade % len(colours)]


def _legend(axis: Any) -> None:
    """The legend in one fixed order: by kind of line (`_KINDS`), then by label."""
    handles, labels = axis.get_legend_handles_labels()
    if not handles:
        return
    order = sorted(range(len(labels)), key=lambda i: (_kind(labels[i]), labels[i]))
    axis.legend(
        [handles[i] for i in order],
        [labels[i] for i in order],
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=7,
        frameon=False,
    )


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


def _marker_size(count: int) -> float:
    return 7.0 if count == 1 else 3.0


def _series(
    axis: Any,
    times: Sequence[datetime],
    values: Sequence[float | None],
    scale: float,
    label: str,
    colour: str,
) -> int:
    """Draws one side's values; returns how many points were drawn."""
    pairs = [
        (t, y) for t, v in zip(times, values, strict=True) if (y := _scaled(v, scale)) is not None
    ]
    if pairs:
        xs, ys = zip(*pairs, strict=True)
        axis.plot(
            xs,
            ys,
            marker="o",
            markersize=_marker_size(len(pairs)),
            linewidth=1.6,
            color=colour,
            label=label,
        )
    return len(pairs)


def _label_value(axis: Any, time: datetime, y: float, text: str, *, below: bool = False) -> None:
    """A value beside its marker (left of it, above or below)."""
    axis.annotate(
        text,
        xy=(time, y),
        xytext=(-8, -8 if below else 6),
        textcoords="offset points",
        ha="right",
        va="top" if below else "baseline",
        fontsize=8,
        color="#222222",
    )


def _undecided(
    axis: Any, points: Sequence[MetricPoint], times: Sequence[datetime], scale: float
) -> None:
    """Rings the canary at the looks where the metric neither passed nor failed, and says why
    at the first such look where the canary is already beyond a line it fails at."""
    ringed = [
        (t, p, y)
        for t, p in zip(times, points, strict=True)
        if p.verdict not in ("pass", "fail") and (y := _scaled(p.canary, scale)) is not None
    ]
    if not ringed:
        return
    axis.plot(
        [t for t, _p, _y in ringed],
        [y for _t, _p, y in ringed],
        linestyle="none",
        color=_UNDECIDED,
        marker="o",
        markersize=9,
        markerfacecolor="none",
        markeredgecolor=_UNDECIDED,
        markeredgewidth=1.1,
        label=_UNDECIDED_LABEL,
    )
    for t, p, y in ringed:
        side = _beyond_a_fail_line(p)
        if side:
            axis.annotate(
                "not enough evidence yet:\nneither passed nor failed",
                xy=(t, y),
                xytext=(12, -4 * side),  # toward the line, inside the axis
                textcoords="offset points",
                fontsize=7,
                color=_UNDECIDED,
                va="top" if side > 0 else "bottom",
                arrowprops={"arrowstyle": "-", "color": _UNDECIDED, "linewidth": 0.8},
            )
            return


def _beyond_a_fail_line(p: MetricPoint) -> int:
    """1: the canary is above a line it fails above; -1: below one it fails below; else 0."""
    if p.canary is None:
        return 0
    for label, limit in p.limits.items():
        if label.startswith(("fails above", "SLO max")) and p.canary > limit:
            return 1
        if label.startswith("SLO min") and p.canary < limit:
            return -1
    return 0


def _by_label(
    points: Sequence[MetricPoint], times: Sequence[datetime], pick: Callable[[MetricPoint], Any]
) -> dict[str, tuple[list[datetime], list[Any]]]:
    """Each label `pick` gives (a mapping label -> value at a point), with its times and values,
    sorted by kind of line and label (the order of the legend)."""
    series: dict[str, tuple[list[datetime], list[Any]]] = {}
    for t, p in zip(times, points, strict=True):
        for label, value in pick(p).items():
            xs, values = series.setdefault(label, ([], []))
            xs.append(t)
            values.append(value)
    return {k: series[k] for k in sorted(series, key=lambda k: (_kind(k), k))}


def _lines(
    axis: Any,
    points: Sequence[MetricPoint],
    times: Sequence[datetime],
    pick: Callable[[MetricPoint], Mapping[str, float]],
    checks: Sequence[str],
) -> list[float]:
    """Draws each label's values (already in the axis' unit); returns the values drawn."""
    drawn: list[float] = []
    for label, (xs, ys) in _by_label(points, times, pick).items():
        axis.plot(
            xs,
            ys,
            marker="o",
            markersize=_marker_size(len(xs)),
            linewidth=1.4,
            color=_colour(label, checks),
            label=label,
        )
        drawn += ys
    return drawn


def _bands(
    axis: Any,
    points: Sequence[MetricPoint],
    times: Sequence[datetime],
    scale: float,
    pick: Callable[[MetricPoint], Sequence[Band]],
    checks: Sequence[str],
) -> None:
    def scaled(p: MetricPoint) -> dict[str, tuple[float, float]]:
        out = {}
        for b in pick(p):
            lo, hi = _scaled(b.lower, scale), _scaled(b.upper, scale)
            if lo is not None and hi is not None:
                out[b.label] = (min(lo, hi), max(lo, hi))
        return out

    for label, (xs, bounds) in _by_label(points, times, scaled).items():
        lo = [b[0] for b in bounds]
        hi = [b[1] for b in bounds]
        colour = _colour(label, checks)
        if len(xs) == 1:
            middle, half = lo[0] / 2 + hi[0] / 2, hi[0] / 2 - lo[0] / 2
            axis.errorbar(xs, [middle], yerr=[[half]], color=colour, capsize=4, label=label)
        else:
            axis.fill_between(xs, lo, hi, step="post", color=colour, alpha=0.15, label=label)


def _limits(
    axis: Any,
    points: Sequence[MetricPoint],
    times: Sequence[datetime],
    scale: float,
    pick: Callable[[MetricPoint], Mapping[str, float]],
    checks: Sequence[str],
) -> list[float]:
    """Draws each threshold (a line across the axis when there is one look, else a step per
    look); returns the values drawn."""
    drawn: list[float] = []
    series = _by_label(points, times, lambda p: _scaled_map(pick(p), scale))
    for label, (xs, ys) in series.items():
        colour = _colour(label, checks)
        if len(xs) == 1:
            axis.axhline(ys[0], color=colour, linestyle="--", linewidth=1.1, label=label)
        else:
            axis.step(
                xs, ys, where="post", color=colour, linestyle="--", linewidth=1.1, label=label
            )
        drawn += ys
    return drawn

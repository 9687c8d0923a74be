"""Markdown summary and plots of the accuracy benchmark (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from benchmarks.accuracy import ALPHA, _names, cell, detection, minutes, rate_cell
from benchmarks.judges import JUDGES

COLORS = {
    "verdict": "#1b7837",
    "argo-threshold": "#d95f02",
    "flagger-threshold": "#e6ab02",
    "kayenta": "#7570b3",
    "naive-z": "#999999",
}


def _bars(result: dict[str, Any], scenarios: list[str], value: Any, ylabel: str, title: str,
          path: Path, *, alpha_line: bool = False, log: bool = False, errors: Any = None) -> None:
    rpms = result["traffic_rpm"]
    fig, axes = plt.subplots(len(rpms), 1, figsize=(12, 3.2 * len(rpms)), sharex=True)
    width = 0.8 / len(JUDGES)
    x = np.arange(len(scenarios))
    for ax, rpm in zip(np.atleast_1d(axes), rpms, strict=True):
        for i, judge in enumerate(JUDGES):
            cells = [cell(result, s, rpm, judge) for s in scenarios]
            ys = [value(c) for c in cells]
            yerr = np.array([errors(c) for c in cells], dtype=np.float64).T if errors else None
            ax.bar(x + (i - (len(JUDGES) - 1) / 2) * width, [np.nan if y is None else y for y in ys],
                   width, label=judge, color=COLORS[judge], yerr=yerr, capsize=2)
        if alpha_line:
            ax.axhline(100 * ALPHA, color="black", linestyle="--", linewidth=1, label="α = 5 %")
        if log:
            ax.set_yscale("symlog", linthresh=1)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} — {rpm} canary rpm (at the 10 % step)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=6, fontsize=8, loc="upper center")
    np.atleast_1d(axes)[-1].set_xticks(x, scenarios, rotation=20, ha="right")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plots(result: dict[str, Any], out: Path) -> list[str]:
    nulls, regressions = _names(result, True), _names(result, False)
    _bars(result, nulls, lambda c: 100 * c["aborted"]["rate"], "false aborts, %",
          "False-abort rate (whole canary) in null scenarios", out / "accuracy_false_aborts.png",
          alpha_line=True, errors=lambda c: 196 * c["aborted"]["se"])
    _bars(result, regressions, lambda c: 100 * detection(c)["rate"], "detected, %",
          "Detection rate (aborted) under regressions", out / "accuracy_detection.png",
          errors=lambda c: 196 * detection(c)["se"])
    _bars(result, regressions, lambda c: c["time_to_abort_minutes"]["median"],
          "median minutes to abort", "Median time to abort (aborted runs; bars = p90)",
          out / "accuracy_time_to_abort.png",
          errors=lambda c: (0.0, max(0.0, (c["time_to_abort_minutes"]["p90"] or 0) - (c["time_to_abort_minutes"]["median"] or 0))))
    _bars(result, regressions, lambda c: c["excess_bad_requests_until_decision"]["mean"],
          "excess bad requests (mean)", "Excess bad requests the canary served until the decision",
          out / "accuracy_excess_bad_requests.png", log=True)
    _outcomes(result, out / "accuracy_verdict_outcomes.png")
    return [
        "accuracy_false_aborts.png",
        "accuracy_detection.png",
        "accuracy_time_to_abort.png",
        "accuracy_excess_bad_requests.png",
        "accuracy_verdict_outcomes.png",
    ]


def _outcomes(result: dict[str, Any], path: Path) -> None:
    scenarios = [s["name"] for s in result["scenarios"]]
    rpms = result["traffic_rpm"]
    fig, axes = plt.subplots(1, len(rpms), figsize=(14, 5), sharey=True)
    for ax, rpm in zip(np.atleast_1d(axes), rpms, strict=True):
        cells = [cell(result, s, rpm, "verdict") for s in scenarios]
        left = np.zeros(len(scenarios))
        for key, color in (("promoted", "#1b7837"), ("paused", "#bababa"), ("aborted", "#b2182b")):
            v = np.array([100 * c[key]["rate"] for c in cells])
            ax.barh(scenarios, v, left=left, color=color, label=key)
            left += v
        ax.set_title(f"Verdict outcomes — {rpm} rpm", fontsize=10)
        ax.set_xlabel("% of runs")
        ax.invert_yaxis()
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(result: dict[str, Any], images: list[str], command: str) -> str:
    rpms = result["traffic_rpm"]
    nulls, regressions = _names(result, True), _names(result, False)
    runs = result["runs_per_cell"]
    lines = [
        "# Accuracy benchmark — results",
        "",
        f"Command: `{command}` · wall time {result['wall_seconds']:.0f} s on {result['workers']} "
        f"workers · seed {result['seed']} · runs per cell: {runs['null']} (null), "
        f"{runs['regression']} (regression)" + (" · **quick run**" if result["quick"] else ""),
        "",
        "rpm = canary requests per minute at the 10 % step (the service serves 10 × rpm; the canary "
        "gets 5 %, 10 %, 50 %). One look per 30 s interval, 10 looks per step; fixed-rule judges "
        "promote after the 30th look, Verdict may wait up to 40 more looks, then pauses. "
        "See benchmarks/README.md for the scenarios and judges.",
        "",
        "## False-abort rate in null scenarios (%, ± Monte-Carlo SE)",
        "",
        "| scenario | rpm | " + " | ".join(JUDGES) + " |",
        "|---|---|" + "---|" * len(JUDGES),
    ]
    for s in nulls:
        for rpm in rpms:
            row = " | ".join(rate_cell(cell(result, s, rpm, j)["aborted"]) for j in JUDGES)
            lines.append(f"| {s} | {rpm} | {row} |")
    lines += [
        "",
        "## Regressions: detection rate (%) / median minutes to abort (p90)",
        "",
        "Times for `errors-2%-mid-canary` are from the onset; aborts before the onset are not "
        "detections (they are listed in results/accuracy.json as `aborted_before_onset`).",
        "",
        "| scenario | rpm | " + " | ".join(JUDGES) + " |",
        "|---|---|" + "---|" * len(JUDGES),
    ]
    for s in regressions:
        for rpm in rpms:
            texts = []
            for j in JUDGES:
                c = cell(result, s, rpm, j)
                t = c["time_to_abort_minutes"]
                texts.append(f"{100 * detection(c)['rate']:.1f} / {minutes(t['median'])} ({minutes(t['p90'])})")
            lines.append(f"| {s} | {rpm} | " + " | ".join(texts) + " |")
    lines += [
        "",
        "## Regressions: false-promote rate (%) and excess bad requests served (mean, until the decision)",
        "",
        "| scenario | rpm | " + " | ".join(JUDGES) + " |",
        "|---|---|" + "---|" * len(JUDGES),
    ]
    for s in regressions:
        for rpm in rpms:
            texts = []
            for j in JUDGES:
                c = cell(result, s, rpm, j)
                texts.append(f"{100 * c['promoted']['rate']:.1f} · {c['excess_bad_requests_until_decision']['mean']:.1f}")
            lines.append(f"| {s} | {rpm} | " + " | ".join(texts) + " |")
    lines += [
        "",
        "## Verdict: promoted / aborted / paused (%) and median minutes to the decision",
        "",
        "| scenario | " + " | ".join(f"{rpm} rpm" for rpm in rpms) + " |",
        "|---|" + "---|" * len(rpms),
    ]
    for s in nulls + regressions:
        texts = []
        for rpm in rpms:
            c = cell(result, s, rpm, "verdict")
            texts.append(
                f"{100 * c['promoted']['rate']:.1f} / {100 * c['aborted']['rate']:.1f} / "
                f"{100 * c['paused']['rate']:.1f} · {c['decision_minutes_median']:.1f} min"
            )
        lines.append(f"| {s} | " + " | ".join(texts) + " |")
    t = result["targets"]
    fa = t["false_abort_at_most_alpha"]
    fast = t["fastest_among_qualified"]
    lines += [
        "",
        "## Targets",
        "",
        f"1. Verdict's false-abort rate ≤ α = {fa['alpha']:.0%} in every null scenario and traffic: "
        f"**{'met' if fa['met'] else 'NOT met'}**"
        + ("" if fa["met"] else " — over in: " + ", ".join(
            f"{o['scenario']} @ {o['rpm']} rpm ({rate_cell(o['false_abort'])} %)" for o in fa["cells_over"]
        )),
        "2. Shortest time to abort among the judges whose false-abort rate is ≤ α in every A/A "
        f"scenario at that traffic (censored median: a run never aborted counts as never): "
        f"**{'met' if fast['met'] else 'NOT met'}** — Verdict fastest in {fast['cells_fastest']} cells, "
        f"slower in {fast['cells_slower']}, and in {fast['cells_none_detects']} cells no qualified judge "
        "aborts most runs within the canary (censored median = never).",
        "",
        "Qualified judges by traffic: " + "; ".join(
            f"{rpm} rpm: {', '.join(v) or 'none'}" for rpm, v in fast["qualified_judges_by_rpm"].items()
        ) + ".",
        "",
        "| regression | rpm | censored median minutes (qualified judges) | Verdict fastest |",
        "|---|---|---|---|",
    ]
    for r in fast["races"]:
        times = ", ".join(f"{k}: {minutes(v) if v is not None else 'never'}" for k, v in r["censored_median_minutes"].items())
        lines.append(f"| {r['scenario']} | {r['rpm']} | {times} | {r['verdict_fastest']} |")
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"

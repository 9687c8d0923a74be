"""Markdown summary and plots of the accuracy benchmark (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from benchmarks.accuracy import (
    ALPHA,
    _names,
    cell,
    detection,
    held_note,
    held_text,
    minutes,
    promotion_text,
    rate_cell,
)

COLORS = {
    "verdict": "#1b7837",
    "argo-threshold": "#d95f02",
    "argo-threshold-tight": "#fdb863",
    "flagger-threshold": "#b8860b",
    "flagger-threshold-tight": "#f0e442",
    "kayenta": "#7570b3",
    "kayenta-tight": "#c2a5cf",
    "naive-z": "#999999",
}


def _bars(result: dict[str, Any], scenarios: list[str], value: Any, ylabel: str, title: str,
          path: Path, *, alpha_line: bool = False, log: bool = False, errors: Any = None) -> None:
    rpms = result["traffic_rpm"]
    judges = list(result["judges"])
    fig, axes = plt.subplots(len(rpms), 1, figsize=(14, 3.2 * len(rpms)), sharex=True)
    width = 0.8 / len(judges)
    x = np.arange(len(scenarios))
    for ax, rpm in zip(np.atleast_1d(axes), rpms, strict=True):
        for i, judge in enumerate(judges):
            cells = [cell(result, s, rpm, judge) for s in scenarios]
            ys = [value(c) for c in cells]
            yerr = np.array([errors(c) for c in cells], dtype=np.float64).T if errors else None
            ax.bar(x + (i - (len(judges) - 1) / 2) * width, [np.nan if y is None else y for y in ys],
                   width, label=judge, color=COLORS.get(judge, "#000000"), yerr=yerr, capsize=2)
        if alpha_line:
            ax.axhline(100 * ALPHA, color="black", linestyle="--", linewidth=1, label="α = 5 %")
        if log:
            ax.set_yscale("symlog", linthresh=1)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title} — {rpm} canary rpm (at the 10 % step)", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=5, fontsize=8, loc="upper center")
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
    must_not = [s["name"] for s in result["scenarios"] if s.get("must_not_promote")]
    _bars(result, nulls + must_not, lambda c: 100 * c["promoted"]["rate"], "promoted, %",
          "Promoted: healthy canaries (left) and must-not-promote regressions (right)",
          out / "accuracy_promoted.png", errors=lambda c: 196 * c["promoted"]["se"])
    _outcomes(result, out / "accuracy_verdict_outcomes.png")
    return [
        "accuracy_false_aborts.png",
        "accuracy_detection.png",
        "accuracy_time_to_abort.png",
        "accuracy_promoted.png",
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
        for key, color in (
            ("promoted", "#1b7837"),
            ("held", "#f4a582"),
            ("paused", "#bababa"),
            ("aborted", "#b2182b"),
        ):
            if key == "held":
                v = np.array([100 * c.get("held", {"rate": 0.0})["rate"] for c in cells])
                label = "paused, held by an SLO breach"
            elif key == "paused":
                v = np.array([100 * (c["paused"]["rate"] - c.get("held", {"rate": 0.0})["rate"]) for c in cells])
                label = "paused, undecided"
            else:
                v = np.array([100 * c[key]["rate"] for c in cells])
                label = key
            ax.barh(scenarios, v, left=left, color=color, label=label)
            left += v
        ax.set_title(f"Verdict outcomes — {rpm} rpm", fontsize=10)
        ax.set_xlabel("% of runs")
        ax.invert_yaxis()
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    fig.legend(handles, labels, ncol=4, fontsize=8, loc="upper center")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(result: dict[str, Any], scenarios: list[str], text: Any) -> list[str]:
    judges = list(result["judges"])
    lines = ["| scenario | rpm | " + " | ".join(judges) + " |", "|---|---|" + "---|" * len(judges)]
    for s in scenarios:
        for rpm in result["traffic_rpm"]:
            lines.append(f"| {s} | {rpm} | " + " | ".join(text(cell(result, s, rpm, j)) for j in judges) + " |")
    return lines


def markdown(result: dict[str, Any], images: list[str], command: str) -> str:
    rpms = result["traffic_rpm"]
    nulls, regressions = _names(result, True), _names(result, False)
    must_not = [s["name"] for s in result["scenarios"] if s.get("must_not_promote")]
    runs = result["runs_per_cell"]
    lines = [
        "# Accuracy benchmark — results",
        "",
        f"Command: `{command}` · wall time {result['wall_seconds']:.0f} s on {result['workers']} "
        f"workers · seed {result['seed']} · runs per cell: {runs['null']} (null), "
        f"{runs['regression']} (regression)" + (" · **quick run**" if result["quick"] else ""),
        "",
        "rpm = canary requests per minute at the 10 % step (the service serves 10 × rpm; the canary "
        "gets 5 %, 10 %, 50 %). 30 s intervals, 10 per step, 70 in all (35 minutes): every judge "
        "sees the same horizon and decides on its own schedule within it; a peer that never fails "
        "promotes at the end of the horizon, Verdict follows its step rules (promoted, aborted, or "
        "paused at the horizon). See benchmarks/README.md for the scenarios and judges.",
        "",
        "## Targets (Verdict)",
        "",
        f"{result['targets']['met']} of {result['targets']['of']} met.",
        "",
        "| figure | required | measured | |",
        "|---|---|---|---|",
    ]
    for t in result["targets"]["items"]:
        lines.append(f"| {t['figure']} | {t['required']} | {t['measured']} | {'met' if t['met'] else '**NOT met**'} |")
    lines += [
        "",
        "## False-abort rate in null scenarios (%, ± Monte-Carlo SE)",
        "",
        "`aa-shared-incident` (5 % errors in both versions, beyond the 2 % rollback trigger) is a "
        "null for the comparison only: aborting it is \"roll back first\" by design. "
        "`aa-shared-incident-under-trigger` (1.5 %: over the 1 % SLO, under the trigger) must be "
        "held, not aborted. Verdict's cells add `held` (% of runs paused at the end while a metric "
        "is held by an SLO breach) where there is any: a held run ends paused, never aborted.",
        "",
        *_table(result, nulls, lambda c: rate_cell(c["aborted"]) + held_note(c)),
        "",
        "## Regressions: detection rate (%) / median minutes to abort (p90)",
        "",
        "Times for `errors-2%-mid-canary` are from the onset; aborts before the onset are not "
        "detections (they are listed in results/accuracy.json as `aborted_before_onset`).",
        "",
        *_table(
            result,
            regressions,
            lambda c: f"{100 * detection(c)['rate']:.1f} / {minutes(c['time_to_abort_minutes']['median'])} "
            f"({minutes(c['time_to_abort_minutes']['p90'])})",
        ),
        "",
        "## Promoted (%) / median minutes to promote: null scenarios, then the must-not-promote "
        "regressions (false promotes)",
        "",
        *_table(result, nulls + must_not, lambda c: promotion_text(c) + held_note(c)),
        "",
        "## Regressions: promoted (%) and excess bad requests served (mean, until the decision)",
        "",
        *_table(
            result,
            regressions,
            lambda c: f"{100 * c['promoted']['rate']:.1f} · {c['excess_bad_requests_until_decision']['mean']:.1f}",
        ),
        "",
        "## Verdict: promoted / aborted / paused (%) and median minutes to the decision",
        "",
        "Paused runs held by an SLO breach at the end in brackets (`held N`, `shared M`: the "
        "baseline breaches the SLO too, an incident on both versions).",
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
                f"{100 * c['paused']['rate']:.1f}{held_text(c)} · {c['decision_minutes_median']:.1f} min"
            )
        lines.append(f"| {s} | " + " | ".join(texts) + " |")
    lines += [
        "",
        "## Verdict's holds (%): held at the end (paused) / of which shared with the baseline / "
        "held at any look before the decision / held at the end of an earlier step",
        "",
        "A metric is held when the canary is shown beyond its SLO (a promotion criterion) and not "
        "beyond its rollback trigger. The canary loop (strategies/canary.py) lengthens a step that "
        "ends held by up to one more step and pauses there for a person if the hold does not clear; "
        "the replay's timeline is fixed (the next step's weight comes on time), so runs held at the "
        "end of step 1 or 2 (the last column) are replayed approximately. Scenarios without any "
        "hold are left out.",
        "",
        "| scenario | " + " | ".join(f"{rpm} rpm" for rpm in rpms) + " |",
        "|---|" + "---|" * len(rpms),
    ]
    for s in nulls + regressions:
        cs = [cell(result, s, rpm, "verdict") for rpm in rpms]
        keys = ("held", "held_shared", "held_any_look", "held_at_earlier_step_end")
        if not any(c.get(k, {"rate": 0.0})["rate"] > 0 for c in cs for k in keys):
            continue
        texts = [
            " / ".join(f"{100 * c.get(k, {'rate': 0.0})['rate']:.1f}" for k in keys) for c in cs
        ]
        lines.append(f"| {s} | " + " | ".join(texts) + " |")
    race = result["targets"]["races"]
    lines += [
        "",
        "## Races: Verdict against the judges that keep A/A false aborts ≤ "
        f"{ALPHA:.0%} (censored median minutes to abort; a run never aborted counts as never)",
        "",
        "Qualified judges by traffic: " + "; ".join(
            f"{rpm} rpm: {', '.join(v) or 'none'}" for rpm, v in race["qualified_judges_by_rpm"].items()
        ) + ".",
        "",
        "Qualifying A/A scenarios (false aborts ≤ 5 % in each): "
        + ", ".join(race.get("qualifying_aa_scenarios", [])) + " (not the shared incidents: the peers' "
        "1 % thresholds are Verdict's SLO, not its rollback trigger). **Detects more and sooner**: "
        "a qualified judge whose detection rate is above Verdict's by more than twice their "
        "combined SE and whose censored median is no later (two judges that abort fewer than half "
        f"the runs are level): {race.get('cells_more_and_sooner', '?')} of {race.get('cells', '?')} cells.",
        "",
        "| regression | rpm | censored median minutes | detected % | Verdict at least as fast | "
        "detects more and sooner |",
        "|---|---|---|---|---|---|",
    ]
    for r in race["races"]:
        times = ", ".join(f"{k}: {minutes(v) if v is not None else 'never'}" for k, v in r["censored_median_minutes"].items())
        found = ", ".join(f"{k}: {100 * v:.1f}" for k, v in r.get("detected", {}).items())
        more = ", ".join(r.get("detect_more_and_sooner", [])) or "—"
        lines.append(
            f"| {r['scenario']} | {r['rpm']} | {times} | {found} | {r['verdict_at_least_as_fast']} | {more} |"
        )
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"

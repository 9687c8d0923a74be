"""Markdown summary and plots of the cost benchmark (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plots(result: dict[str, Any], out: Path) -> list[str]:
    s = result["scaling"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    looks = [int(n) for n in s["by_looks"]]
    axes[0].plot(looks, [1e3 * r["seconds_per_look"] for r in s["by_looks"].values()], "o-",
                 label="judge_observations(looks=[k]) on k intervals")
    axes[0].plot(looks, [1e3 * r["vectorised_seconds_per_look"] for r in s["by_looks"].values()], "s-",
                 label="vectorised metric_looks + decide")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel("looks in the run")
    axes[0].set_ylabel("ms per look")
    axes[0].set_title("Time per look as a run grows", fontsize=10)
    axes[0].legend(fontsize=8)
    runs = [int(n) for n in s["by_runs"]]
    axes[1].plot(runs, [1e3 * r["seconds_per_look"] for r in s["by_runs"].values()], "o-")
    axes[1].set_xscale("log")
    axes[1].set_ylim(bottom=0)
    axes[1].set_xlabel("concurrent runs (one look each)")
    axes[1].set_ylabel("ms per look")
    axes[1].set_title("Time per look with many runs", fontsize=10)
    p = result["prometheus"]["by_series_per_version"]
    pods = [int(n) for n in p]
    axes[2].plot(pods, [r["verdict_seconds"] * 1e3 for r in p.values()], "o-", label="run_analysis (Verdict)")
    axes[2].plot(pods, [r["raw_seconds"] * 1e3 for r in p.values()], "s-", label="the same instant queries, requests only")
    axes[2].plot(pods, [r["raw_range_seconds"] * 1e3 for r in p.values()], "^-", label="one range query per counter")
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("series (pods) per version")
    axes[2].set_ylabel("ms per analysis")
    axes[2].set_title("One analysis against a real Prometheus", fontsize=10)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "cost_scaling.png", dpi=110)
    plt.close(fig)
    return ["cost_scaling.png"]


def markdown(result: dict[str, Any], images: list[str], command: str) -> str:
    t = result["throughput"]
    m = result["memory"]
    s = result["scaling"]
    p = result["prometheus"]
    lines = [
        "# Cost benchmark — results",
        "",
        f"Command: `{command}` · wall time {result['wall_seconds']:.0f} s"
        + (" · **quick run**" if result["quick"] else ""),
        "",
    ]
    if "targets" in result:
        lines += _targets(result)
    lines += [
        "## Headline ratios",
        "",
        "| what | ratio |",
        "|---|---|",
    ]
    three = t["analyses"]["three metrics (default analysis)"]
    lines.append(
        f"| vectorised metric_looks path ÷ judge_observations(looks=[k]), looks/s, default analysis "
        f"| ×{three['vectorised_speed_up']:.0f} |"
    )
    lines.append(f"| runs kept per 100 MB (40-minute run, 3 metrics, both versions) | {m['runs_per_100_mb']:,.0f} |")
    lines.append(
        f"| raw per-request latency samples ÷ Verdict's state for the same run "
        f"| ×{m['raw_latency_samples_bytes'] / m['bytes_per_run_tracemalloc']:.0f} |"
    )
    for n, row in p["by_series_per_version"].items():
        lines.append(f"| run_analysis (raw read) ÷ the {row['queries']} instant queries of one-query-a-look sent with requests (4 at a time), {n} series/version | {row['ratio']:.2f} |")
    for n, row in p["by_series_per_version"].items():
        lines.append(f"| run_analysis ÷ {row['range_queries']} per-interval range queries (one per counter), {n} series/version | {row['ratio_to_range_queries']:.1f} |")
    for n, row in p["by_series_per_version"].items():
        if "verdict_instant_seconds" in row:
            lines.append(f"| run_analysis with one instant query a look (the path before the raw read) ÷ the same range queries, {n} series/version | {row['ratio_instant_to_range_queries']:.1f} |")
    for n, row in p["by_series_per_version"].items():
        if "ratio_cached_to_range_queries" in row:
            lines.append(f"| run_analysis again with the same source (settled answers cached) ÷ the range queries, {n} series/version | {row['ratio_cached_to_range_queries']:.2f} |")
    lines.append(f"| time per look at {list(s['by_looks'])[-1]} looks ÷ at {next(iter(s['by_looks']))} looks (judge_observations) | {s['look_growth_ratio']:.2f} |")
    lines.append(f"| the same, vectorised path | {s['vectorised_look_growth_ratio']:.2f} |")
    lines.append(f"| time per look with {list(s['by_runs'])[-1]} runs ÷ 1 run | {s['run_growth_ratio']:.2f} |")
    lines += [
        "",
        "## Judge throughput (40-minute run: 80 looks of 30 s)",
        "",
        "| analysis | judge_observations(looks=[k]), looks/s | vectorised, looks/s | ms per look (judge_observations) |",
        "|---|---|---|---|",
    ]
    for label, row in t["analyses"].items():
        lines.append(
            f"| {label} | {row['judge_observations_looks_per_second']:,.0f} | "
            f"{row['vectorised_looks_per_second']:,.0f} | {1e3 * row['seconds_per_look_judge_observations']:.2f} |"
        )
    lines += [
        "",
        "## Memory",
        "",
        f"A 40-minute run of the default analysis ({m['metrics']} metrics, both versions, {m['intervals']} "
        f"intervals) holds {m['bytes_per_run_tracemalloc'] / 1024:.1f} KiB (tracemalloc; the numpy arrays alone "
        f"{m['bytes_per_run_numpy_arrays'] / 1024:.1f} KiB): **{m['runs_per_100_mb']:,.0f} runs per 100 MB**. "
        f"Keeping one float64 per request instead ({m['requests_in_run']:,.0f} requests) would take "
        f"{m['raw_latency_samples_bytes'] / 1e6:.1f} MB per run.",
        "",
        "## Scaling",
        "",
        "| looks in the run | ms per look (judge_observations at look k on k intervals) | ms per look (vectorised) |",
        "|---|---|---|",
    ]
    for n, row in s["by_looks"].items():
        lines.append(f"| {n} | {1e3 * row['seconds_per_look']:.2f} | {1e3 * row['vectorised_seconds_per_look']:.3f} |")
    lines += ["", f"| concurrent runs (one look each, {s['run_intervals']} intervals) | ms per look |", "|---|---|"]
    for n, row in s["by_runs"].items():
        lines.append(f"| {n} | {1e3 * row['seconds_per_look']:.2f} |")
    lines += [
        "",
        f"## Prometheus end to end ({p['window_minutes']}-minute window, {p['looks']} looks, "
        f"{p['scrape_seconds']:g} s scrapes, {p['samples_written']:,} samples, median of {p['repeats']})",
        "",
        "`run_analysis` reads a window of many looks once (raw samples, `metrics/increase.py`); "
        "\"one instant query a look\" is the path it replaces, still used for a look or two.",
        "",
        "| series per version | run_analysis (raw read), ms | one instant query a look, ms | the same instant queries with requests, ms | "
        "range queries, ms | raw read ÷ range queries | again, cached, ms | judging alone, ms | one look: instant, ms | one look: raw read, ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for n, row in p["by_series_per_version"].items():
        lines.append(
            f"| {n} | {1e3 * row['verdict_seconds']:.1f} | {1e3 * row.get('verdict_instant_seconds', nan):.1f} | "
            f"{1e3 * row['raw_seconds']:.1f} | {1e3 * row['raw_range_seconds']:.1f} | {row['ratio_to_range_queries']:.1f} | "
            f"{1e3 * row.get('verdict_cached_seconds', nan):.1f} | {1e3 * row['judge_seconds']:.1f} | "
            f"{1e3 * row.get('one_look_instant_seconds', nan):.1f} | {1e3 * row.get('one_look_raw_read_seconds', nan):.1f} |"
        )
    lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in images]
    return "\n".join(lines) + "\n"


def _targets(result: dict[str, Any]) -> list[str]:
    from benchmarks.cost_targets import target_rows

    t = result["targets"]
    r, e, w, st = t["read_once"], t["end_to_end"], t["web"], t["start"]
    lines = [
        "## Targets (one small service: the tests' `healthy` scenario, 40 minutes, 80 looks of 30 s)",
        "",
        "| figure | measured | target | met |",
        "|---|---|---|---|",
    ]
    for figure, measured, target, met in target_rows(result):
        lines.append(f"| {figure} | {measured} | {target} | {'—' if met is None else ('yes' if met else 'no')} |")
    lines += [
        "",
        f"Seconds behind the ratios (median of {t['repeats']}): raw range queries ({r['raw_range_queries']}, one per "
        f"counter and version) {1e3 * r['raw_range_seconds']:.1f} ms; cold analysis, raw read "
        f"{1e3 * r['cold_analysis_seconds']:.1f} ms, one instant query a look {1e3 * r['cold_analysis_instant_queries_seconds']:.1f} ms; "
        f"`verdict analyze` process {e['analyze_process_seconds']:.2f} s, its start {e.get('process_start_seconds', float('nan')):.2f} s "
        f"(median of {e.get('pairs', 'the')} paired differences: {1e3 * e.get('beyond_start_seconds', float('nan')):.1f} ms), `python -c pass` {e['python_pass_seconds']:.3f} s; "
        f"web answer p50 {w['answer_p50_ms']:.1f} ms, its {w['queries']} PromQL queries one after another {w['promql_p50_ms']:.1f} ms "
        f"(server per look: {w['server_per_look_ms']['prometheusFetches']:.1f} ms fetching, {w['server_per_look_ms']['judge']:.1f} ms judging); "
        f"`verdict --help` {st['help_seconds']:.2f} s, importing the analyze path {st['analyze_imports_seconds']:.2f} s.",
        "",
    ]
    return lines

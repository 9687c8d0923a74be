"""Decision quality: thousands of simulated canaries judged by Verdict and by the usual rules.

`run_accuracy` draws every (scenario, traffic) cell in chunks of `CHUNK` runs, each chunk from its
own seed (`SeedSequence(SEED, spawn_key=(scenario, rpm, chunk))`), so results do not depend on the
number of workers or on the order chunks finish in, and `--quick` runs are the first chunks of the
full run. Chunks are judged by two worker processes.
"""

from __future__ import annotations

import math
import multiprocessing
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks import judges
from benchmarks.judges import Decision
from benchmarks.simulate import (
    ANALYSED_LOOKS,
    EXTRA_LOOKS,
    HORIZON,
    INTERVAL_SECONDS,
    LOOKS_PER_STEP,
    SCENARIOS,
    STEPS,
    TRAFFIC_RPM,
    generate,
)
from benchmarks.specs import BENCHMARK_ANALYSIS, benchmark_analysis

SEED = 20251126
CHUNK = 50
FULL_RUNS = {"null": 2000, "regression": 500}
QUICK_RUNS = {"null": 50, "regression": 50}
ALPHA = 0.05
JUDGE_NOTES = {
    "verdict": "Verdict's engine, default settings, the analysis of benchmarks/specs.py; "
    "step rules of analyzer/canary.py (10 looks per step, then up to 40 extra looks)",
    "argo-threshold": "Argo Rollouts: per interval error rate < 1 % and p99 < 500 ms, "
    "failureLimit 0 (abort on the first failed measurement); empty interval fails",
    "flagger-threshold": "Flagger: the same checks as thresholdRange (success rate ≥ 99 %, "
    "p99 ≤ 500 ms), abort at threshold 5 accumulated failed checks; empty interval fails",
    "kayenta": "Kayenta NetflixACAJudge: Mann-Whitney on one-minute points (error rate, p99), "
    "98 % interval, ±25 % tolerance, re-judged every interval on all minutes so far; "
    "abort when a metric is High",
    "naive-z": "one-sided pooled two-proportion z on cumulative counts at every look "
    "(errors, and requests slower than the baseline p99 bucket bound); z > 1.645 aborts",
}


@dataclass(frozen=True)
class Task:
    scenario: int
    rpm: int
    chunk: int
    runs: int


def _run_task(task: Task) -> tuple[Task, dict[str, npt.NDArray[np.float64]]]:
    """Draw one chunk and judge it with every judge: per judge, rows (decision, look, bad, excess)."""
    scenario = SCENARIOS[task.scenario]
    seq = np.random.SeedSequence(SEED, spawn_key=(task.scenario, task.rpm, task.chunk))
    batch = generate(scenario, task.rpm, task.runs, np.random.default_rng(seq))
    spec = benchmark_analysis()
    harm = np.cumsum(batch.canary_harm, axis=1)
    expected = np.cumsum(batch.canary_expected_harm, axis=1)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for name, d in judges.all_decisions(spec, batch).items():
        index = d.look - 1
        rows = np.arange(batch.runs)
        bad = harm[rows, index]
        excess = bad - expected[rows, index]
        out[name] = np.column_stack([d.decision, d.look, bad, excess]).astype(np.float64)
    return task, out


def tasks(runs: dict[str, int]) -> list[Task]:
    out = []
    for i, scenario in enumerate(SCENARIOS):
        total = runs["null" if scenario.null else "regression"]
        for rpm in TRAFFIC_RPM:
            for chunk in range(math.ceil(total / CHUNK)):
                out.append(Task(i, rpm, chunk, min(CHUNK, total - chunk * CHUNK)))
    return out


def _rate(count: int, n: int) -> dict[str, float]:
    p = count / n if n else math.nan
    return {"rate": p, "se": math.sqrt(p * (1 - p) / n) if n else math.nan}


def _quantile(values: npt.NDArray[np.float64], q: float) -> float | None:
    return float(np.quantile(values, q)) if values.size else None


def summarise(scenario_index: int, rpm: int, judge: str, rows: npt.NDArray[np.float64]) -> dict[str, Any]:
    scenario = SCENARIOS[scenario_index]
    decision, look, bad, excess = rows.T
    n = len(decision)
    onset = scenario.onset
    aborted = decision == Decision.ABORTED
    early = aborted & (look <= onset)
    detected = aborted & (look > onset)
    minutes = (look - onset) * INTERVAL_SECONDS / 60.0
    tta = minutes[detected]
    censored = np.where(detected, minutes, np.inf)  # not aborted (after onset) = never
    cell: dict[str, Any] = {
        "scenario": scenario.name,
        "null": scenario.null,
        "rpm": rpm,
        "judge": judge,
        "runs": n,
        "aborted": _rate(int(aborted.sum()), n),
        "promoted": _rate(int((decision == Decision.PROMOTED).sum()), n),
        "paused": _rate(int((decision == Decision.PAUSED).sum()), n),
        "time_to_abort_minutes": {
            "median": _quantile(tta, 0.5),
            "p90": _quantile(tta, 0.9),
            "mean": float(tta.mean()) if tta.size else None,
            "censored_median": _finite(float(np.median(censored))) if n else None,
        },
        "decision_minutes_median": float(np.median(look)) * INTERVAL_SECONDS / 60.0,
        "bad_requests_until_decision": {"mean": float(bad.mean()), "median": float(np.median(bad))},
        "excess_bad_requests_until_decision": {
            "mean": float(excess.mean()),
            "median": float(np.median(excess)),
        },
    }
    if onset:
        cell["aborted_before_onset"] = _rate(int(early.sum()), n)
        cell["detected_after_onset"] = _rate(int(detected.sum()), n)
    return cell


def run_accuracy(*, quick: bool, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    runs = QUICK_RUNS if quick else FULL_RUNS
    todo = tasks(runs)
    todo.sort(key=lambda t: -t.rpm)  # big chunks first, for an even finish
    collected: dict[tuple[int, int, str], list[tuple[int, npt.NDArray[np.float64]]]] = {}
    done = 0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(workers) as pool:
        for task, chunk_rows in pool.imap_unordered(_run_task, todo):
            for judge, rows in chunk_rows.items():
                collected.setdefault((task.scenario, task.rpm, judge), []).append((task.chunk, rows))
            done += 1
            if progress and (done % 20 == 0 or done == len(todo)):
                print(f"  {done}/{len(todo)} chunks, {time.perf_counter() - started:.0f} s", flush=True)
    cells = []
    for i, _ in enumerate(SCENARIOS):
        for rpm in TRAFFIC_RPM:
            for judge in judges.JUDGES:
                parts = sorted(collected[(i, rpm, judge)], key=lambda p: p[0])
                cells.append(summarise(i, rpm, judge, np.vstack([p[1] for p in parts])))
    result: dict[str, Any] = {
        "benchmark": "accuracy",
        "quick": quick,
        "seed": SEED,
        "runs_per_cell": runs,
        "workers": workers,
        "timeline": {
            "interval_seconds": INTERVAL_SECONDS,
            "steps_percent": list(STEPS),
            "looks_per_step": LOOKS_PER_STEP,
            "extra_looks": EXTRA_LOOKS,
            "analysed_looks": ANALYSED_LOOKS,
            "horizon_looks": HORIZON,
            "rpm_meaning": "canary requests per minute at the 10 % step (service total = 10 × rpm)",
        },
        "analysis": BENCHMARK_ANALYSIS,
        "judges": JUDGE_NOTES,
        "scenarios": [
            {
                "name": s.name,
                "null": s.null,
                "description": s.description,
                "bad_requests": "5xx" if s.metric == "error" else "slower than 500 ms",
                "beyond_verdict_tolerance": s.beyond_tolerance,
                "onset_minutes": s.onset * INTERVAL_SECONDS / 60.0,
            }
            for s in SCENARIOS
        ],
        "traffic_rpm": list(TRAFFIC_RPM),
        "cells": cells,
    }
    result["targets"] = targets(result)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def cell(result: dict[str, Any], scenario: str, rpm: int, judge: str) -> dict[str, Any]:
    for c in result["cells"]:
        if (c["scenario"], c["rpm"], c["judge"]) == (scenario, rpm, judge):
            return dict(c)
    raise KeyError((scenario, rpm, judge))


def _names(result: dict[str, Any], null: bool) -> list[str]:
    return [s["name"] for s in result["scenarios"] if s["null"] is null]


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Target 1: Verdict's false-abort rate ≤ alpha in every null cell.
    Target 2: per regression beyond tolerance and traffic, Verdict has the shortest censored
    median time to abort among the judges whose false-abort rate is ≤ alpha in every A/A null at
    that traffic (runs not aborted count as never)."""
    nulls = _names(result, True)
    over = [
        {"scenario": s, "rpm": rpm, "false_abort": cell(result, s, rpm, "verdict")["aborted"]}
        for s in nulls
        for rpm in result["traffic_rpm"]
        if cell(result, s, rpm, "verdict")["aborted"]["rate"] > ALPHA
    ]
    aa = [s for s in nulls if s.startswith("aa-")]
    qualified = {
        rpm: [
            j
            for j in judges.JUDGES
            if all(cell(result, s, rpm, j)["aborted"]["rate"] <= ALPHA for s in aa)
        ]
        for rpm in result["traffic_rpm"]
    }
    beyond = [s["name"] for s in result["scenarios"] if not s["null"] and s["beyond_verdict_tolerance"]]
    races = []
    for s in beyond:
        for rpm in result["traffic_rpm"]:
            times = {
                j: _or_inf(cell(result, s, rpm, j)["time_to_abort_minutes"]["censored_median"])
                for j in qualified[rpm]
            }
            best = min(times.values()) if times else math.inf
            verdict_time = times.get("verdict", math.inf)
            if not math.isfinite(best):
                outcome = "none detects"  # no qualified judge aborts most runs within the canary
            elif "verdict" in times and verdict_time <= best:
                outcome = "yes"
            else:
                outcome = "no"
            races.append(
                {
                    "scenario": s,
                    "rpm": rpm,
                    "qualified_judges": qualified[rpm],
                    "censored_median_minutes": {k: _finite(v) for k, v in times.items()},
                    "verdict_fastest": outcome,
                }
            )
    return {
        "false_abort_at_most_alpha": {"met": not over, "alpha": ALPHA, "cells_over": over},
        "fastest_among_qualified": {
            "met": all(r["verdict_fastest"] != "no" for r in races),
            "cells_fastest": sum(r["verdict_fastest"] == "yes" for r in races),
            "cells_none_detects": sum(r["verdict_fastest"] == "none detects" for r in races),
            "cells_slower": sum(r["verdict_fastest"] == "no" for r in races),
            "qualified_judges_by_rpm": {str(k): v for k, v in qualified.items()},
            "races": races,
        },
    }


def _or_inf(x: float | None) -> float:
    return math.inf if x is None else x


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def pct(r: dict[str, float]) -> str:
    return f"{100 * r['rate']:.1f}"


def minutes(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def rate_cell(r: dict[str, float]) -> str:
    return f"{100 * r['rate']:.1f} ±{100 * r['se']:.1f}"


def detection(c: dict[str, Any]) -> dict[str, float]:
    return dict(c["detected_after_onset"] if "detected_after_onset" in c else c["aborted"])


def console_tables(result: dict[str, Any]) -> Iterable[str]:
    """The headline tables as plain text."""
    judge_names = list(judges.JUDGES)
    head = f"{'scenario':<22}{'rpm':>6}  " + "".join(f"{j:>19}" for j in judge_names)
    yield "False-abort rate, % (± SE), null scenarios"
    yield head
    for s in _names(result, True):
        for rpm in result["traffic_rpm"]:
            row = "".join(f"{rate_cell(cell(result, s, rpm, j)['aborted']):>19}" for j in judge_names)
            yield f"{s:<22}{rpm:>6}  {row}"
    yield ""
    yield "Detection rate, % / median minutes to abort, regressions"
    yield head
    for s in _names(result, False):
        for rpm in result["traffic_rpm"]:
            texts = []
            for j in judge_names:
                c = cell(result, s, rpm, j)
                texts.append(f"{pct(detection(c))} / {minutes(c['time_to_abort_minutes']['median'])}")
            yield f"{s:<22}{rpm:>6}  " + "".join(f"{t:>19}" for t in texts)

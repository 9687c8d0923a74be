"""Decision quality: thousands of simulated canaries judged by Verdict and by the usual rules.

`run_accuracy` draws every (scenario, traffic) cell in chunks of `CHUNK` runs, each chunk from its
own seed (`SeedSequence(SEED, spawn_key=(scenario, rpm, chunk))`), so results do not depend on the
number of workers or on the order chunks finish in, and `--quick` runs are the first chunks of the
full run. Chunks are judged by two worker processes.

Verdict's holds: an SLO is a promotion criterion, so a canary shown beyond it (and not beyond the
rollback trigger) is held, not failed. A run still held when the replay ends is PAUSED (for a
person), never aborted; the cells of Verdict's judges count those runs (`held`, `held_shared` when
the baseline breaches the SLO too), the runs held at any look before the decision
(`held_any_look`), and the runs held at the end of an earlier step while still undecided
(`held_at_earlier_step_end`): the canary loop would lengthen that step (by up to one more step) and
pause there if the hold does not clear, which the fixed timeline of the replay does not model, so
those runs' replay is approximate.
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

from analyzer.looks import MetricLooks, latency_looks, ratio_looks
from analyzer.spec import AnalysisSpec, plan_analysis
from benchmarks import judges
from benchmarks.judges import Decision, Decisions
from benchmarks.simulate import (
    ANALYSED_LOOKS,
    BOUNDS,
    EXTRA_LOOKS,
    HORIZON,
    INTERVAL_SECONDS,
    LOOKS_PER_STEP,
    PRE_WINDOW_MINUTES,
    SCENARIOS,
    STEPS,
    TRAFFIC_RPM,
    Batch,
    generate,
)
from benchmarks.specs import BENCHMARK_ANALYSIS, benchmark_analysis
from metrics.source import MetricKind

SEED = 20251126
CHUNK = 50
FULL_RUNS = {"null": 2000, "regression": 500}
QUICK_RUNS = {"null": 50, "regression": 50}
ALPHA = 0.05
ARGO_DOCS = "https://argo-rollouts.readthedocs.io/en/stable/analysis/prometheus/"
ARGO_ANALYSIS_DOCS = "https://argo-rollouts.readthedocs.io/en/stable/features/analysis/"
FLAGGER_DOCS = "https://docs.flagger.app/usage/metrics"
FLAGGER_TUTORIAL = "https://docs.flagger.app/tutorials/istio-progressive-delivery"
KAYENTA_DOCS = "https://github.com/spinnaker/kayenta/issues/633"
JUDGE_NOTES = {
    "verdict": "Verdict's engine, default settings (alpha 0.05, beta 0.10, 60-minute pre-run "
    "window), the analysis of benchmarks/specs.py; step rules of strategies/canary.py (any failure "
    "aborts at once; promoted at the first pass from the end of the 50 % step, 15 min, on; else "
    "paused at the horizon, 35 min)",
    "verdict-compare": "Verdict with the comparisons only (the analysis of benchmarks/specs.py "
    "without its SLOs and their rollback triggers): the judge of the comparison's shared-incident "
    "targets",
    "argo-threshold": "Argo Rollouts as documented: error rate < 1 % and p99 < 500 ms on the "
    "canary's last 5 minutes (`interval: 5m`, query over `[5m]`), `failureLimit: 3` (the 4th failed "
    f"measurement aborts); empty window fails; else promoted at the horizon — {ARGO_DOCS}, "
    f"{ARGO_ANALYSIS_DOCS}",
    "argo-threshold-tight": "Argo Rollouts, the previous setting: the same conditions on each "
    "30 s interval, `failureLimit: 0` (the default: the first failed measurement aborts)",
    "flagger-threshold": "Flagger as documented: success rate ≥ 99 % and p99 ≤ 500 ms "
    "(thresholdRange) every minute on the last minute (`interval: 1m`, metric `interval: 1m`), "
    f"`threshold: 5` accumulated failed checks roll back; no values = failed check — {FLAGGER_DOCS}, "
    f"{FLAGGER_TUTORIAL}",
    "flagger-threshold-tight": "Flagger, the previous setting: the same checks every 30 s on "
    "30 s windows, threshold 5",
    "kayenta": "Kayenta NetflixACAJudge as documented: Mann-Whitney, 98 % interval, ±25 % "
    "tolerance, on 30 s points (error rate, p99) of a growing window, judged at minutes 25, 30 and "
    "35 (every 5 minutes once there are ≥ 50 points, the advised minimum; the classifier has no "
    f"minimum of its own); a High metric or Nodata aborts — {KAYENTA_DOCS}",
    "kayenta-tight": "Kayenta, the previous setting: one-minute points, re-judged every minute "
    "from minute 3 on all minutes so far, at least 3 values per side (not Kayenta's rule); "
    "a High metric aborts",
    "naive-z": "one-sided pooled two-proportion z on cumulative counts at every look "
    "(errors, and requests slower than the baseline p99 bucket bound); z > 1.645 aborts",
}


# the A/A scenarios a peer must keep false aborts ≤ alpha in to qualify for the races: those with
# no incident in both versions (aborting the 5 % shared incident is "roll back first" now, and the
# peers' 1 % thresholds are Verdict's SLO, not its rollback trigger, so a shared incident between
# the two says nothing about a peer's false aborts)
def _qualifying_aa(result: dict[str, Any]) -> list[str]:
    return [s for s in _aa(result) if "shared" not in s]


@dataclass(frozen=True)
class VerdictRuns:
    """Verdict's decision per run, and its holds (see the module's docstring), shape (runs,)."""

    decisions: Decisions
    held: npt.NDArray[np.bool_]  # paused, a metric held at the decision look
    held_shared: npt.NDArray[np.bool_]  # ... and the baseline breaches the SLO too
    held_any_look: npt.NDArray[np.bool_]  # a metric held at some look up to the decision
    held_at_earlier_step_end: npt.NDArray[np.bool_]  # held at a step's end before the last step's

    def flags(self) -> npt.NDArray[np.float64]:
        return np.column_stack(
            [self.held, self.held_shared, self.held_any_look, self.held_at_earlier_step_end]
        ).astype(np.float64)


def verdict_looks(spec: AnalysisSpec, batch: Batch) -> list[MetricLooks]:
    """Every metric's looks for every run of the batch, as `judges.batch_codes` computes them,
    kept whole (codes, and which looks are held)."""
    out = []
    for metric in plan_analysis(spec).metrics:
        if metric.kind is MetricKind.RATIO:
            out.append(ratio_looks(
                metric, batch.canary_bad, batch.canary_total, batch.baseline_bad,
                batch.baseline_total, batch.baseline_pre_bad, batch.baseline_pre_total,
                alpha=metric.alpha, beta=metric.beta,
            ))  # fmt: skip
        else:
            out.append(latency_looks(
                metric, BOUNDS, batch.canary_buckets, batch.baseline_buckets,
                batch.baseline_pre_buckets, alpha=metric.alpha, beta=metric.beta,
            ))  # fmt: skip
    return out


def verdict_runs(spec: AnalysisSpec, batch: Batch) -> VerdictRuns:
    """`judges.verdict_decisions` (the same codes through the same step rules), with the holds."""
    looks = verdict_looks(spec, batch)
    decisions = judges.replay_steps(np.stack([m.codes for m in looks]), spec)
    held = np.asarray(np.stack([m.held for m in looks]).any(axis=0), dtype=np.bool_)  # (runs, looks)
    shared = np.asarray(np.stack([m.shared for m in looks]).any(axis=0), dtype=np.bool_)
    rows, at = np.arange(batch.runs), decisions.look - 1
    paused = decisions.decision == Decision.PAUSED
    before = np.arange(held.shape[-1])[None, :] < decisions.look[:, None]
    step_end = np.zeros(batch.runs, dtype=np.bool_)
    for end in range(LOOKS_PER_STEP, ANALYSED_LOOKS, LOOKS_PER_STEP):  # 10, 20: not the last step
        step_end |= held[:, end - 1] & (decisions.look > end)
    return VerdictRuns(
        decisions=decisions,
        held=paused & held[rows, at],
        held_shared=paused & shared[rows, at],
        held_any_look=np.asarray((held & before).any(axis=1), dtype=np.bool_),
        held_at_earlier_step_end=step_end,
    )


@dataclass(frozen=True)
class Task:
    scenario: int
    rpm: int
    chunk: int
    runs: int


def _run_task(task: Task) -> tuple[Task, dict[str, npt.NDArray[np.float64]]]:
    """Draw one chunk and judge it with every judge: per judge, rows (decision, look, bad, excess,
    held, held_shared, held_any_look, held_at_earlier_step_end; the holds are Verdict's, 0 for
    the peers)."""
    scenario = SCENARIOS[task.scenario]
    seq = np.random.SeedSequence(SEED, spawn_key=(task.scenario, task.rpm, task.chunk))
    batch = generate(scenario, task.rpm, task.runs, np.random.default_rng(seq))
    spec = benchmark_analysis()
    harm = np.cumsum(batch.canary_harm, axis=1)
    expected = np.cumsum(batch.canary_expected_harm, axis=1)
    verdicts = {
        "verdict": verdict_runs(spec, batch),
        "verdict-compare": verdict_runs(judges.comparisons_only(spec), batch),
    }
    decisions = {name: v.decisions for name, v in verdicts.items()} | judges.peer_decisions(batch)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for name in judges.JUDGES:
        d = decisions[name]
        index = d.look - 1
        rows = np.arange(batch.runs)
        bad = harm[rows, index]
        excess = bad - expected[rows, index]
        flags = verdicts[name].flags() if name in verdicts else np.zeros((batch.runs, 4))
        out[name] = np.column_stack([d.decision, d.look, bad, excess, flags]).astype(np.float64)
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
    decision, look, bad, excess, held, shared, ever_held, step_end = rows.T
    n = len(decision)
    onset = scenario.onset
    aborted = decision == Decision.ABORTED
    early = aborted & (look <= onset)
    detected = aborted & (look > onset)
    minutes = (look - onset) * INTERVAL_SECONDS / 60.0
    tta = minutes[detected]
    promoted = decision == Decision.PROMOTED
    ttp = look[promoted] * INTERVAL_SECONDS / 60.0
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
        "time_to_promote_minutes": {"median": _quantile(ttp, 0.5), "p90": _quantile(ttp, 0.9)},
        "decision_minutes_median": float(np.median(look)) * INTERVAL_SECONDS / 60.0,
        "bad_requests_until_decision": {"mean": float(bad.mean()), "median": float(np.median(bad))},
        "excess_bad_requests_until_decision": {
            "mean": float(excess.mean()),
            "median": float(np.median(excess)),
        },
    }
    if judge.startswith("verdict"):
        cell["held"] = _rate(int(held.sum()), n)
        cell["held_shared"] = _rate(int(shared.sum()), n)
        cell["held_any_look"] = _rate(int(ever_held.sum()), n)
        cell["held_at_earlier_step_end"] = _rate(int(step_end.sum()), n)
    if scenario.must_not_promote:
        cell["false_promote"] = _rate(int(promoted.sum()), n)
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
            "horizon": "every judge sees the same looks up to the horizon and decides on its own "
            "schedule within it; a peer that never fails promotes when its analysis completes, at "
            "the horizon",
            "pre_window_minutes": PRE_WINDOW_MINUTES,
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
                "must_not_promote": s.must_not_promote,
                "shared_incident": None
                if s.incident is None
                else {"start_minute": s.incident[0], "end_minute": s.incident[1], "added_rate": s.incident[2]},
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


def _aa(result: dict[str, Any]) -> list[str]:
    return [s for s in _names(result, True) if s.startswith("aa-")]


def _percent(x: float) -> str:
    return f"{100 * x:.1f} %"


def _target(
    figure: str, required: str, measured: str, met: bool, cells: list[dict[str, Any]]
) -> dict[str, Any]:
    return {"figure": figure, "required": required, "measured": measured, "met": met, "cells": cells}


def _worst_rate(
    result: dict[str, Any],
    scenarios: list[str],
    rpms: list[int],
    key: str,
    figure: str,
    limit: float,
    judge: str = "verdict",
) -> dict[str, Any]:
    """A Verdict judge's largest `key` rate over the cells, against `limit`."""
    cells = [
        {"scenario": s, "rpm": rpm, key: cell(result, s, rpm, judge)[key]}
        for s in scenarios
        for rpm in rpms
        if any(c["scenario"] == s for c in result["cells"])
    ]
    if not cells:
        return _target(figure, f"≤ {100 * limit:g} %", "no such scenario in this run", False, [])
    worst = max(cells, key=lambda c: c[key]["rate"])
    measured = f"at most {_percent(worst[key]['rate'])} ({worst['scenario']} @ {worst['rpm']} rpm)"
    return _target(figure, f"≤ {100 * limit:g} %", measured, all(c[key]["rate"] <= limit for c in cells), cells)


def _detection(
    result: dict[str, Any], scenario: str, rpm: int, rate: float, median: float | None
) -> dict[str, Any]:
    c = cell(result, scenario, rpm, "verdict")
    detected = detection(c)["rate"]
    m = c["time_to_abort_minutes"]["median"]
    required = f"≥ {100 * rate:g} %" if rate < 1 else "100 %"
    met = detected >= rate
    if median is not None:
        required += f", median ≤ {median:g} min"
        met = met and m is not None and m <= median
    return _target(
        f"{scenario} at {rpm} rpm: detected" + (", median minutes to abort" if median is not None else ""),
        required,
        f"{_percent(detected)}" + (f", {minutes(m)} min" if median is not None else ""),
        met,
        [{"scenario": scenario, "rpm": rpm, "detected": detection(c), "median_minutes": m}],
    )


def _promotion(
    result: dict[str, Any], scenario: str, rpm: int, rate: float, median: float | None
) -> dict[str, Any]:
    c = cell(result, scenario, rpm, "verdict")
    promoted = c["promoted"]["rate"]
    m = c["time_to_promote_minutes"]["median"]
    required = (f"≥ {100 * rate:g} %" if rate < 1 else "100 %") + (
        f", median ≤ {median:g} min" if median is not None else ""
    )
    met = promoted >= rate and (median is None or (m is not None and m <= median))
    return _target(
        f"{scenario} at {rpm} rpm: promoted, median minutes to promote",
        required,
        f"{_percent(promoted)}, {minutes(m)} min",
        met,
        [{"scenario": scenario, "rpm": rpm, "promoted": c["promoted"], "median_minutes": m}],
    )


def _more_and_sooner(verdict: dict[str, Any], peer: dict[str, Any]) -> bool:
    """The peer detects more (its detection rate above Verdict's by more than twice their combined
    Monte-Carlo SE) and sooner (its censored median minutes to abort no later than Verdict's; two
    judges that both abort fewer than half the runs are level)."""
    v, p = detection(verdict), detection(peer)
    more = p["rate"] > v["rate"] + 2 * math.hypot(p["se"], v["se"])
    sooner = _or_inf(peer["time_to_abort_minutes"]["censored_median"]) <= _or_inf(
        verdict["time_to_abort_minutes"]["censored_median"]
    )
    return bool(more and sooner)


def races(result: dict[str, Any]) -> dict[str, Any]:
    """Per regression beyond Verdict's tolerance and traffic: Verdict's censored median minutes to
    abort (runs not aborted count as never) against each judge whose false-abort rate is ≤ alpha in
    every A/A scenario without a shared incident at that traffic (`_qualifying_aa`) and that
    detects there (aborts most runs: a finite censored median); and the qualified judges that
    detect more and sooner (`_more_and_sooner`)."""
    aa = _qualifying_aa(result)
    judge_names = sorted({c["judge"] for c in result["cells"]}, key=lambda j: (j != "verdict", j))
    qualified = {
        rpm: [
            j
            for j in judge_names
            if not j.startswith("verdict") and all(cell(result, s, rpm, j)["aborted"]["rate"] <= ALPHA for s in aa)
        ]
        for rpm in result["traffic_rpm"]
    }
    beyond = [s["name"] for s in result["scenarios"] if not s["null"] and s["beyond_verdict_tolerance"]]
    out = []
    for s in beyond:
        for rpm in result["traffic_rpm"]:
            times = {
                j: _or_inf(cell(result, s, rpm, j)["time_to_abort_minutes"]["censored_median"])
                for j in ["verdict", *qualified[rpm]]
            }
            detecting = [j for j in qualified[rpm] if math.isfinite(times[j])]
            slower_than = [j for j in detecting if times["verdict"] > times[j]]
            outcome = "none detects" if not detecting else ("no" if slower_than else "yes")
            mine = cell(result, s, rpm, "verdict")
            more = [j for j in qualified[rpm] if _more_and_sooner(mine, cell(result, s, rpm, j))]
            out.append(
                {
                    "scenario": s,
                    "rpm": rpm,
                    "qualified_judges": qualified[rpm],
                    "censored_median_minutes": {k: _finite(v) for k, v in times.items()},
                    "detected": {
                        j: detection(cell(result, s, rpm, j))["rate"]
                        for j in ["verdict", *qualified[rpm]]
                    },
                    "verdict_at_least_as_fast": outcome,
                    "slower_than": slower_than,
                    "detect_more_and_sooner": more,
                }
            )
    return {
        "met": all(r["verdict_at_least_as_fast"] != "no" for r in out),
        "cells_as_fast": sum(r["verdict_at_least_as_fast"] == "yes" for r in out),
        "cells_none_detects": sum(r["verdict_at_least_as_fast"] == "none detects" for r in out),
        "cells_slower": sum(r["verdict_at_least_as_fast"] == "no" for r in out),
        "cells_more_and_sooner": sum(bool(r["detect_more_and_sooner"]) for r in out),
        "cells": len(out),
        "qualifying_aa_scenarios": aa,
        "qualified_judges_by_rpm": {str(k): v for k, v in qualified.items()},
        "races": out,
    }


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """The targets of the statistics redesign, each met or not with Verdict's measured figure."""
    rpms = list(result["traffic_rpm"])
    # the shared incidents have targets of their own: the 5 % one is beyond the rollback trigger
    # (aborting it is "roll back first"), the 1.5 % one under it (it must be held, not aborted)
    aa = _qualifying_aa(result)
    must_not = [s["name"] for s in result["scenarios"] if s.get("must_not_promote")]
    twice = [s for s in must_not if "2x-tolerance" in s]
    items = [
        _worst_rate(
            result, [*aa, "tolerance-boundary"], rpms, "aborted",
            "false aborts, every A/A scenario and the tolerance boundary, every rpm", ALPHA,
        ),
        _detection(result, "errors-2%", 100, 1.0, 11.5),
        _detection(result, "errors-2%", 1000, 1.0, 2.0),
        _detection(result, "errors-2%", 10, 0.5, None),
        _detection(result, "latency-x1.5", 10, 0.95, 16.0),
        _detection(result, "latency-x1.5", 100, 1.0, 3.5),
        _detection(result, "latency-x1.5", 1000, 1.0, 1.0),
        _promotion(result, "aa-constant", 100, 0.9, 20.0),
    ]
    every_aa = [
        {"scenario": s, "rpm": 100, "promoted": cell(result, s, 100, "verdict")["promoted"]} for s in aa
    ]
    lowest = min(every_aa, key=lambda c: c["promoted"]["rate"])
    items.append(
        _target(
            "every A/A scenario at 100 rpm: promoted",
            "≥ 75 %",
            f"at least {_percent(lowest['promoted']['rate'])} ({lowest['scenario']})",
            all(c["promoted"]["rate"] >= 0.75 for c in every_aa),
            every_aa,
        )
    )
    items.append(_every_aa_promoted(result, aa))
    items += [
        _promotion(result, "aa-constant", 1000, 1.0, 15.0),
        _worst_rate(result, twice, rpms, "false_promote", "false promotes at 2× tolerance, every rpm", 0.10),
        _worst_rate(result, ["latency-tail"], [1000], "false_promote", "latency-tail promoted at 1000 rpm", 0.05),
        _worst_rate(
            result, ["shared-incident"], rpms, "false_promote",
            "shared incident: false pass (comparison), every rpm", 0.10, "verdict-compare",
        ),
        _worst_rate(
            result, ["aa-shared-incident"], rpms, "aborted",
            "shared incident: false abort (comparison), every rpm", ALPHA, "verdict-compare",
        ),
        _under_trigger(result, rpms),
        _worse_than_degraded(result, rpms),
    ]
    race = races(result)
    slower = [r for r in race["races"] if r["detect_more_and_sooner"]]
    where = ", ".join(
        f"{r['scenario']} @ {r['rpm']} rpm ({'/'.join(r['detect_more_and_sooner'])})" for r in slower
    )
    items.append(
        _target(
            "regression cells where a qualified peer (A/A false aborts ≤ 5 %) detects more and "
            "sooner (detection rate above Verdict's by > 2 SE, censored median no later)",
            "0",
            f"{race['cells_more_and_sooner']} of {race['cells']}" + (f": {where}" if where else ""),
            race["cells_more_and_sooner"] == 0,
            slower,
        )
    )
    items.append(
        _target(
            "Verdict at least as fast as every judge that keeps A/A false aborts ≤ 5 %, in every "
            "regression cell where such a judge detects (censored median minutes to abort)",
            "no cell slower",
            f"as fast in {race['cells_as_fast']} cells, slower in {race['cells_slower']}, no "
            f"qualified judge detects in {race['cells_none_detects']}",
            race["met"],
            [r for r in race["races"] if r["verdict_at_least_as_fast"] == "no"],
        )
    )
    return {"met": sum(t["met"] for t in items), "of": len(items), "items": items, "races": race}


UNDER_TRIGGER = "aa-shared-incident-under-trigger"


def _under_trigger(result: dict[str, Any], rpms: list[int]) -> dict[str, Any]:
    """Issue 23: the shared incident under the rollback trigger is held, not aborted."""
    figure = "A/A shared incident under the rollback trigger: false aborts at every rpm (held instead)"
    target = _worst_rate(result, [UNDER_TRIGGER], rpms, "aborted", figure, ALPHA)
    if target["cells"]:
        held = " / ".join(
            pct(cell(result, UNDER_TRIGGER, rpm, "verdict").get("held", {"rate": math.nan}))
            for rpm in rpms
        )
        target["measured"] += f"; held at the end {held} % at {' / '.join(map(str, rpms))} rpm"
    return target


def _worse_than_degraded(result: dict[str, Any], rpms: list[int]) -> dict[str, Any]:
    """The canary worse than a degraded baseline (`shared-incident`) is still caught where it was
    (≥ 90 % detected at 100 and 1000 rpm) and promoted nowhere (≤ 10 %)."""
    name = "shared-incident"
    figure = (
        "canary worse than a degraded baseline (shared-incident) still caught: detected at 100 / "
        "1000 rpm; promoted, every rpm"
    )
    if not any(c["scenario"] == name for c in result["cells"]):
        return _target(figure, "≥ 90 %; ≤ 10 %", "no such scenario in this run", False, [])
    cells = [cell(result, name, rpm, "verdict") for rpm in rpms]
    caught = [(c["rpm"], detection(c)["rate"]) for c in cells if c["rpm"] >= 100]
    promoted = max(c["false_promote"]["rate"] for c in cells)
    measured = (
        " / ".join(_percent(r) for _, r in caught)
        + f" detected ({' / '.join(_percent(detection(c)['rate']) for c in cells)} at "
        f"{' / '.join(str(c['rpm']) for c in cells)} rpm); promoted at most {_percent(promoted)}"
    )
    met = all(r >= 0.9 for _, r in caught) and promoted <= 0.10
    return _target(
        figure, "≥ 90 %; ≤ 10 %", measured, met,
        [{"rpm": c["rpm"], "detected": detection(c), "false_promote": c["false_promote"]} for c in cells],
    )  # fmt: skip


def _every_aa_promoted(result: dict[str, Any], aa: list[str]) -> dict[str, Any]:
    """Issue 23: every A/A scenario (no shared incident) promoted ≥ 90 % at 100 rpm, ≥ 99 % at 1000."""
    need = {100: 0.90, 1000: 0.99}
    cells = [
        {"scenario": s, "rpm": rpm, "promoted": cell(result, s, rpm, "verdict")["promoted"]}
        for rpm in need
        for s in aa
        if rpm in result["traffic_rpm"]
    ]
    parts = []
    for rpm in need:
        rates = [c["promoted"]["rate"] for c in cells if c["rpm"] == rpm]
        if rates:
            parts.append(f"{_percent(min(rates))}–{_percent(max(rates))} at {rpm} rpm")
    return _target(
        "every A/A scenario without a shared incident: promoted at 100 / 1000 rpm",
        "≥ 90 % / ≥ 99 %",
        "; ".join(parts) or "no such cells",
        bool(cells) and all(c["promoted"]["rate"] >= need[c["rpm"]] for c in cells),
        cells,
    )


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


def held_note(c: dict[str, Any]) -> str:
    """" · held N" for a Verdict cell with runs paused while held by an SLO breach, else ""."""
    held = c.get("held")
    return f" · held {pct(held)}" if held and held["rate"] > 0 else ""


def held_text(c: dict[str, Any]) -> str:
    """" (held N, shared M)" for a Verdict cell with held runs, else ""."""
    held = c.get("held")
    if not held or held["rate"] <= 0:
        return ""
    return f" (held {pct(held)}, shared {pct(c['held_shared'])})"


def promotion_text(c: dict[str, Any]) -> str:
    """Promoted % / median minutes to promote."""
    return f"{pct(c['promoted'])} / {minutes(c['time_to_promote_minutes']['median'])}"


def target_lines(result: dict[str, Any]) -> Iterable[str]:
    t = result["targets"]
    yield f"Targets (Verdict): {t['met']} of {t['of']} met"
    for item in t["items"]:
        yield f"  [{'met' if item['met'] else 'NOT met'}] {item['figure']}: {item['measured']} (required {item['required']})"


def console_tables(result: dict[str, Any]) -> Iterable[str]:
    """The headline tables as plain text."""
    judge_names = list(result["judges"])
    width = max(len(j) for j in judge_names) + 2
    head = f"{'scenario':<34}{'rpm':>6}  " + "".join(f"{j:>{width}}" for j in judge_names)

    def rows(scenarios: list[str], text: Any) -> Iterable[str]:
        for s in scenarios:
            for rpm in result["traffic_rpm"]:
                row = "".join(f"{text(cell(result, s, rpm, j)):>{width}}" for j in judge_names)
                yield f"{s:<34}{rpm:>6}  {row}"

    must_not = [s["name"] for s in result["scenarios"] if s.get("must_not_promote")]
    yield "False-abort rate, % (± SE), null scenarios"
    yield head
    yield from rows(_names(result, True), lambda c: rate_cell(c["aborted"]))
    yield ""
    yield "Verdict's held runs (paused at the end, an SLO breached, not the rollback trigger), %"
    yield head
    yield from rows(
        [s["name"] for s in result["scenarios"]],
        lambda c: pct(c["held"]) if "held" in c else "",
    )
    yield ""
    yield "Detection rate, % / median minutes to abort, regressions"
    yield head
    yield from rows(
        _names(result, False),
        lambda c: f"{pct(detection(c))} / {minutes(c['time_to_abort_minutes']['median'])}",
    )
    yield ""
    yield "Promoted, % / median minutes to promote: null scenarios, then the must-not-promote ones"
    yield head
    yield from rows(_names(result, True) + must_not, promotion_text)
    yield ""
    yield from target_lines(result)

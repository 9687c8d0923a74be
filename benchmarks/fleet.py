"""A fleet of canaries looked at again and again through a real Prometheus (`python -m benchmarks fleet`).

Pairs of versions (a canary and its baseline) serve Istio-style traffic at `RPM` requests a minute
each; their counters and histograms are written as OpenMetrics with `tests/promdata.py`'s writer
(scraped every 15 s, Istio's labels and buckets), turned into TSDB blocks by `promtool tsdb
create-blocks-from openmetrics` and served by a real `prometheus` on loopback
(`benchmarks/prom.py`). Every pair of one set-up lives in the same Prometheus, told apart by its
`destination_service_name` (`<pair>-canary`, `<pair>-stable`).

Each pair is then looked at every `LOOK_MINUTES` minutes, as a person or a pipeline would run
`verdict analyze --start <canary start> --end <now>` again and again: one analysis over the window
from the canary's start to the look, growing by `LOOK_MINUTES` each time, up to `HORIZON_MINUTES`.
The analysis is the one `verdict analyze` runs (`_analyze_like_cli`: the same file parsing, plan,
source settings and `run_analysis`), in this process. The first look that passes promotes the
pair, the first that fails aborts it; a pair undecided at the horizon is **held** (its last look's
reason is kept, and what held it: an SLO breach on both versions, "incident on both versions", an
SLO breach of the canary alone, or not enough evidence yet).

Two set-ups: **history**, where the baseline's series start `HISTORY_MINUTES` before the canary
(the pre-run window a long-running stable version has), and **fresh**, where the baseline's series
start with the canary's (a new service, or a baseline deployed beside the canary). The canary's
series always start with the run. The traffic inside the run is drawn from the same seeds in both
set-ups, so they differ only by the history.

The analysis is the benchmark's (`benchmarks/specs.py`: error rate with an SLO of 1 % and a
comparison, p99 latency with an SLO of 500 ms and a comparison), its matchers filled per pair
through a `{{ pair }}` placeholder (`--param pair=...` on the command line), at each compare
tolerance of `TOLERANCES`.
"""

from __future__ import annotations

import copy
import math
import re
import statistics
import subprocess
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.spec import SpecError
from analyzer.verdicts import AnalysisReport
from benchmarks.prom import create_blocks, serve
from benchmarks.simulate import BASELINE_ERROR_RATE, LATENCY_MEDIAN, LATENCY_SIGMA
from benchmarks.specs import BENCHMARK_ANALYSIS
from metrics.errors import BadData, QueryError, SourceUnavailable
from metrics.simulated import lognormal_bucket_probabilities
from metrics.source import Version
from tests.promdata import (
    ERROR_CODE,
    ISTIO_BUCKETS_MS,
    OK_CODE,
    SCRAPE_INTERVAL_S,
    Scenario,
    ScenarioData,
    VersionData,
    write_openmetrics_file,
)

RPM = 200.0  # requests a minute, per version
BASE_ERROR_RATE = BASELINE_ERROR_RATE
LOOK_MINUTES = 3
HORIZON_MINUTES = 60
HISTORY_MINUTES = 65  # the baseline's series before the canary starts (the pre-run window is 60)
PAIRS, QUICK_PAIRS = 20, 5
TOLERANCES: tuple[float, ...] = (1.0, 0.5)
SEED = 20260123
REPO = Path(__file__).resolve().parent.parent

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class FleetScenario:
    """One kind of pair. Error rates are fractions; `incident` is (from minute, to minute, the
    baseline's error rate meanwhile), minutes from the canary's start, in both versions (the canary
    keeps its multiple of the baseline's rate)."""

    name: str
    null: bool  # healthy canary: an abort is a false abort
    description: str
    canary_error_factor: float = 1.0
    latency_factor: float = 1.0
    incident: tuple[float, float, float] | None = None

    def error_rate(self, minutes: FloatArray, version: Version, base: float) -> FloatArray:
        """Each version's error probability in the scrape intervals ending at `minutes`."""
        rate = np.full(minutes.shape, base, dtype=np.float64)
        if self.incident is not None:
            start, end, during = self.incident
            rate[(minutes > start) & (minutes <= end)] = during
        if version is Version.CANARY:
            rate = rate * self.canary_error_factor
        return rate


# both versions at 1.5 % errors: over the spec's error-rate SLO (1 %, a promotion criterion), under
# its rollback trigger (the default max(1 %, 2 × SLO) = 2 %). The figures recorded as "before" were
# run with 0.9 % (under the SLO itself), `BEFORE_INCIDENT`.
INCIDENT = (6.0, 36.0, 0.015)
BEFORE_INCIDENT = (6.0, 36.0, 0.009)
INCIDENT_SCENARIOS = ("aa-shared-incident", "incident-canary-4x")

SCENARIOS: tuple[FleetScenario, ...] = (
    FleetScenario("aa", True, "A/A: 0.5 % errors, the same latency, in both versions"),
    FleetScenario("errors-4x", False, "canary errors 0.5 % → 2 %", canary_error_factor=4.0),
    FleetScenario("latency-2x", False, "every canary request 2× slower (p99 256 → 512 ms)",
                  latency_factor=2.0),
    FleetScenario(
        "aa-shared-incident",
        True,
        "A/A with an incident in both versions: 1.5 % errors from minute 6 to 36 (over the 1 % "
        "SLO, under the 2 % rollback trigger: to be held, not aborted), 0.5 % otherwise",
        incident=INCIDENT,
    ),
    FleetScenario(
        "incident-canary-4x",
        False,
        "the canary at 4× its baseline's errors throughout, and the same incident: the baseline "
        "at 1.5 % from minute 6 to 36, the canary at 6 % then (worse than the degraded "
        "baseline, and beyond the 2 % rollback trigger)",
        canary_error_factor=4.0,
        incident=INCIDENT,
    ),
)  # fmt: skip
QUICK_SCENARIOS = ("aa", "errors-4x", "aa-shared-incident")
SCENARIO_BY_NAME = {s.name: s for s in SCENARIOS}


@dataclass(frozen=True)
class Setup:
    name: str
    history_minutes: float
    description: str


SETUPS: tuple[Setup, ...] = (
    Setup("history", HISTORY_MINUTES, "the baseline's series start 65 min before the canary's"),
    Setup("fresh", 0.0, "the baseline's series start with the canary's (no history)"),
)
SETUP_BY_NAME = {s.name: s for s in SETUPS}


# --- traffic --------------------------------------------------------------------------------


def pair_name(setup: Setup, scenario: FleetScenario, index: int) -> str:
    return f"fleet-{setup.name}-{scenario.name}-{index:02d}"


def _scrape_times(start: datetime, first_minute: float, end: datetime) -> FloatArray:
    first = start.timestamp() + 60.0 * first_minute
    count = int((end.timestamp() - first) // SCRAPE_INTERVAL_S) + 1
    return np.asarray(first + SCRAPE_INTERVAL_S * np.arange(count), dtype=np.float64)


def _draw(
    rng: np.random.Generator,
    times: FloatArray,
    error_rate: FloatArray,
    latency_factor: float,
) -> tuple[IntArray, IntArray, dict[str, IntArray], dict[str, FloatArray]]:
    """Requests, errors, per-code latency buckets and per-code latency sums per scrape."""
    requests = rng.poisson(RPM / 60.0 * SCRAPE_INTERVAL_S, size=times.shape).astype(np.int64)
    errors = rng.binomial(requests, error_rate).astype(np.int64)
    median_ms = 1000.0 * LATENCY_MEDIAN * latency_factor
    probabilities = lognormal_bucket_probabilities(ISTIO_BUCKETS_MS, median_ms, LATENCY_SIGMA)
    mean_ms = median_ms * math.exp(LATENCY_SIGMA**2 / 2.0)
    buckets: dict[str, IntArray] = {}
    sums: dict[str, FloatArray] = {}
    for code, counts in ((OK_CODE, requests - errors), (ERROR_CODE, errors)):
        buckets[code] = np.asarray(rng.multinomial(counts, probabilities), dtype=np.int64)
        sums[code] = np.asarray(counts * mean_ms, dtype=np.float64)
    return requests, errors, buckets, sums


def generate_pair(
    setup: Setup,
    scenario: FleetScenario,
    index: int,
    start: datetime,
    end: datetime,
    base_error_rate: float = BASE_ERROR_RATE,
) -> ScenarioData:
    """One pair's traffic. The draws inside the run depend only on the scenario and the pair's
    index (not on the set-up); the baseline's history comes from a stream of its own."""
    key = [SEED, zlib.crc32(scenario.name.encode()), index]
    run_times = _scrape_times(start, 0.0, end)
    run_minutes = (run_times - start.timestamp()) / 60.0
    rng = np.random.default_rng([*key, 0])
    canary = _draw(rng, run_times, scenario.error_rate(run_minutes, Version.CANARY, base_error_rate),
                   scenario.latency_factor)  # fmt: skip
    baseline = _draw(
        rng, run_times, scenario.error_rate(run_minutes, Version.BASELINE, base_error_rate), 1.0
    )
    baseline_times = run_times
    if setup.history_minutes > 0:
        before = _scrape_times(start, -setup.history_minutes, start)[:-1]
        minutes = (before - start.timestamp()) / 60.0
        history = _draw(np.random.default_rng([*key, 1]), before,
                        scenario.error_rate(minutes, Version.BASELINE, base_error_rate), 1.0)  # fmt: skip
        baseline = (
            np.concatenate([history[0], baseline[0]]),
            np.concatenate([history[1], baseline[1]]),
            {c: np.concatenate([history[2][c], baseline[2][c]]) for c in baseline[2]},
            {c: np.concatenate([history[3][c], baseline[3][c]]) for c in baseline[3]},
        )
        baseline_times = np.concatenate([before, run_times])

    def version(times: FloatArray, drawn: tuple[Any, ...]) -> VersionData:
        return VersionData(times=times, requests=drawn[0], errors=drawn[1], buckets=drawn[2],
                           latency_sum_ms=drawn[3])  # fmt: skip

    name = pair_name(setup, scenario, index)
    labels = Scenario(name, start, end, warmup=timedelta(minutes=setup.history_minutes))
    return ScenarioData(
        scenario=labels,
        versions={Version.BASELINE: version(baseline_times, baseline),
                  Version.CANARY: version(run_times, canary)},
    )  # fmt: skip


# --- the analysis, as `verdict analyze` runs it ---------------------------------------------


ANALYSES: dict[str, str] = {
    "spec": "benchmarks/specs.py as it is (error rate: SLO max 1 % and a comparison; p99: SLO max "
    "500 ms and a comparison)",
    "compare-only": "the same without its `slo:` gates: the comparisons alone judge (at 0.5 % "
    "base errors, the spec's 1 % SLO catches a 4× error regression before any comparison can)",
}


def analysis_file(url: str, tolerance: float, analysis: str = "spec") -> dict[str, Any]:
    """The benchmark's analysis with matchers for `{{ pair }}` and every comparison at
    `tolerance`; "compare-only" drops its SLOs."""
    data = copy.deepcopy(BENCHMARK_ANALYSIS)
    data["name"] = "fleet"
    data["prometheus"] = {"url": url, "timeout": 30}
    data["canary"] = {"destination_service_name": "{{ pair }}-canary"}
    data["baseline"] = {"destination_service_name": "{{ pair }}-stable"}
    for metric in data["metrics"]:
        if "compare" in metric:
            metric["compare"] = {**metric["compare"], "tolerance": tolerance}
        if analysis == "compare-only":
            metric.pop("slo", None)
    return data


def _analyze_like_cli(
    data: dict[str, Any], start: datetime, end: datetime, params: dict[str, str]
) -> AnalysisReport:
    """`verdict analyze --config <file> --start <start> --end <end> --param ...`, in process: the
    calls of `analyzer.cli.analyze` between reading the file and printing the report."""
    from analyzer.analysis import run_analysis
    from analyzer.spec import parse_analysis, plan_analysis
    from metrics.factory import SourceSettings, open_source
    from metrics.source import Window

    spec = parse_analysis(data, "fleet.yaml")
    source = open_source(
        SourceSettings.of(
            spec.prometheus.url,
            timeout=spec.prometheus.timeout,
            retries=spec.prometheus.retries,
            headers=spec.prometheus.headers,
            compress=spec.prometheus.compress,
            max_answer_bytes=spec.prometheus.max_answer_bytes,
            max_series=spec.prometheus.max_series,
        )
    )
    window = Window(start=start, end=end, step=timedelta(seconds=spec.interval))
    return run_analysis(plan_analysis(spec), source, window, params=params)


_NUMBER = re.compile(r"(?<![\w-])\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?")  # not p99's 99


def reason_kind(reason: str) -> str:
    """A reason with its numbers blanked, to count the holds by kind."""
    return _NUMBER.sub("#", reason)


def _failed_checks(report: AnalysisReport) -> str:
    """What failed: `metric/check` of each failed check (`error-rate/slo`, ...), or the metric
    alone when it failed with no check failing at this look (e.g. a comparison that can no longer
    pass, or a failure kept from an earlier interval)."""
    failed: list[str] = []
    for metric in report.metrics:
        if str(metric.status) != "fail":
            continue
        checks = [f"{metric.name}/{c.check}" for c in metric.checks if c.outcome == "fail"]
        failed += checks or [f"{metric.name} (no check failed)"]
    return " + ".join(failed) or "?"


BOTH, CANARY_ALONE, EVIDENCE = "incident on both versions", "canary alone beyond its SLO", "not enough evidence"
HELD_KINDS = (BOTH, CANARY_ALONE, EVIDENCE)


def held_kind(report: AnalysisReport) -> str:
    """What keeps an inconclusive look from deciding: a metric held by an SLO breach the baseline
    shares (`BOTH`), one the canary alone shows (`CANARY_ALONE`), else `EVIDENCE`."""
    held = [m for m in report.metrics if m.held]
    if any(m.shared_incident for m in held):
        return BOTH
    return CANARY_ALONE if held else EVIDENCE


def watch_pair(data: dict[str, Any], pair: str, start: datetime) -> dict[str, Any]:
    """Look at one pair every LOOK_MINUTES up to the horizon; stop at its first pass or fail.
    `heldAt`: the looks (minutes) at which an SLO breach held a metric, and `sharedAt` those where
    the baseline breached it too."""
    report: AnalysisReport | None = None
    held_at: list[int] = []
    shared_at: list[int] = []
    for minute in range(LOOK_MINUTES, HORIZON_MINUTES + 1, LOOK_MINUTES):
        try:
            report = _analyze_like_cli(
                data, start, start + timedelta(minutes=minute), {"pair": pair}
            )
        except (
            SpecError,
            QueryError,
            SourceUnavailable,
            BadData,
        ) as error:  # `analyze` exits 2 / 4
            return {
                "outcome": "error",
                "minute": minute,
                "reason": f"{type(error).__name__}: {error}",
            }
        verdict = str(report.verdict)
        kind = held_kind(report)
        if kind != EVIDENCE:
            held_at.append(minute)
        if kind == BOTH:
            shared_at.append(minute)
        seen = {"heldAt": held_at, "sharedAt": shared_at}
        if verdict == "pass":
            return {"outcome": verdict, "minute": minute, **seen}
        if verdict == "fail":
            return {"outcome": verdict, "minute": minute, "by": _failed_checks(report), **seen}
    assert report is not None
    return {"outcome": "held", "minute": HORIZON_MINUTES, "reason": report.reason,
            "kind": held_kind(report), **seen}  # fmt: skip


def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def summarise(setup: Setup, scenario: FleetScenario, analysis: str, tolerance: float,
              outcomes: list[dict[str, Any]]) -> dict[str, Any]:  # fmt: skip
    """One cell: counts of each outcome and the minutes to it."""
    aborted = [o["minute"] for o in outcomes if o["outcome"] == "fail"]
    promoted = [o["minute"] for o in outcomes if o["outcome"] == "pass"]
    held = [o for o in outcomes if o["outcome"] == "held"]
    return {
        "setup": setup.name,
        "scenario": scenario.name,
        "null": scenario.null,
        "analysis": analysis,
        "tolerance": tolerance,
        "pairs": len(outcomes),
        "aborted": len(aborted),
        "promoted": len(promoted),
        "held": len(held),
        "errors": sum(o["outcome"] == "error" for o in outcomes),
        "medianMinutesToAbort": _median(aborted),
        "medianMinutesToPromote": _median(promoted),
        "abortedBy": dict(
            Counter(o["by"] for o in outcomes if o["outcome"] == "fail").most_common()
        ),
        "heldReasons": dict(Counter(reason_kind(o["reason"]) for o in held).most_common()),
        "heldKinds": {k: sum(o.get("kind") == k for o in held) for k in HELD_KINDS},
        "heldAnyLook": sum(bool(o.get("heldAt")) for o in outcomes),
        "sharedAnyLook": sum(bool(o.get("sharedAt")) for o in outcomes),
        "outcomes": [
            [o["outcome"], o["minute"], *([o["by"]] if "by" in o else [])] for o in outcomes
        ],
        "errorReasons": [o["reason"] for o in outcomes if o["outcome"] == "error"],
    }


def canary_window(now: datetime) -> tuple[datetime, datetime]:
    """The canaries' hour, ending 30 minutes before `now` on a whole minute."""
    end = now.replace(second=0, microsecond=0) - timedelta(minutes=30)
    return end - timedelta(minutes=HORIZON_MINUTES), end


def code_state() -> dict[str, Any]:
    """The commit and the changed files of the engine the figures come from."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False, timeout=30)  # fmt: skip
        return done.stdout if done.returncode == 0 else ""

    # `git status --short` lines are "XY path": the status takes two columns and may start with a
    # space, so the output is not stripped before the path is cut off
    changed = git("status", "--short", "--", "analyzer", "metrics")
    return {
        "commit": git("rev-parse", "HEAD").strip() or None,
        "changedEngineFiles": [line[3:] for line in changed.splitlines() if line.strip()],
    }


def run_fleet(
    *,
    quick: bool = False,
    pairs: int | None = None,
    scenarios: Sequence[str] | None = None,
    setups: Sequence[str] | None = None,
    analyses: Sequence[str] | None = None,
    tolerances: Sequence[float] = TOLERANCES,
    base_error_rate: float = BASE_ERROR_RATE,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Backfill each set-up's pairs into a Prometheus of its own and watch every pair at every
    tolerance. `quick`: QUICK_PAIRS pairs of QUICK_SCENARIOS (the first pairs of the full run)."""
    n = pairs if pairs is not None else (QUICK_PAIRS if quick else PAIRS)
    chosen = [SCENARIO_BY_NAME[s] for s in (scenarios or (QUICK_SCENARIOS if quick else
                                                           [s.name for s in SCENARIOS]))]  # fmt: skip
    chosen_setups = [SETUP_BY_NAME[s] for s in (setups or [s.name for s in SETUPS])]
    chosen_analyses = list(analyses or ANALYSES)
    unknown = [a for a in chosen_analyses if a not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analyses: {unknown}; known: {list(ANALYSES)}")
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    start, end = canary_window(datetime.now(UTC))
    cells: list[dict[str, Any]] = []
    timings: dict[str, dict[str, float]] = {}
    for setup in chosen_setups:
        with tempfile.TemporaryDirectory(prefix=f"verdict-fleet-{setup.name}-") as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            datasets = [
                generate_pair(setup, sc, i, start, end, base_error_rate)
                for sc in chosen
                for i in range(n)
            ]
            openmetrics = root / "fleet.om"
            samples = write_openmetrics_file(datasets, openmetrics)
            t1 = time.perf_counter()
            create_blocks(openmetrics, root / "tsdb")
            openmetrics.unlink()
            t2 = time.perf_counter()
            progress(f"  {setup.name}: {len(datasets)} pairs, {samples:,} samples backfilled "
                     f"({t1 - t0:.0f} s drawing and writing, {t2 - t1:.0f} s promtool)")  # fmt: skip
            looks = 0
            with serve(root / "tsdb", root) as url:
                t3 = time.perf_counter()
                for analysis in chosen_analyses:
                    for tolerance in tolerances:
                        data = analysis_file(url, tolerance, analysis)
                        for sc in chosen:
                            outcomes = [
                                watch_pair(data, pair_name(setup, sc, i), start) for i in range(n)
                            ]
                            looks += sum(o["minute"] // LOOK_MINUTES for o in outcomes)
                            cell = summarise(setup, sc, analysis, tolerance, outcomes)
                            cells.append(cell)
                            progress(f"  {setup.name:7} {analysis:12} tol {tolerance:<3g} {sc.name:20} "
                                     + _cell_line(cell))  # fmt: skip
                t4 = time.perf_counter()
            timings[setup.name] = {
                "backfillSeconds": round(t2 - t0, 1),
                "looks": looks,
                "lookSeconds": round(t4 - t3, 1),
                "msPerLook": round(1000 * (t4 - t3) / max(looks, 1), 1),
            }
    return {
        "benchmark": "fleet",
        "started": started_at,
        "quick": quick,
        "seconds": round(time.perf_counter() - started, 1),
        "code": code_state(),
        "config": {
            "requestsPerMinutePerVersion": RPM,
            "lookEveryMinutes": LOOK_MINUTES,
            "horizonMinutes": HORIZON_MINUTES,
            "pairsPerScenario": n,
            "tolerances": list(tolerances),
            "baseErrorRate": base_error_rate,
            "latency": {"medianSeconds": LATENCY_MEDIAN, "sigma": LATENCY_SIGMA},
            "scrapeSeconds": SCRAPE_INTERVAL_S,
            "seed": SEED,
            "analyses": {a: ANALYSES[a] for a in chosen_analyses},
            "setups": {s.name: s.description for s in chosen_setups},
            "scenarios": {s.name: s.description for s in chosen},
        },
        "timings": timings,
        "cells": cells,
    }


# --- report ---------------------------------------------------------------------------------


def _count(cell: dict[str, Any], key: str, minutes_key: str | None = None) -> str:
    text = f"{cell[key]}/{cell['pairs']}"
    if minutes_key is not None and cell.get(minutes_key) is not None:
        text += f" ({cell[minutes_key]:g} min)"
    return text


def _cell_line(cell: dict[str, Any]) -> str:
    promoted = _count(cell, "promoted", "medianMinutesToPromote")
    if cell["null"]:
        head = f"false aborts {_count(cell, 'aborted')}, promoted {promoted}"
    else:
        head = f"caught {_count(cell, 'aborted', 'medianMinutesToAbort')}, promoted {promoted}"
    tail = f", held {_held(cell)}" + (f", errors {cell['errors']}" if cell["errors"] else "")
    return head + tail


def _held(cell: dict[str, Any]) -> str:
    """Held pairs and why: "4/20 (both 3, canary 1)"; without kinds (older results) the count."""
    text = f"{cell['held']}/{cell['pairs']}"
    kinds = cell.get("heldKinds")
    if cell["held"] and kinds:
        short = {BOTH: "both", CANARY_ALONE: "canary", EVIDENCE: "evidence"}
        text += " (" + ", ".join(f"{short[k]} {v}" for k, v in kinds.items() if v) + ")"
    return text


def _ever_held(cell: dict[str, Any]) -> str:
    if "heldAnyLook" not in cell:
        return "?"
    return f"{cell['heldAnyLook']} ({cell['sharedAnyLook']})"


def _key(cell: dict[str, Any]) -> tuple[str, str, str, float]:
    return cell["setup"], cell.get("analysis", "spec"), cell["scenario"], cell["tolerance"]


def _by(cell: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in cell.get("abortedBy", {}).items())


def table(cells: list[dict[str, Any]]) -> list[str]:
    """The Markdown table: one row per set-up, analysis, scenario and tolerance."""
    lines = [
        "| set-up | analysis | scenario | tol | false aborts | promoted ≤ 60 min (median min) | "
        "caught ≤ 60 min (median min) | held at 60 min (why) | held by an SLO breach at any look "
        "(on both versions) | aborts by | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        null = c["null"]
        promoted = _count(c, "promoted", "medianMinutesToPromote")
        lines.append(
            f"| {c['setup']} | {c.get('analysis', 'spec')} | {c['scenario']} | {c['tolerance']:g} "
            f"| {_count(c, 'aborted') if null else '—'} "
            f"| {promoted if null else promoted + ' false'} "
            f"| {'—' if null else _count(c, 'aborted', 'medianMinutesToAbort')} "
            f"| {_held(c)} | {_ever_held(c)} | {_by(c) or '—'} | {c['errors']} |"
        )
    return lines


def _cell(cells: list[dict[str, Any]], key: tuple[str, str, str, float]) -> dict[str, Any] | None:
    return next((c for c in cells if _key(c) == key), None)


def _caught_within(cell: dict[str, Any], minutes: float) -> bool:
    """At least 90 % of the pairs caught, in a median of at most `minutes`."""
    median = cell["medianMinutesToAbort"]
    return bool(cell["aborted"] >= 0.9 * cell["pairs"] and median is not None and median <= minutes)


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 23's fleet targets, met or not, for the cells this run has."""
    cells = result["cells"]
    out: list[dict[str, Any]] = []

    def add(figure: str, target: str, key: tuple[str, str, str, float],
            met: Callable[[dict[str, Any]], bool], shown: Callable[[dict[str, Any]], str]) -> None:  # fmt: skip
        cell = _cell(cells, key)
        if cell is not None:
            out.append({"figure": f"{figure} ({key[0]}, {key[1]}, tol {key[3]:g})", "target": target,
                        "now": shown(cell), "met": met(cell)})  # fmt: skip

    def caught(c: dict[str, Any]) -> str:
        return _count(c, "aborted", "medianMinutesToAbort")

    for analysis in ANALYSES:
        for tol, minutes in ((1.0, 30.0), (0.5, 20.0)):
            add("4× errors caught within 60 min", f"≥ 90 %, median ≤ {minutes:g} min",
                ("fresh", analysis, "errors-4x", tol), partial(_caught_within, minutes=minutes),
                caught)  # fmt: skip
            add("A/A false aborts / promoted within 60 min", "≤ 5 % / ≥ 80 %",
                ("fresh", analysis, "aa", tol),
                lambda c: c["aborted"] <= 0.05 * c["pairs"] and c["promoted"] >= 0.8 * c["pairs"],
                lambda c: f"{_count(c, 'aborted')} / {_count(c, 'promoted')}")  # fmt: skip
            for setup in ("history", "fresh"):
                add("A/A shared incident under the rollback trigger: aborts", "≤ 5 % (held instead)",
                    (setup, analysis, "aa-shared-incident", tol),
                    lambda c: c["aborted"] <= 0.05 * c["pairs"],
                    lambda c: f"{_count(c, 'aborted')} (held {_held(c)} at 60 min; held by the "
                              f"SLO breach at some look: {c.get('heldAnyLook', '?')}/{c['pairs']}, "
                              f"{c.get('sharedAnyLook', '?')} of them on both versions)")  # fmt: skip
                add("canary 4× a degraded baseline still caught", "≥ 90 %",
                    (setup, analysis, "incident-canary-4x", tol),
                    lambda c: c["aborted"] >= 0.9 * c["pairs"], caught)  # fmt: skip
    return out


def _compare_table(
    before: list[dict[str, Any]], now: list[dict[str, Any]], changed: Sequence[str] = ()
) -> list[str]:
    """Each cell before → now; a scenario in `changed` ran on different traffic before (marked *)."""
    lines = [
        "| set-up | analysis | scenario | tol | aborted before → now | promoted before → now | "
        "held before → now (why, now) |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in now:
        b = _cell(before, _key(c))
        if b is None:
            continue
        abort = None if c["null"] else "medianMinutesToAbort"
        promote = "medianMinutesToPromote"
        mark = " *" if c["scenario"] in changed else ""
        lines.append(
            f"| {c['setup']} | {c.get('analysis', 'spec')} | {c['scenario']}{mark} | {c['tolerance']:g} "
            f"| {_count(b, 'aborted', abort)} → {_count(c, 'aborted', abort)} "
            f"| {_count(b, 'promoted', promote)} → {_count(c, 'promoted', promote)} "
            f"| {b['held']} → {_held(c)} |"
        )
    return lines


def changed_scenarios(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The scenarios whose description (their traffic) differs between two results."""
    old, new = before["config"]["scenarios"], now["config"]["scenarios"]
    return [name for name in new if name in old and old[name] != new[name]]


def _code(code: dict[str, Any]) -> str:
    changed = code.get("changedEngineFiles") or []
    text = f"commit {code.get('commit') or '?'}"
    if code.get("note"):
        text += f" ({code['note']})"
    return text + (
        f", engine files changed: {', '.join(changed)}" if changed else ", engine as committed"
    )


def markdown(result: dict[str, Any], command: str) -> str:
    cfg = result["config"]
    cells = result["cells"]
    lines = [
        "# Real-Prometheus repeated-look fleet — results",
        "",
        f"`{command}`: {result['seconds']:.0f} s; {_code(result['code'])}.",
        "",
        f"{cfg['pairsPerScenario']} pairs (canary, baseline) per scenario, "
        f"{cfg['requestsPerMinutePerVersion']:g} requests/min per version, base error rate "
        f"{100 * cfg['baseErrorRate']:g} %, scraped every {cfg['scrapeSeconds']:g} s into a real "
        f"Prometheus; `verdict analyze` over the window from the canary's start, every "
        f"{cfg['lookEveryMinutes']} min up to {cfg['horizonMinutes']} min. The first pass promotes, "
        "the first fail aborts, a pair still inconclusive at 60 min is held. Median minutes in "
        "brackets; a regression's promotions are false promotes.",
        "",
        "Set-ups: " + "; ".join(f"**{k}**: {v}" for k, v in cfg["setups"].items()) + ".",
        "",
        "Analyses: " + "; ".join(f"**{k}**: {v}" for k, v in cfg["analyses"].items()) + ".",
        "",
        "Scenarios: " + "; ".join(f"**{k}**: {v}" for k, v in cfg["scenarios"].items()) + ".",
        "",
        *table(cells),
        "",
    ]
    found = targets(result)
    if found:
        lines += ["## Issue 23's fleet targets", "", "| figure | target | this run | met |",
                  "|---|---|---|---|"]  # fmt: skip
        lines += [f"| {t['figure']} | {t['target']} | {t['now']} | {'yes' if t['met'] else 'no'} |"
                  for t in found]  # fmt: skip
        lines.append("")
    held = [c for c in cells if c["heldReasons"]]
    if held:
        lines += ["## Why pairs were held (the last look's reason, numbers blanked)", ""]
        for c in held:
            where = f"{c['setup']} / {c.get('analysis', 'spec')} / {c['scenario']} / tol {c['tolerance']:g}"
            lines += [
                f"* {where}, {count}×: {reason}" for reason, count in c["heldReasons"].items()
            ]
        lines.append("")
    errors = [c for c in cells if c["errors"]]
    if errors:
        lines += ["## Errors", ""]
        lines += [
            f"* {' / '.join(map(str, _key(c)))}: {r}" for c in errors for r in c["errorReasons"]
        ]
        lines.append("")
    before = result.get("before")
    if before and before.get("started") != result.get("started"):
        changed = changed_scenarios(before, result)
        lines += [
            "## Before and now",
            "",
            f"Before: {_code(before['code'])}; {before['seconds']:.0f} s.",
            "",
        ]
        if changed:
            lines += [
                "**\\* The scenario changed between the two runs**, so its row compares different "
                "traffic: " + "; ".join(
                    f"{name}: before \"{before['config']['scenarios'][name]}\", now "
                    f"\"{result['config']['scenarios'][name]}\"" for name in changed
                ) + f". The before run's shared incident ({100 * BEFORE_INCIDENT[2]:g} %) stayed "
                "under the spec's 1 % SLO and tested no hold; now "
                f"({100 * INCIDENT[2]:g} %) it is over the SLO and under the 2 % rollback trigger.",
                "",
            ]  # fmt: skip
        lines += [*_compare_table(before["cells"], cells, changed), ""]
    lines += [
        "## Cost",
        "",
        "| set-up | backfill, s | looks | looking, s | ms per look |",
        "|---|---|---|---|---|",
        *(f"| {k} | {v['backfillSeconds']:g} | {v['looks']} | {v['lookSeconds']:g} | {v['msPerLook']:g} |"
          for k, v in result["timings"].items()),
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def console_tables(result: dict[str, Any]) -> list[str]:
    marks = [f"{'met    ' if t['met'] else 'NOT MET'} {t['figure']}: {t['now']} (target {t['target']})"
             for t in targets(result)]  # fmt: skip
    return ["", *table(result["cells"]), "", *marks]

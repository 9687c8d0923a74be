"""What judging costs: judge throughput, memory per run, Prometheus end to end, and scaling.

Headlines are ratios (absolute seconds depend on the machine and are printed too):

* looks/s of the three-metric default analysis, through `judge_observations(looks=[k])` (what the
  canary loop and the web provider call) and through the vectorised `metric_looks` path;
* runs kept in memory per 100 MB (tracemalloc of a 40-minute run's Observations);
* one `run_analysis` against a real Prometheus, at 1, 100 and 1000 series (pods) per version.
  `PrometheusSource` reads a window of many looks once: the raw samples of each counter and
  version, in pages (`metrics/increase.py` turns them into every look's cumulative increase).
  It is compared with the path it replaces, one instant query of the cumulative increase since
  the window's start at the end of every interval (timed through the source, and as the same
  queries sent with `requests` alone, 4 at a time), and with one range query of per-interval
  increases per counter, the cheapest way to get per-interval counts; the web provider's
  one-look window is timed both ways too;
* the issue's targets for one small service (`benchmarks/cost_targets.py`);
* time per look at 1000 looks ÷ at 10 looks, and at 1000 concurrent runs ÷ 1 run (flat = 1).
"""

from __future__ import annotations

import gc
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import requests

from analyzer.analysis import Observations, fetch_observations, judge_observations, run_analysis
from analyzer.demo import default_analysis
from analyzer.judge import decide
from analyzer.looks import CODES_TO_STATUS, metric_looks
from analyzer.plan import AnalysisPlan
from analyzer.spec import AnalysisSpec, plan_analysis
from benchmarks import prom
from benchmarks.prom import counter_selectors
from metrics.prometheus import PrometheusSource
from metrics.promql import increase_query, promql_duration
from metrics.simulated import SimulatedSource, TrafficModel
from metrics.source import HistogramSeries, RatioSeries, Series, Window

STEP = timedelta(seconds=30)
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MODEL = TrafficModel(requests_per_second=100.0, baseline_error_rate=0.005, canary_error_rate=0.005)


def one_metric(spec: AnalysisSpec) -> AnalysisSpec:
    return spec.model_copy(update={"metrics": spec.metrics[:1]})


def observations(spec: AnalysisSpec, intervals: int, seed: int = 1) -> Observations:
    """A canary at 10 % weight: what `fetch_observations` returns from a simulated source."""
    source = SimulatedSource(MODEL, lambda _t: 10.0, seed=seed)
    window = Window(start=START, end=START + STEP * intervals, step=STEP)
    return fetch_observations(plan_analysis(spec), source, window)


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def vectorised_verdicts(spec: AnalysisSpec, obs: Observations) -> list[str]:
    """Every look's verdict from `metric_looks` + `decide` (the benchmark replay's path)."""
    codes = []
    for metric in plan_analysis(spec).metrics:
        canary, baseline = obs.series[metric.name]
        assert canary is not None
        looks = metric_looks(
            metric, canary, baseline, obs.prerun.get(metric.name), alpha=metric.alpha, beta=metric.beta
        )
        codes.append(looks.codes)  # failures already stick
    critical = [m.critical for m in spec.metrics]
    weights = [m.weight for m in spec.metrics]
    out = []
    for k in range(len(codes[0])):
        statuses = [CODES_TO_STATUS[int(c[k])] for c in codes]
        out.append(str(decide(statuses, critical, weights, plan_analysis(spec).scoring)))
    return out


def throughput(quick: bool) -> dict[str, Any]:
    intervals = 80  # a 40-minute run of 30 s looks
    rows = {}
    for label, spec in (("one metric (error-rate)", one_metric(default_analysis())),
                        ("three metrics (default analysis)", default_analysis())):
        obs = observations(spec, intervals)
        looks = _spaced(intervals, 6 if quick else intervals)

        def per_look(obs: Observations = obs, plan: AnalysisPlan = plan_analysis(spec), looks: Iterable[int] = looks) -> None:
            for k in looks:
                judge_observations(plan, obs, looks=[k])

        n_looks = len(list(looks))
        loop = _timed(per_look, 1)
        vec = _timed(partial(vectorised_verdicts, spec, obs), 3 if quick else 10)
        rows[label] = {
            "judge_observations_looks_per_second": n_looks / loop,
            "vectorised_looks_per_second": intervals / vec,
            "vectorised_speed_up": (intervals / vec) / (n_looks / loop),
            "seconds_per_look_judge_observations": loop / n_looks,
        }
    return {"intervals": intervals, "analyses": rows}


def memory() -> dict[str, Any]:
    """Bytes a 40-minute run's Observations (per-interval counts, both versions) hold."""
    spec = default_analysis()
    intervals = 80
    source = SimulatedSource(MODEL, lambda _t: 10.0, seed=3)
    window = Window(start=START, end=START + STEP * intervals, step=STEP)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    runs = [fetch_observations(plan_analysis(spec), source, window) for _ in range(20)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    kept = sum(s.size_diff for s in after.compare_to(before, "filename"))
    per_run = kept / len(runs)
    arrays = sum(_nbytes(s) for obs in runs[:1] for pair in obs.series.values() for s in pair)
    requests_in_run = sum(float(np.sum(s.total)) for s in runs[0].series["error-rate"] if isinstance(s, RatioSeries))
    return {
        "intervals": intervals,
        "metrics": len(spec.metrics),
        "bytes_per_run_tracemalloc": per_run,
        "bytes_per_run_numpy_arrays": arrays,
        "runs_per_100_mb": 100e6 / per_run,
        "requests_in_run": requests_in_run,
        "raw_latency_samples_bytes": requests_in_run * 8.0,
        "note": "the engine keeps per-interval counts (2 numbers per ratio metric, one per bucket per "
        "histogram) per version, not per-request samples; raw_latency_samples_bytes is what keeping "
        "one float64 latency per request of the run would take",
    }


def _nbytes(series: Series | None) -> int:
    if isinstance(series, RatioSeries):
        return int(series.bad.nbytes + series.total.nbytes)
    if isinstance(series, HistogramSeries):
        return int(series.counts.nbytes + series.bounds.nbytes)
    return 0


def _copy(obs: Observations) -> Observations:
    def copy(s: Series | None) -> Series | None:
        if isinstance(s, RatioSeries):
            return RatioSeries(bad=s.bad.copy(), total=s.total.copy())
        if isinstance(s, HistogramSeries):
            return HistogramSeries(bounds=s.bounds.copy(), counts=s.counts.copy())
        return None

    return Observations(window=obs.window, series={n: (copy(c), copy(b)) for n, (c, b) in obs.series.items()})


def _slice(obs: Observations, k: int) -> Observations:
    def cut(s: Series | None) -> Series | None:
        if isinstance(s, RatioSeries):
            return RatioSeries(bad=s.bad[:k], total=s.total[:k])
        if isinstance(s, HistogramSeries):
            return HistogramSeries(bounds=s.bounds, counts=s.counts[:k])
        return None

    window = Window(start=obs.window.start, end=obs.window.start + obs.window.step * k, step=obs.window.step)
    return Observations(window=window, series={n: (cut(c), cut(b)) for n, (c, b) in obs.series.items()})


def _spaced(n: int, count: int) -> list[int]:
    """Up to `count` look numbers spread evenly over 1..n (always including n)."""
    return sorted({round(float(x)) for x in np.linspace(1, n, min(n, count))})


def scaling(quick: bool) -> dict[str, Any]:
    """Per-look cost as a run grows (the canary loop: look k judges the window of k intervals;
    up to `sample` looks spread over the run are timed) and as concurrent runs grow (one look of
    each run)."""
    spec = default_analysis()
    look_counts = [10, 100, 300] if quick else [10, 100, 1000]
    sample = 5 if quick else 40
    by_looks = {}
    for n in look_counts:
        obs = observations(spec, n, seed=5)
        chosen = _spaced(n, sample)
        plan = plan_analysis(spec)
        t = time.perf_counter()
        for k in chosen:
            judge_observations(plan, _slice(obs, k), looks=[k])
        loop = (time.perf_counter() - t) / len(chosen)
        vec = _timed(partial(vectorised_verdicts, spec, obs), 3) / n
        by_looks[str(n)] = {
            "seconds_per_look": loop,
            "looks_timed": len(chosen),
            "vectorised_seconds_per_look": vec,
        }
    run_counts = [1, 5, 20] if quick else [1, 100, 1000]
    by_runs = {}
    intervals = 20
    template = observations(spec, intervals, seed=100)
    for r in run_counts:
        # r runs in the same state (copies of one run's arrays): only their number differs
        batch = [_copy(template) for _ in range(r)]
        plan = plan_analysis(spec)
        t = time.perf_counter()
        for obs in batch:
            judge_observations(plan, obs, looks=[intervals])
        by_runs[str(r)] = {"seconds_per_look": (time.perf_counter() - t) / r}
    first_l, last_l = str(look_counts[0]), str(look_counts[-1])
    first_r, last_r = str(run_counts[0]), str(run_counts[-1])
    return {
        "by_looks": by_looks,
        "by_runs": by_runs,
        "run_intervals": intervals,
        "look_growth_ratio": by_looks[last_l]["seconds_per_look"] / by_looks[first_l]["seconds_per_look"],
        "vectorised_look_growth_ratio": by_looks[last_l]["vectorised_seconds_per_look"]
        / by_looks[first_l]["vectorised_seconds_per_look"],
        "run_growth_ratio": by_runs[last_r]["seconds_per_look"] / by_runs[first_r]["seconds_per_look"],
    }


INSTANT_ONLY = 10**9  # `range_read_from` that keeps a source on one instant query a look
RAW_PARALLEL = 4  # run_analysis fetches 4 series at a time, each sending 4 queries at a time


def instant_queries(selectors: list[tuple[str, bool]], window: Window) -> list[list[tuple[str, float]]]:
    """The queries `PrometheusSource` sends (metrics/prometheus.py): per counter selector, the
    cumulative increase since the window's start at the end of every interval, whole window first."""
    step = window.step.total_seconds()
    ends = window.interval_ends()
    out = []
    for selector_text, by_le in selectors:
        qs = [(increase_query(selector_text, step * (k + 1), by_le=by_le), end.timestamp()) for k, end in enumerate(ends)]
        out.append([qs[-1], *qs[:-1]])
    return out


def range_queries(selectors: list[tuple[str, bool]], window: Window) -> list[str]:
    """The cheapest equivalent: one range query of per-interval increases per counter selector."""
    step = window.step.total_seconds()
    return [increase_query(sel, step, by_le=by_le) for sel, by_le in selectors]


def prometheus_end_to_end(quick: bool) -> dict[str, Any]:
    pod_counts = [1, 10, 100] if quick else [1, 100, 1000]
    minutes = 5 if quick else 10
    repeat = 2 if quick else 7
    services = prom.services_for(pod_counts)
    start, end = prom.window_bounds(datetime.now(UTC), minutes)
    window = Window(start=start, end=end, step=STEP)
    one = Window(start=start, end=end, step=end - start)
    base = default_analysis()
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="verdict-bench-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        om = root / "data.om"
        with om.open("w", encoding="utf-8") as out:
            samples = prom.write_openmetrics(services, start, end, out)
        tsdb = root / "tsdb"
        prom.create_blocks(om, tsdb)
        om.unlink()
        setup = time.perf_counter() - t
        with prom.serve(tsdb, root) as url:
            session = requests.Session()
            source = PrometheusSource(url, timeout=60.0)
            params: dict[str, str | float] = {
                "start": (window.start + window.step).timestamp(),
                "end": (window.start + window.step * window.intervals).timestamp(),
                "step": promql_duration(STEP.total_seconds()),
            }
            for service in services:
                canary = {"destination_service_name": f"{service.name}-canary"}
                baseline = {"destination_service_name": f"{service.name}-stable"}
                spec = base.model_copy(update={"canary": canary, "baseline": baseline})
                selectors = counter_selectors(spec, canary, baseline)
                per_selector = instant_queries(selectors, window)
                ranges = range_queries(selectors, window)

                def instant(query: tuple[str, float]) -> None:
                    r = session.get(f"{url}/api/v1/query", params={"query": query[0], "time": f"{query[1]:.3f}"}, timeout=60)
                    r.raise_for_status()
                    assert r.json()["status"] == "success"

                def one_selector(queries: list[tuple[str, float]]) -> None:
                    instant(queries[0])
                    with ThreadPoolExecutor(max_workers=RAW_PARALLEL) as threads:
                        list(threads.map(instant, queries[1:]))

                def raw(per_selector: list[list[tuple[str, float]]] = per_selector) -> None:
                    # the same concurrency as Verdict: 4 selectors at a time, 4 queries each
                    with ThreadPoolExecutor(max_workers=RAW_PARALLEL) as selectors_pool:
                        list(selectors_pool.map(one_selector, per_selector))

                def raw_range(ranges: list[str] = ranges) -> None:
                    for promql in ranges:
                        r = session.get(f"{url}/api/v1/query_range", params={"query": promql, **params}, timeout=60)
                        r.raise_for_status()
                        assert r.json()["status"] == "success"

                def verdict(spec: AnalysisSpec = spec, **options: Any) -> None:
                    # a fresh source each time: none of its answers cached (a first analysis)
                    cold = PrometheusSource(url, timeout=60.0, **options)
                    try:
                        report = run_analysis(plan_analysis(spec), cold, window)
                    finally:
                        cold.close()
                    assert report.looks == window.intervals

                def verdict_again(spec: AnalysisSpec = spec) -> None:
                    # the same source again: settled answers come from its cache (a canary's
                    # next look asks only about the newest instants)
                    report = run_analysis(plan_analysis(spec), source, window)
                    assert report.looks == window.intervals

                def one_look(spec: AnalysisSpec = spec, **options: Any) -> None:
                    # the web provider's look: one interval from the run's start, cold
                    cold = PrometheusSource(url, timeout=60.0, **options)
                    try:
                        fetch_observations(plan_analysis(spec), cold, one)
                    finally:
                        cold.close()

                verdict_instant = partial(verdict, range_read_from=INSTANT_ONLY)
                one_look_raw = partial(one_look, range_read_from=1)
                # the instant-query paths cost ~30 s an analysis at 1000 series: timed fewer times
                slow_repeat = 1 if service.pods >= 1000 else repeat
                raw()
                raw_range()
                verdict()  # warm every path (Prometheus caches, connection pools)
                verdict_again()  # fills the source's cache
                one_look()
                one_look_raw()
                raw_times, range_times, verdict_times, again_times = [], [], [], []
                instant_times, one_times, one_raw_times = [], [], []
                for i in range(repeat):  # interleaved, so drift hits all of them
                    if i < slow_repeat:
                        raw_times.append(_timed(raw, 1))
                        instant_times.append(_timed(verdict_instant, 1))
                    range_times.append(_timed(raw_range, 1))
                    verdict_times.append(_timed(verdict, 1))
                    again_times.append(_timed(verdict_again, 1))
                    one_times.append(_timed(one_look, 1))
                    one_raw_times.append(_timed(one_look_raw, 1))
                fetched = fetch_observations(plan_analysis(spec), source, window)
                judge_only = _timed(partial(judge_observations, plan_analysis(spec), fetched), repeat)
                rows[str(service.pods)] = {
                    "service": service.name,
                    "queries": sum(len(q) for q in per_selector),
                    "range_queries": len(ranges),
                    "raw_seconds": statistics.median(raw_times),
                    "raw_range_seconds": statistics.median(range_times),
                    "verdict_seconds": statistics.median(verdict_times),
                    "ratio": statistics.median(verdict_times) / statistics.median(raw_times),
                    "ratio_to_range_queries": statistics.median(verdict_times) / statistics.median(range_times),
                    "verdict_cached_seconds": statistics.median(again_times),
                    "ratio_cached_to_range_queries": statistics.median(again_times) / statistics.median(range_times),
                    "judge_seconds": judge_only,
                    "verdict_instant_seconds": statistics.median(instant_times),
                    "ratio_instant_to_range_queries": statistics.median(instant_times)
                    / statistics.median(range_times),
                    "one_look_instant_seconds": statistics.median(one_times),
                    "one_look_raw_read_seconds": statistics.median(one_raw_times),
                }
            source.close()
            session.close()
    return {
        "window_minutes": minutes,
        "looks": window.intervals,
        "scrape_seconds": prom.SCRAPE_SECONDS,
        "samples_written": samples,
        "setup_seconds": setup,
        "repeats": repeat,
        "by_series_per_version": rows,
    }


def run_cost(*, quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "cost", "quick": quick}
    print("  judge throughput ...", flush=True)
    result["throughput"] = throughput(quick)
    print("  memory ...", flush=True)
    result["memory"] = memory()
    print("  scaling with looks and runs ...", flush=True)
    result["scaling"] = scaling(quick)
    print("  Prometheus end to end ...", flush=True)
    result["prometheus"] = prometheus_end_to_end(quick)
    print("  targets of one small service (read once, judge, web answer, start) ...", flush=True)
    from benchmarks.cost_targets import run_targets

    result["targets"] = run_targets(quick)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def console_tables(result: dict[str, Any]) -> Iterable[str]:
    yield "Judge throughput (40-minute run, 80 looks)"
    for label, row in result["throughput"]["analyses"].items():
        yield (
            f"  {label:<34} judge_observations {row['judge_observations_looks_per_second']:8.0f} looks/s"
            f"   vectorised {row['vectorised_looks_per_second']:9.0f} looks/s"
            f"   (×{row['vectorised_speed_up']:.0f})"
        )
    m = result["memory"]
    yield (
        f"Memory: {m['bytes_per_run_tracemalloc'] / 1024:.1f} KiB per 40-minute run "
        f"(numpy arrays {m['bytes_per_run_numpy_arrays'] / 1024:.1f} KiB) → "
        f"{m['runs_per_100_mb']:,.0f} runs per 100 MB"
    )
    s = result["scaling"]
    yield "Time per look as a run grows (judge_observations at look k on k intervals)"
    for n, row in s["by_looks"].items():
        yield f"  {n:>5} looks: {1e3 * row['seconds_per_look']:7.2f} ms/look   vectorised {1e3 * row['vectorised_seconds_per_look']:6.3f} ms/look"
    yield f"  growth ratio (largest ÷ smallest): {s['look_growth_ratio']:.2f} (vectorised {s['vectorised_look_growth_ratio']:.2f})"
    yield f"Time per look with concurrent runs ({s['run_intervals']} intervals each)"
    for r, row in s["by_runs"].items():
        yield f"  {r:>5} runs: {1e3 * row['seconds_per_look']:7.2f} ms/look"
    yield f"  growth ratio (largest ÷ smallest): {s['run_growth_ratio']:.2f}"
    p = result["prometheus"]
    yield f"Prometheus end to end ({p['window_minutes']}-minute window, {p['looks']} looks, default analysis)"
    for n, row in p["by_series_per_version"].items():
        yield (
            f"  {n:>5} series/version: raw read {row['verdict_seconds'] * 1e3:8.1f} ms, one instant query a look "
            f"{row['verdict_instant_seconds'] * 1e3:8.1f} ms | one look: instant {row['one_look_instant_seconds'] * 1e3:6.1f} ms, "
            f"raw read {row['one_look_raw_read_seconds'] * 1e3:6.1f} ms"
        )
        yield (
            f"  {n:>5} series/version: run_analysis {row['verdict_seconds'] * 1e3:8.1f} ms | same "
            f"{row['queries']} instant queries with requests {row['raw_seconds'] * 1e3:8.1f} ms → ratio {row['ratio']:.2f}"
            f" | {row['range_queries']} range queries {row['raw_range_seconds'] * 1e3:7.1f} ms → ratio {row['ratio_to_range_queries']:.1f}"
        )
    if "targets" in result:
        from benchmarks.cost_targets import target_rows

        yield "Targets (one small service)"
        for figure, measured, target, met in target_rows(result):
            mark = "" if met is None else ("  met" if met else "  NOT met")
            yield f"  {figure}: {measured} (target {target}){mark}"

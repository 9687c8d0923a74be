"""Verdict's own Prometheus metrics (`GET /metrics`), in a registry per app (no globals)."""

from __future__ import annotations

import math
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Telemetry:
    """Counters and histograms of the web provider.

    * `verdict_looks_total{analysis}`: looks answered (HTTP 200);
    * `verdict_verdicts_total{analysis,verdict}`: the verdicts answered;
    * `verdict_look_errors_total{analysis,code}`: calls that could not look (4xx/5xx, by code);
    * `verdict_look_duration_seconds`: a look from request to answer;
    * `verdict_prometheus_query_duration_seconds`: one metric of one version fetched from
      Prometheus (one or two instant queries);
    * `verdict_fetch_duration_seconds`: all metrics of both versions fetched for one look (wall
      time; the fetches run a few at a time, so it is less than the sum of the query durations);
    * `verdict_judge_duration_seconds`: judging one look (the statistics: CPU time);
    * `verdict_active_runs`: runs in the store (read at scrape time; NaN when the store is down);
    * `verdict_store_writes_total`: write transactions the run store committed (a store that
      counts them: `count_store_writes`).
    """

    def __init__(self, active_runs: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._counts_store_writes = False
        self.looks = Counter(
            "verdict_looks_total",
            "Looks answered with a verdict.",
            ["analysis"],
            registry=self.registry,
        )
        self.verdicts = Counter(
            "verdict_verdicts_total",
            "Verdicts answered, by outcome.",
            ["analysis", "verdict"],
            registry=self.registry,
        )
        self.errors = Counter(
            "verdict_look_errors_total",
            "Calls answered with an error, by error code.",
            ["analysis", "code"],
            registry=self.registry,
        )
        self.look_seconds = Histogram(
            "verdict_look_duration_seconds",
            "Time to answer one verdict call.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.query_seconds = Histogram(
            "verdict_prometheus_query_duration_seconds",
            "Time to fetch one metric of one version from Prometheus (one or two instant queries).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fetch_seconds = Histogram(
            "verdict_fetch_duration_seconds",
            "Wall time to fetch every metric of both versions for one look.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.judge_seconds = Histogram(
            "verdict_judge_duration_seconds",
            "Time to judge one look's observations (statistics, CPU).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        active = Gauge(
            "verdict_active_runs",
            "Runs in the run store (not yet expired).",
            registry=self.registry,
        )

        def count() -> float:
            try:
                return float(active_runs())
            except Exception:  # a scrape must not fail because the store is down
                return math.nan

        active.set_function(count)

    def count_store_writes(self, writes: Callable[[], int]) -> None:
        """Expose `verdict_store_writes_total`, read from `writes()` at scrape time (once)."""
        if not self._counts_store_writes:
            self.registry.register(_StoreWrites(writes))
            self._counts_store_writes = True

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoreWrites(Collector):
    def __init__(self, writes: Callable[[], int]) -> None:
        self._writes = writes

    def collect(self) -> list[CounterMetricFamily]:
        return [
            CounterMetricFamily(
                "verdict_store_writes",
                "Write transactions the run store committed.",
                value=float(self._writes()),
            )
        ]

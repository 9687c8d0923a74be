"""The metric sources of looks: one per analysis, with timeouts that fit the look budget."""

from __future__ import annotations

import threading
from collections.abc import Callable

from analyzer.spec import AnalysisSpec
from metrics.factory import SourcePool, SourceSettings
from metrics.fleet import DEFAULT_GATHER, FleetSource
from metrics.prometheus import PrometheusSource
from metrics.source import MetricSource

SourceFactory = Callable[[AnalysisSpec], MetricSource]
"""Gives the metric source to ask for one analysis (the same object may be shared)."""


def query_limits(spec: AnalysisSpec, look_budget: float) -> tuple[float, int]:
    """Per-query timeout and retries for a look within `look_budget` seconds: a quarter of the
    budget (or the file's `prometheus.timeout` if shorter) and at most one retry."""
    return min(spec.prometheus.timeout, look_budget / 4), min(spec.prometheus.retries, 1)


class PrometheusSources:
    """The default `SourceFactory`: one Prometheus source per server and settings, reused
    across looks (`metrics.factory.SourcePool`), with timeouts derived from the look budget.
    `url` (from `--prometheus-url`) overrides every analysis file's own."""

    def __init__(
        self, *, look_budget: float, url: str | None = None, gather: float = DEFAULT_GATHER
    ) -> None:
        """`gather`: seconds a look waits for the looks of other runs of its analysis, to read
        them together (`metrics.fleet.FleetSource`; only while other looks arrive); 0: every
        look reads alone."""
        self.look_budget = look_budget
        self.url = url
        self.gather = gather
        self._pool = SourcePool()
        self._fleets: dict[int, FleetSource] = {}
        self._lock = threading.Lock()

    def url_for(self, spec: AnalysisSpec) -> str | None:
        return self.url or spec.prometheus.url

    def settings_for(self, spec: AnalysisSpec) -> SourceSettings:
        """Raises `metrics.errors.SourceUnavailable` when the analysis has no URL."""
        timeout, retries = query_limits(spec, self.look_budget)
        return SourceSettings.of(
            self.url_for(spec),
            timeout=timeout,
            retries=retries,
            headers=spec.prometheus.headers,
            compress=spec.prometheus.compress,
            what=f"analysis {spec.name!r}",
            max_answer_bytes=spec.prometheus.max_answer_bytes,
            max_series=spec.prometheus.max_series,
            bearer_token_file=spec.prometheus.bearer_token_file,
        )

    def __call__(self, spec: AnalysisSpec) -> MetricSource:
        source = self._pool.get(self.settings_for(spec))
        if self.gather <= 0 or not isinstance(source, PrometheusSource):
            return source
        with self._lock:  # one fleet reader per pooled source, so that its looks meet
            fleet = self._fleets.get(id(source))
            if fleet is None or fleet.inner is not source:
                fleet = self._fleets[id(source)] = FleetSource(source, gather=self.gather)
        return fleet

    def close(self) -> None:
        self._pool.close()

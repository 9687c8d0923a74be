"""A simulated metric source: the same observations as Prometheus, from a traffic model.

It serves the demo, tests and benchmarks. Each interval's draws come from a generator seeded by
(seed, version, interval end time), so fetching the same window twice gives the same numbers and a
longer window extends a shorter one: exactly like querying a real Prometheus again.

Per interval of length `step` ending at t, for a version with traffic share s(t):
    requests ~ Poisson(rps × step × s(t) × cycle(t))
    bad      ~ Binomial(requests, p(t) × noise),   noise ~ LogNormal(0, overdispersion) per interval
    latency  ~ LogNormal(log median, sigma) (× factor for a regressed canary; a tail fraction × tail
               factor), binned into Istio's default buckets by a multinomial draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from metrics.source import (
    HistogramSeries,
    MetricKind,
    MetricQuery,
    RatioSeries,
    Series,
    Version,
    Window,
)

# Istio's default request-duration buckets (milliseconds), converted to seconds.
_ISTIO_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
_ISTIO_BUCKETS_MS_LONG = (300000, 600000, 1800000, 3600000)
ISTIO_BUCKETS_SECONDS: tuple[float, ...] = (
    *(ms / 1000.0 for ms in (*_ISTIO_BUCKETS_MS, *_ISTIO_BUCKETS_MS_LONG)),
    math.inf,
)

WeightAt = Callable[[datetime], float]


@dataclass(frozen=True)
class TrafficModel:
    """How the service behaves. Rates are fractions; latencies in seconds."""

    requests_per_second: float = 100.0
    baseline_error_rate: float = 0.001
    canary_error_rate: float = 0.001
    latency_median: float = 0.08
    latency_sigma: float = 0.5
    canary_latency_factor: float = 1.0
    canary_tail_fraction: float = 0.0
    canary_tail_factor: float = 3.0
    regression_start: datetime | None = None  # canary behaves like the baseline before this time
    overdispersion: float = (
        0.0  # sd of log-normal noise on the error rate, per interval and version
    )
    cycle_amplitude: float = 0.0  # traffic varies by ± this fraction ...
    cycle_period: timedelta = timedelta(hours=24)  # ... over this period
    canary_has_series: bool = True

    def regressed_at(self, t: datetime) -> bool:
        return self.regression_start is None or t >= self.regression_start

    def healthy_canary(self) -> TrafficModel:
        return replace(
            self,
            canary_error_rate=self.baseline_error_rate,
            canary_latency_factor=1.0,
            canary_tail_fraction=0.0,
        )


class SimulatedSource:
    """A `MetricSource` over a `TrafficModel`; `canary_weight(t)` gives the canary's share in percent."""

    def __init__(
        self,
        model: TrafficModel,
        canary_weight: WeightAt,
        *,
        seed: int = 0,
        buckets: tuple[float, ...] = ISTIO_BUCKETS_SECONDS,
    ) -> None:
        self._model = model
        self._weight = canary_weight
        self._seed = seed
        self._bounds = np.asarray(buckets, dtype=np.float64)

    def check(self) -> None:
        return None

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        del matchers  # the model knows which version is which
        if version is Version.CANARY and not self._model.canary_has_series:
            return None
        ends = window.interval_ends()
        bad = np.zeros(len(ends))
        total = np.zeros(len(ends))
        counts = np.zeros((len(ends), len(self._bounds)))
        for i, end in enumerate(ends):
            total[i], bad[i], counts[i] = self._interval(version, end, window.step)
        if query.kind is MetricKind.HISTOGRAM:
            return HistogramSeries(bounds=self._bounds.copy(), counts=counts)
        return RatioSeries(bad=bad, total=total)

    def _interval(
        self, version: Version, end: datetime, step: timedelta
    ) -> tuple[float, float, np.ndarray]:
        m = self._model
        middle = end - step / 2
        key = round(end.timestamp() * 1000)
        rng = np.random.default_rng([self._seed, 1 if version is Version.CANARY else 2, key])
        weight = min(max(self._weight(middle), 0.0), 100.0) / 100.0
        share = weight if version is Version.CANARY else 1.0 - weight
        cycle = 1.0 + m.cycle_amplitude * math.sin(
            2 * math.pi * middle.timestamp() / m.cycle_period.total_seconds()
        )
        expected = m.requests_per_second * step.total_seconds() * share * max(cycle, 0.0)
        n = int(rng.poisson(expected))
        regressed = version is Version.CANARY and m.regressed_at(middle)
        p = m.canary_error_rate if regressed else m.baseline_error_rate
        noise = float(rng.lognormal(0.0, m.overdispersion)) if m.overdispersion > 0 else 1.0
        bad = int(rng.binomial(n, min(p * noise, 1.0)))
        probs = self._bucket_probabilities(regressed)
        counts = rng.multinomial(n, probs).astype(np.float64)
        return float(n), float(bad), counts

    def _bucket_probabilities(self, regressed: bool) -> np.ndarray:
        m = self._model
        factor = m.canary_latency_factor if regressed else 1.0
        tail = m.canary_tail_fraction if regressed else 0.0
        median = m.latency_median * factor
        probs = lognormal_bucket_probabilities(self._bounds, median, m.latency_sigma)
        if tail > 0:
            slow = lognormal_bucket_probabilities(
                self._bounds, median * m.canary_tail_factor, m.latency_sigma
            )
            probs = (1 - tail) * probs + tail * slow
        return probs


def lognormal_bucket_probabilities(
    bounds: npt.ArrayLike, median: float, sigma: float
) -> npt.NDArray[np.float64]:
    """Probability that a log-normal latency falls in each bucket (`bounds` ascending, last +Inf).

    Units are the caller's: `median` in the same unit as `bounds`.
    """
    upper = np.asarray(bounds, dtype=np.float64)
    with np.errstate(divide="ignore"):
        z = (np.log(upper) - math.log(median)) / sigma
    cdf = np.where(np.isposinf(upper), 1.0, norm.cdf(z))
    probs = np.clip(np.diff(cdf, prepend=0.0), 0.0, None)
    return np.asarray(probs / probs.sum(), dtype=np.float64)

"""The `MetricSource` protocol and the plain data it returns.

A source answers one question: for one metric, one version (canary or baseline)
and one time window cut into equal intervals, what happened in each interval?

* ratio metrics come back as bad and total request counts per interval;
* latency metrics come back as per-bucket (non-cumulative) request counts per
  interval, with the buckets' upper bounds (`le`) in seconds.

A version with no series at all is "no data" (`None`), never zeros.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class Version(enum.StrEnum):
    """Which side of the rollout a query is about."""

    CANARY = "canary"
    BASELINE = "baseline"


class MetricKind(enum.StrEnum):
    RATIO = "ratio"
    HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Window:
    """A time window cut into `intervals` equal intervals of length `step`.

    Interval i covers (start + i*step, start + (i+1)*step].
    """

    start: datetime
    end: datetime
    step: timedelta

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window times must be timezone-aware")
        if self.step <= timedelta(0):
            raise ValueError("window step must be positive")
        if self.end <= self.start:
            raise ValueError("window end must be after its start")

    @property
    def intervals(self) -> int:
        """Number of whole intervals in the window (at least 1)."""
        return max(1, int((self.end - self.start) / self.step))

    def interval_ends(self) -> list[datetime]:
        return [self.start + self.step * (i + 1) for i in range(self.intervals)]


@dataclass(frozen=True)
class MetricQuery:
    """What to fetch, already resolved from the analysis file.

    For ratio metrics `bad` and `total` are PromQL *counter selectors* with a
    `{{ selector }}` placeholder (e.g. `istio_requests_total{response_code=~"5..",{{ selector }}}`);
    when `good` is set instead of `bad`, bad = total - good.
    For histogram metrics `buckets` is the `_bucket` counter selector and `unit_seconds`
    converts its `le` bounds to seconds (0.001 for milliseconds).
    """

    name: str
    kind: MetricKind
    total: str = ""
    bad: str = ""
    good: str = ""
    buckets: str = ""
    unit_seconds: float = 1.0

    def counters(self) -> tuple[tuple[str, bool], ...]:
        """The counter selectors this metric reads, each with whether it is summed by `le`:
        the total and the bad (or good) counter of a ratio, the buckets of a histogram."""
        pairs: tuple[tuple[str, bool], ...] = (
            ((self.buckets, True),)
            if self.kind is MetricKind.HISTOGRAM
            else ((self.total, False), (self.bad or self.good, False))
        )
        return tuple((counter, by_le) for counter, by_le in pairs if counter)


@dataclass(frozen=True)
class RatioSeries:
    """Bad and total request counts per interval (floats: Prometheus extrapolates)."""

    bad: FloatArray
    total: FloatArray

    def __post_init__(self) -> None:
        if self.bad.shape != self.total.shape or self.bad.ndim != 1:
            raise ValueError("bad and total must be 1-D arrays of the same length")


@dataclass(frozen=True)
class HistogramSeries:
    """Per-bucket request counts per interval.

    `bounds` are the buckets' upper bounds in seconds, ascending, the last one +inf;
    `counts[i, k]` is the number of requests in interval i that fell in bucket k,
    i.e. in (bounds[k-1], bounds[k]].
    """

    bounds: FloatArray
    counts: FloatArray = field(repr=False)

    def __post_init__(self) -> None:
        if self.counts.ndim != 2 or self.counts.shape[1] != self.bounds.shape[0]:
            raise ValueError("counts must have shape (intervals, len(bounds))")
        if not np.isposinf(self.bounds[-1]):
            raise ValueError("the last bucket bound must be +Inf")

    @property
    def totals(self) -> FloatArray:
        return np.asarray(self.counts.sum(axis=1), dtype=np.float64)


Series = RatioSeries | HistogramSeries


class MetricSource(Protocol):
    """Where numbers come from. Implementations: Prometheus, simulated."""

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        """Observations of one metric for one version, per interval of `window`.

        `matchers` are the label matchers that select this version's traffic;
        they are escaped by the source before they reach any query language.
        Returns None when the version has no series at all ("no data").
        Raises `metrics.errors.SourceUnavailable` when the source cannot answer.
        """
        ...

    def check(self) -> None:
        """Raise `SourceUnavailable` if the source cannot be reached."""
        ...


@dataclass(frozen=True)
class Fetch:
    """One `MetricSource.fetch` call, named ahead of time (`ReadsAhead`)."""

    query: MetricQuery
    version: Version
    matchers: dict[str, str]
    window: Window


@runtime_checkable
class QuickToAnswer(Protocol):
    """A source that knows whether its answers come back quickly."""

    def answers_quickly(self) -> bool:
        """True when its requests are answered faster than handing each to a thread of its
        own would gain: fetches then run one after another in the caller's thread."""
        ...


@runtime_checkable
class ReadsAhead(Protocol):
    """A source that can prepare, in fewer queries, for fetches it is told of in advance."""

    def read_ahead(self, fetches: Sequence[Fetch]) -> None:
        """A hint: these fetches follow. Raises `SourceUnavailable` when the source cannot
        answer; anything else is left for the fetches themselves to meet."""
        ...


@runtime_checkable
class ReadsTogether(Protocol):
    """A source that reads the looks of many runs together (`metrics.fleet.FleetSource`)."""

    def read_together(self, fetches: Sequence[Fetch]) -> None:
        """Every fetch of one look, before any of them: the source may wait a moment for the
        looks of other runs and read them all at once; the fetches then follow as usual.
        Failures are left for the fetches themselves to meet."""
        ...

    def answered(self, fetches: Sequence[Fetch]) -> bool:
        """Whether every one of `fetches` is answered already (fetching it asks nothing)."""
        ...

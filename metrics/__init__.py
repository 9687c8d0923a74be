"""Where numbers come from: the MetricSource protocol, Prometheus and simulated sources."""

from metrics.errors import (
    BadData,
    InconsistentAnswer,
    MetricsError,
    PartialAnswer,
    QueryError,
    SourceUnavailable,
)
from metrics.source import (
    HistogramSeries,
    MetricKind,
    MetricQuery,
    MetricSource,
    RatioSeries,
    Series,
    Version,
    Window,
)

__all__ = [
    "BadData",
    "HistogramSeries",
    "InconsistentAnswer",
    "MetricKind",
    "MetricQuery",
    "MetricSource",
    "MetricsError",
    "PartialAnswer",
    "QueryError",
    "RatioSeries",
    "Series",
    "SourceUnavailable",
    "Version",
    "Window",
]

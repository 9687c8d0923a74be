"""Where numbers come from: the MetricSource protocol, Prometheus and simulated sources."""

from metrics.errors import BadData, MetricsError, QueryError, SourceUnavailable
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
    "MetricKind",
    "MetricQuery",
    "MetricSource",
    "MetricsError",
    "QueryError",
    "RatioSeries",
    "Series",
    "SourceUnavailable",
    "Version",
    "Window",
]

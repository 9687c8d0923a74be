"""Where numbers come from: the MetricSource protocol, Prometheus and simulated sources.

The names below are imported on first use, so `import metrics.errors` (the CLI's error
handling) does not import numpy.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from metrics.errors import (
        BadData,
        InconsistentAnswer,
        MetricsError,
        PartialAnswer,
        PartMissing,
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

_WHERE = {
    **dict.fromkeys(
        (
            "BadData",
            "InconsistentAnswer",
            "MetricsError",
            "PartialAnswer",
            "PartMissing",
            "QueryError",
            "SourceUnavailable",
        ),
        "metrics.errors",
    ),
    **dict.fromkeys(
        (
            "HistogramSeries",
            "MetricKind",
            "MetricQuery",
            "MetricSource",
            "RatioSeries",
            "Series",
            "Version",
            "Window",
        ),
        "metrics.source",
    ),
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'metrics' has no attribute {name!r}")
    return getattr(import_module(module), name)


__all__ = [
    "BadData",
    "HistogramSeries",
    "InconsistentAnswer",
    "MetricKind",
    "MetricQuery",
    "MetricSource",
    "MetricsError",
    "PartMissing",
    "PartialAnswer",
    "QueryError",
    "RatioSeries",
    "Series",
    "SourceUnavailable",
    "Version",
    "Window",
]

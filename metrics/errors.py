"""Named errors of the metrics package; callers match on these."""

from __future__ import annotations


class MetricsError(Exception):
    """Base class of every error raised by a metric source."""


class SourceUnavailable(MetricsError):
    """The source could not be reached, timed out, or answered with a server error."""


class QueryError(MetricsError):
    """The source rejected a query (bad PromQL, bad label name, ...)."""


class BadData(MetricsError):
    """The source answered with data that cannot be used (e.g. inconsistent buckets)."""


class PartialAnswer(BadData):
    """The source answered with warnings (Thanos, Cortex or Mimir partial responses, a failed
    remote read): the answer may miss series, so it is not read at all."""


class InconsistentAnswer(BadData):
    """Answers that cannot all be true: a version's error series seen earlier are gone."""

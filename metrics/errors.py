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


class PartMissing(BadData):
    """A ratio's part (its bad or good requests), read by a query of its own, answered no series
    while series of its total that the part selects had samples in the window: the part's answer
    lost data. The version has no data for that metric, never zero bad requests."""

    def __init__(self, part: str, selector: str, requests: float) -> None:
        self.part = part
        """Which part: `bad` or `good`."""
        self.selector = selector
        self.requests = requests
        """The total's requests in the window."""
        super().__init__(
            f"{part}-request query {selector} answered nothing while its total has "
            f"{requests:,.0f} requests: no data is never a pass"
        )


class AnswerTooLarge(BadData):
    """An answer larger than a source reads: more bytes of body than its `max_answer_bytes`, or
    more series than its `max_series`. The read stops there, so a runaway query (a selector
    that matches the whole fleet, a broken proxy streaming forever) costs bounded memory."""

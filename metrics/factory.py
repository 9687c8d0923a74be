"""Metric sources from plain settings: the one place a `PrometheusSource` is built.

`verdict analyze`, the web provider and the controller all describe the source they need as a
`SourceSettings` (URL, headers, bearer token file, timeout, retries) and get it from
`open_source`, or from a
`SourcePool` that keeps one source per distinct settings (its HTTP connections stay open across
looks).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from metrics.errors import SourceUnavailable
from metrics.source import MetricSource


@dataclass(frozen=True)
class SourceSettings:
    """Where and how to ask Prometheus."""

    url: str
    timeout: float = 5.0
    """Seconds for one HTTP attempt."""
    retries: int = 2
    """Retries of a failed attempt (connection error, timeout, 502/503/504)."""
    headers: tuple[tuple[str, str], ...] = field(default=())
    """Extra HTTP headers (e.g. `X-Scope-OrgID`), sorted pairs so settings compare equal."""
    bearer_token_file: str | None = None
    """A file holding a bearer token, read at each request (sent as `Authorization`)."""
    compress: bool = False
    """Ask for gzip answers (off: on a fast network, gzip costs Prometheus more than it saves)."""
    max_answer_bytes: int | None = None
    """The most of one answer's body read (after gzip); None: the source's default, 256 MiB."""
    max_series: int | None = None
    """The most series one answer may hold; None: the source's default, 100,000."""

    @staticmethod
    def of(
        url: str | None,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        headers: dict[str, str] | None = None,
        compress: bool = False,
        what: str = "the analysis",
        max_answer_bytes: int | None = None,
        max_series: int | None = None,
        bearer_token_file: str | None = None,
    ) -> SourceSettings:
        """Settings from loose values; raises `SourceUnavailable` when there is no URL."""
        if not url:
            raise SourceUnavailable(
                f"{what} has no Prometheus URL: set prometheus.url, "
                "--prometheus-url or VERDICT_PROMETHEUS_URL"
            )
        return SourceSettings(
            url=url,
            timeout=float(timeout),
            retries=int(retries),
            headers=tuple(sorted((headers or {}).items())),
            compress=compress,
            max_answer_bytes=max_answer_bytes,
            max_series=max_series,
            bearer_token_file=bearer_token_file or None,
        )


def open_source(settings: SourceSettings) -> MetricSource:
    """A new source for `settings` (close it with `close_source`)."""
    # heavy import, only when asked
    from metrics.prometheus import DEFAULT_MAX_SERIES, PrometheusSource
    from metrics.transport import DEFAULT_MAX_BODY_BYTES

    return PrometheusSource(
        settings.url,
        timeout=settings.timeout,
        retries=settings.retries,
        headers=dict(settings.headers) or None,
        compress=settings.compress,
        max_answer_bytes=settings.max_answer_bytes or DEFAULT_MAX_BODY_BYTES,
        max_series=settings.max_series or DEFAULT_MAX_SERIES,
        bearer_token_file=settings.bearer_token_file,
    )


def close_source(source: MetricSource) -> None:
    """Release a source's connections, if it holds any."""
    close = getattr(source, "close", None)
    if callable(close):
        close()


class SourcePool:
    """One open source per distinct `SourceSettings`, shared by every thread (sources are
    thread-safe)."""

    def __init__(self) -> None:
        self._sources: dict[SourceSettings, MetricSource] = {}
        self._lock = threading.Lock()

    def get(self, settings: SourceSettings) -> MetricSource:
        with self._lock:
            source = self._sources.get(settings)
            if source is None:
                source = open_source(settings)
                self._sources[settings] = source
            return source

    def close(self) -> None:
        with self._lock:
            sources, self._sources = list(self._sources.values()), {}
        for source in sources:
            close_source(source)

"""The Prometheus metric source: cumulative counter increases since the window's start.

For a window cut into intervals of `step`, the source asks, at the end of each interval k, for
`sum(increase(<selector>[k * step]))`: the increase of the counters since the window's start.
Interval k's count is the difference of two consecutive answers. Cumulative ranges matter:
with per-interval ranges (`increase(x[step])`) the increment between the last scrape of one
interval and the first of the next is never seen and Prometheus extrapolates each interval to
make up for it, which inflates the apparent number of requests (by 4/3 with 15 s scrapes and
1-minute intervals, by 2 with 30-second intervals) and would make any count-based bound too
narrow. Cumulative ranges extrapolate only at the window's edges. `increase()` handles counter
resets; Prometheus extrapolates, so counts are floats.

Read once: a window of a look or two sends those instant queries (a few at a time); a longer one
reads each counter's raw samples once, in time pages of about `page_samples` samples, and computes
every look's answer with Prometheus' own arithmetic (`metrics.increase`): the same numbers, one
pass over the data instead of one query per look over ever longer ranges. A source checks its
first raw read against the store's own answer for a settled look, each side by its own rules
(`_judge`): Prometheus' `increase()` must be the read's answer; a store whose `increase()`
follows other rules (VictoriaMetrics: no extrapolation) must give, with `increase_prometheus()`,
the read's plain differences of the same samples; the read then keeps Prometheus' arithmetic
(the same counts as on Prometheus), also for windows of one or two looks. If neither holds (lost
samples, another engine), it warns and keeps to the instant queries. Pages are asked so that
stores whose ranges hold their start (Prometheus 2.x) and stores whose ranges leave it out
(VictoriaMetrics, Prometheus 3) give the same samples (`_page_answer`). A ratio's part that is its total with more matchers
(Istio's 5xx, or not-5xx, of all requests) is counted from the total's raw samples, not read
again (`metrics.selectors`); the read-ahead tells each total's read every such part it will
be asked for.

Answers that cannot be trusted are refused: one carrying `warnings` (a partial response) raises
`PartialAnswer`; series answered at an earlier look since the same start and missing now (an
error query that lost its data would read as "no errors") raise `InconsistentAnswer`.

An empty part. Prometheus rightly answers nothing for `istio_requests_total{response_code=~"5.."}`
when no 5xx was ever answered (no such series exists), so an empty part alone is not an error;
but a part that lost its answer must not read as zero bad requests. Counted from its total's
raw samples, a part is exact. Read by its own query (a window of one or two looks, such as a
run's first looks), its total is its witness when the part is the total with more matchers
(`metrics.selectors`): the part's `increase_query` answers as soon as one series of the part
has two samples in the range (at 0 when it did not grow). So when the part
answers no series at all while the total has requests, the source lists the label values of
the total's series that the same range holds (one query, `_part_series_query`, only then); if
any of them is one the part selects (or one it cannot tell), the part's answer lost data and
`PartMissing` is raised: the version has no data for the metric (and the part's cached answers
are dropped, so a later look asks again). A part that is not the total with more matchers
(another metric name, a matcher `metrics.selectors` cannot evaluate) has no such witness, and
its empty answer stays zero. (Another version showing the part is no witness: a healthy canary
often has no 5xx where its baseline has a few.)

Ratio metrics become bad/total counts per interval, histograms per-bucket counts per interval.
Every failure becomes one of the named errors of `metrics.errors`: `SourceUnavailable` (cannot
reach Prometheus, timeout, server error), `QueryError` (Prometheus rejected the query) or
`BadData` (an answer Verdict cannot use); no requests/urllib3 exception escapes.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import math
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import structlog
import urllib3.exceptions
from urllib3.util.retry import Retry

from metrics.errors import (
    AnswerTooLarge,
    BadData,
    InconsistentAnswer,
    PartialAnswer,
    PartMissing,
    QueryError,
    SourceUnavailable,
)
from metrics.increase import CumulativeIncrease, LabelKey, Page
from metrics.matrix import (
    Matrix,
    NotAMatrix,
    count_samples,
    decode_matrix,
    decode_vector_keys,
)
from metrics.promql import increase_query, promql_duration, render
from metrics.selectors import Narrowing, narrowing, parse_selector
from metrics.shared_reads import SharedReads
from metrics.source import (
    Fetch,
    FloatArray,
    HistogramSeries,
    MetricKind,
    MetricQuery,
    RatioSeries,
    Series,
    Version,
    Window,
)
from metrics.transport import (
    DEFAULT_MAX_BODY_BYTES,
    BodyTooLarge,
    HTTPFailure,
    TokenUnreadable,
    Transport,
)

_RETRY_STATUSES = (502, 503, 504)
_QUERY_REJECTED_STATUSES = (400, 422)
_MAX_ERROR_TEXT = 500
_PARALLEL_QUERIES = 4
_CACHE_ENTRIES = 20_000
_COUNT_LABEL = "verdict_series_in_window"
_PROBE_LABEL = "verdict_probe"
_PROBED_ENTRIES = 1_000
# The source's own threads (`PrometheusSource._asks`, `_part_reads`): kept for its life, so a read
# does not start a thread for each thing it asks beside another (a small analysis started about
# ten, ~2 ms of its CPU). At most this many of each run at once; more wait their turn.
_THREADS = 64
_WINDOW_ENTRIES = 256
# A source whose requests typically take at most this long does what it would ask beside a
# read one thing after another, in the reading thread (`answers_quickly`): a thread's start
# and its turns at the interpreter cost about half a millisecond of CPU a request, more than
# the overlap gains from a server this quick (a small service's whole `verdict analyze` on a
# Prometheus on the same machine: about 8 ms less).
_QUICK_SECONDS = 0.004
# ... judged from this many requests on (a first one is often a read-ahead probe of several
# counters, a heavier query than most); and never quick while the latest read-ahead found a
# counter with more series than this (its pages take long: they are read beside each other)
_QUICK_AFTER = 3
_QUICK_SERIES = 500
# A read-ahead probe lists a counter's series up to this many; a larger one probes in its read,
# in parallel with the others, rather than in one long answer that every read waits for.
_READ_AHEAD_SERIES = 500
_DENSEST_SCRAPE_MS = 5_000.0  # a first page assumes scrapes this frequent (rarely more)
_PAGE_SAMPLES_PER_SERIES = 20  # pages hold at least this many samples per series
EDGE_SECONDS = 15.0
"""Looks closer to now than this may still gain samples (a scrape in flight when one side was
asked and not the other): the check of a raw read compares the latest look older than this,
so both sides count the same samples."""
DEFAULT_MAX_SERIES = 100_000
"""Series one answer may hold (a large fleet's counter has thousands; a selector gone wrong,
millions): past it the answer is refused before it is parsed."""
_SERIES = b'{"metric":'  # how each series of an answer starts, as Prometheus writes it

BoolArray = npt.NDArray[np.bool_]
_T = TypeVar("_T")
# label key -> {look -> cumulative increase since the window's start}
_Cumulative = dict[LabelKey, dict[int, float]]

_log = structlog.get_logger()


def _size(limit: int) -> str:
    """A byte count as people read it: `256 MiB`, `64 KiB`, `1000 bytes`."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if limit >= size and limit % size == 0:
            return f"{limit // size} {unit}"
    return f"{limit:,} bytes"


def _ms(at: datetime) -> int:
    """An instant in whole milliseconds, as Prometheus reads the `time` parameter Verdict sends."""
    return round(float(f"{at.timestamp():.3f}") * 1000)


def _range_start_ms(window: Window, ends_ms: Sequence[int]) -> int | None:
    """The common start (ms) of the looks' cumulative ranges (ending at `ends_ms`), or None if
    rounding makes them differ (sub-millisecond windows): then only the instant queries give
    the same numbers."""
    step_ms = window.step.total_seconds() * 1000
    starts = {end - round(step_ms * (k + 1)) for k, end in enumerate(ends_ms)}
    return starts.pop() if len(starts) == 1 else None


def _describe_key(key: LabelKey) -> str:
    return "{" + ",".join(f'{name}="{value}"' for name, value in key) + "}" if key else "a sum"


def _label_key(metric: dict[str, Any]) -> LabelKey:
    """A series' identity: its labels in the answer's order (Prometheus sorts them by name)."""
    return tuple(metric.items())


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and everything it wraps (urllib3 reasons, args, causes, contexts)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
        stack.extend(arg for arg in current.args if isinstance(arg, BaseException))
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                stack.append(linked)


def _probe(selector_text: str, span: str, limit: int | None = None) -> str:
    """The raw read's probe (`_read_raw`): reads only the samples in the lookback before the
    window's start and before its end. With a `limit`, the series present at the start are
    listed only when the series at the end are at most that many (so a large counter's
    selector is evaluated no more often than a small one's). None at the end counts as 0: a
    version whose series all stopped inside the window still lists those present at its start
    (left out, they would read as born inside it, their whole count an increase)."""
    present = f"({selector_text} offset {span})"
    at_end = f'label_replace(count({selector_text}), "{_COUNT_LABEL}", "at-end", "", "")'
    if limit is None:
        return f"{present} or {at_end}"
    return f"({present} and on () ((count({selector_text}) or vector(0)) <= {limit})) or {at_end}"


def _part_series_query(total_text: str, names: list[str], range_seconds: float) -> str:
    """The label values `names` of the total's series that make `increase_query` over the last
    `range_seconds` answer: those with two samples in the range. (A series born inside the range
    with one sample adds its first value only beside a series that grew: alone, the part
    rightly answers nothing, as for a fresh canary's first 5xx.)"""
    window = f"[{promql_duration(range_seconds)}]"
    return f"count by ({', '.join(names)}) (count_over_time({total_text}{window}) >= 2)"


@dataclass(frozen=True)
class _Probed:
    """A probe's answer: the series present at the window's start (None when a read-ahead
    probe left them out, over its limit), and how many series there are at its end."""

    present: set[LabelKey] | None
    at_end: int

    @property
    def series(self) -> int:
        """How many series to size the pages for (they adapt after the first one)."""
        return max(len(self.present or ()), self.at_end)


def _probe_answers(
    answer: list[dict[str, Any]], probes: int, limit: int | None = None
) -> list[_Probed]:
    """The answer of each probe in `answer`: of probe i in a read-ahead answer (label
    `_PROBE_LABEL` = i), or of the one probe; `limit`: the probes' listing limit."""
    present: list[set[LabelKey]] = [set() for _ in range(probes)]
    at_end = [0] * probes
    for series in answer:
        metric = dict(series.get("metric", {}))
        try:
            i = int(metric.pop(_PROBE_LABEL)) if probes > 1 else 0
            if metric == {_COUNT_LABEL: "at-end"}:
                at_end[i] = int(float(series["value"][1]))
            else:
                present[i].add(_label_key(metric))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BadData(f"unreadable point in a Prometheus answer: {series!r}") from exc
    return [
        _Probed(None if limit is not None and end > limit else seen, end)
        for seen, end in zip(present, at_end, strict=True)
    ]


def _counted_part(query: MetricQuery, matchers: dict[str, str]) -> tuple[str, str, Narrowing] | None:
    """A ratio's total and part selectors, and which of the total's series the part selects,
    when the part can be counted from the total's samples (`metrics.selectors`); else None."""
    part = query.bad or query.good
    if query.kind is not MetricKind.RATIO or not query.total or not part:
        return None
    total_text, part_text = render(query.total, matchers), render(part, matchers)
    selects = narrowing(total_text, part_text)
    return None if selects is None else (total_text, part_text, selects)


def _plain_query(selector_text: str, range_seconds: float, by_le: bool) -> str:
    """MetricsQL's plain difference of the samples of the last `range_seconds` and of the
    instant that starts them: `increase_prometheus()` (no extrapolation, nothing added for a
    series born in the range), over a range one millisecond longer, since MetricsQL's ranges
    leave out their start (the raw read's hold it). Prometheus' engine does not know it."""
    grouping = " by (le)" if by_le else ""
    window = promql_duration(range_seconds + 0.001)
    return f"sum{grouping}(increase_prometheus({selector_text}[{window}]))"


def _same_values(asked: dict[LabelKey, float], computed: dict[LabelKey, float]) -> bool:
    """The same series, each with the same value (to rounding; NaN is NaN)."""
    if asked.keys() != computed.keys():
        return False
    return all(
        math.isclose(asked[key], computed[key], rel_tol=1e-9, abs_tol=1e-9)
        or (math.isnan(asked[key]) and math.isnan(computed[key]))
        for key in asked
    )


def _answered_at(cumulative: _Cumulative, look: int) -> bool:
    """Whether any series has an answer at `look` (none at the last: no series at all)."""
    return any(look in by_look for by_look in cumulative.values())


def _threads() -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
    """A source's threads for single requests and for the parts of ratios (no thread starts
    before it is needed)."""
    return (
        ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="verdict-ask"),
        ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="verdict-part"),
    )


def _done_here(fn: Callable[..., _T], *args: Any) -> Future[_T]:
    """`fn(*args)` run now, in this thread, as a finished future (its error kept in it, as a
    thread's would be)."""
    done: Future[_T] = Future()
    try:
        done.set_result(fn(*args))
    except Exception as exc:
        done.set_exception(exc)
    return done


def _values(answer: list[dict[str, Any]]) -> dict[LabelKey, float]:
    """Label key -> value of each series of an instant-vector answer."""
    values: dict[LabelKey, float] = {}
    for series in answer:
        try:
            values[_label_key(series.get("metric", {}))] = float(series["value"][1])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise BadData(f"unreadable point in a Prometheus answer: {series!r}") from exc
    return values


def _look_queries(selector_text: str, instants: _Instants, by_le: bool) -> list[_LookQuery]:
    """The cumulative increase of `selector_text` from the window's start to each look's end."""
    return [
        _LookQuery(selector_text, by_le, seconds, at, at_seconds, at_ms)
        for seconds, at, at_seconds, at_ms in zip(
            instants.ranges, instants.ends, instants.seconds, instants.ms, strict=True
        )
    ]


@dataclass(frozen=True)
class _Instants:
    """A window's looks, worked out once per window (every counter of a fetch shares them):
    each look's range (seconds from the window's start) and its end, as a time, in seconds
    and in whole milliseconds; `start_ms`, the ranges' common start (`_range_start_ms`)."""

    ranges: tuple[float, ...]
    ends: tuple[datetime, ...]
    seconds: tuple[float, ...]
    ms: tuple[int, ...]
    start_ms: int | None

    @classmethod
    def of(cls, window: Window) -> _Instants:
        step = window.step.total_seconds()
        ends = tuple(window.interval_ends())
        ms = tuple(_ms(end) for end in ends)
        return cls(
            ranges=tuple(step * (k + 1) for k in range(len(ends))),
            ends=ends,
            seconds=tuple(end.timestamp() for end in ends),
            ms=ms,
            start_ms=_range_start_ms(window, ms),
        )


class PrometheusSource:
    """A `MetricSource` reading counters from a Prometheus server's HTTP API.

    `timeout` bounds each HTTP attempt (connect and read); connection errors, timeouts and
    HTTP 502/503/504 answers are retried `retries` times with a short backoff, so one call
    takes at most about (retries + 1) * timeout seconds plus backoff.
    Answers about instants older than `settle_seconds` (5 minutes by default) are cached: they
    cannot change, and a canary that looks every interval would otherwise ask them at every look.
    Answers come uncompressed unless `compress` (gzip costs Prometheus more CPU than a fast
    network saves on a megabyte-sized page of raw samples). An answer of more than
    `max_answer_bytes` (its body, after gzip) or `max_series` series raises `AnswerTooLarge`,
    read no further. `headers` go with every request (`X-Scope-OrgID: <tenant>` for Mimir,
    Cortex or a Thanos tenant); `bearer_token_file` is read at each request
    (`metrics.transport.BearerTokenFile`) and sent as `Authorization: Bearer <token>`.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        headers: dict[str, str] | None = None,
        settle_seconds: float = 300.0,
        range_read_from: int = 3,
        page_samples: int = 200_000,
        compress: bool = False,
        quick_seconds: float = _QUICK_SECONDS,
        max_answer_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_series: int = DEFAULT_MAX_SERIES,
        bearer_token_file: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_series < 1:
            raise ValueError("max_series must be positive")
        self.max_series = max_series
        if retries < 0:
            raise ValueError("retries must not be negative")
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = retries
        retry = Retry(
            total=retries,
            backoff_factor=0.2,
            status_forcelist=_RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),
        )
        # Uncompressed answers by default: a raw-sample page is megabytes, and Prometheus spends
        # about twice as long gzipping it as writing it; over a slow link, `compress=True`.
        self._transport = Transport(
            self.url,
            timeout=self.timeout,
            retry=retry,
            headers={"Accept-Encoding": "gzip" if compress else "identity", **(headers or {})},
            max_error_text=_MAX_ERROR_TEXT,
            max_body_bytes=max_answer_bytes,
            bearer_token_file=bearer_token_file,
        )
        # Cumulative answers for instants older than `settle_seconds` cannot change any more:
        # a canary that looks every interval asks them again and again, so they are kept.
        self.settle_seconds = float(settle_seconds)
        self._cache: OrderedDict[
            tuple[str, bool, float, float], dict[LabelKey, float] | _Settled
        ] = OrderedDict()
        self._cache_lock = threading.Lock()
        # concurrent reads of one counter over the same looks share one (`_cumulative`)
        self._reading = SharedReads()
        # hash of (counter selector, window start) -> the latest end (a float64) and the
        # hashes of the series answered (sorted int64s), as bytes: 8 bytes a series, for a
        # thousand runs' counters; oldest first. For the check that series answered at an
        # earlier look are not missing from a later one.
        self._seen: dict[int, bytes] = {}
        # From this many uncached looks on, read the raw samples once instead of one query a look.
        self.range_read_from = max(1, range_read_from)
        self.page_samples = max(1, page_samples)
        # requests typically this quick: what a read asks beside it is asked one thing after
        # another in its thread (`answers_quickly`); 0: always on the source's threads
        self.quick_seconds = max(0.0, quick_seconds)
        # window -> its looks' instants (`_instants`)
        self._windows: OrderedDict[Window, _Instants] = OrderedDict()
        # (counter selector, window start, end) -> a read-ahead probe's answer (`read_ahead`)
        # whether the latest read-ahead found a counter of more than `_QUICK_SERIES` series
        self._large_counters = False
        # (the batch's answers, whenever they come, and the counter's place in them)
        self._probed: OrderedDict[
            tuple[str, int, int], tuple[Future[list[_Probed] | None], int]
        ] = OrderedDict()
        # counter selector -> the parts a raw read of it counts too (part selector -> which
        # of its series the part selects): the parts the read-ahead found among the fetches
        self._parts_of: OrderedDict[str, dict[str, Narrowing]] = OrderedDict()
        # None until the first raw read is checked against Prometheus' own answer for its last
        # look (one check for all reads: the first to get there asks, the others wait for it);
        # False if they differed (another PromQL engine: Prometheus 3, a remote store): then
        # this source keeps to the instant queries.
        self._raw_read_agrees: Future[bool] | None = None
        # set when the check found the store's increase() to follow rules of its own, and its
        # increase_prometheus() to agree with the raw samples (`_judge`): raw reads from then on
        self._increase_differs = False
        # Threads for single requests asked beside a read (probes, the check, a listing, the
        # next page): they wait on nothing else, so they always finish. The part of a ratio is
        # read on threads of its own (`_part_reads`): such a read waits on requests, never on a
        # read queued behind it.
        self._asks, self._part_reads = _threads()

    def close(self) -> None:
        """Release the HTTP connections and the source's threads (once their work is done).
        A closed source can still be used, as its HTTP pool can: it starts threads again."""
        asks, part_reads = self._asks, self._part_reads
        self._asks, self._part_reads = _threads()
        asks.shutdown(wait=False)
        part_reads.shutdown(wait=False)
        self._transport.close()

    def answers_quickly(self) -> bool:
        """Whether this source's requests typically (the median of the latest 16) take at most
        `quick_seconds` (true until three are answered, unless `quick_seconds` is 0): then
        what a read would ask beside it is asked in its own thread, one thing after another,
        and `fetch_observations` fetches one metric at a time. A slower server (far away,
        loaded, or a large fleet's pages) gets the threads, and so does one whose latest
        read-ahead found a counter of more than 500 series (its pages take long)."""
        if self.quick_seconds <= 0 or self._large_counters:
            return False
        typical = self._transport.typical_seconds(at_least=_QUICK_AFTER)
        return typical is None or typical <= self.quick_seconds

    def _ask_beside(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """`fn(*args)` (one request) beside the caller (`_beside`, on the asking threads)."""
        return self._beside(self._asks, fn, *args)

    def _beside(self, threads: ThreadPoolExecutor, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        """`fn(*args)` on one of `threads`, in a copy of this context (log lines keep their
        bound fields); done at once in this thread when the source answers quickly."""
        if self.answers_quickly():
            return _done_here(fn, *args)
        return threads.submit(contextvars.copy_context().run, fn, *args)

    def __repr__(self) -> str:
        return f"PrometheusSource({self.url!r}, timeout={self.timeout}, retries={self.retries})"

    # --- MetricSource ------------------------------------------------------------------

    def check(self) -> None:
        """Run `vector(1)`; raise `SourceUnavailable` if Prometheus cannot answer it."""
        try:
            self._api_query("vector(1)", time.time(), "vector")
        except (QueryError, BadData) as exc:
            raise SourceUnavailable(f"{self._where} cannot run queries: {exc}") from exc

    def read_ahead(self, fetches: Sequence[Fetch]) -> None:
        """Probe, in one query per window and version (the versions' queries side by side),
        every counter these fetches will read raw; each read would otherwise send its own
        probe first (see `_read_raw`). The first version's probe is answered before this
        returns, so Prometheus down raises `SourceUnavailable` at once; the others are asked
        beside it and taken by their reads when they come (a read of one version does not
        wait for another version's probe). Any other failure leaves the reads to probe.

        A ratio's part that can be counted from its total's samples (`metrics.selectors`:
        Istio's errors, or its successes, of all its requests) is not probed: every raw read
        of the total counts it too, and of every such part of the fetches."""
        # one batch per window and version, side by side; for a quick source, one per window
        # (one request instead of one a version: they would be asked one after the other)
        by_version = not self.answers_quickly()
        self._large_counters = False  # until a probe finds one
        batches: dict[tuple[int, int, str], list[str]] = {}
        for f in fetches:
            instants = self._instants(f.window)
            end_ms = instants.ms[-1]
            counted = _counted_part(f.query, f.matchers)
            if counted is not None:
                self._count_part(*counted)
            for counter, by_le in f.query.counters():
                selector_text = render(counter, f.matchers)
                if counted is not None and selector_text == counted[1]:
                    continue  # counted from its total's samples
                start_ms = self._raw_start_of(selector_text, instants, by_le)
                if start_ms is None:  # the read will send instant queries: nothing to probe
                    continue
                version = str(f.version) if by_version else ""
                counters = batches.setdefault((start_ms, end_ms, version), [])
                if selector_text not in counters:
                    counters.append(selector_text)
        batches = {key: selectors for key, selectors in batches.items() if len(selectors) > 1}
        if not batches:
            return
        # the first batch in this thread, the others (the other version's) beside it
        (first, *others) = [(start, end, sel) for (start, end, _), sel in batches.items()]
        for start_ms, end_ms, selectors in others:
            self._expect_probes(start_ms, end_ms, selectors, self._ask_beside(
                self._probe_batch, start_ms, end_ms, selectors
            ))  # fmt: skip
        answered = _done_here(self._probe_batch, *first)
        self._expect_probes(*first, answered)
        answered.result()  # SourceUnavailable: Prometheus is down, say so now

    def _count_part(self, total: str, part: str, selects: Narrowing) -> None:
        """Let every raw read of `total` count `part` too (from now on)."""
        with self._cache_lock:
            self._parts_of.setdefault(total, {})[part] = selects
            self._parts_of.move_to_end(total)
            while len(self._parts_of) > _PROBED_ENTRIES:
                self._parts_of.popitem(last=False)

    def _expect_probes(
        self,
        start_ms: int,
        end_ms: int,
        selectors: list[str],
        answers: Future[list[_Probed] | None],
    ) -> None:
        """Let the reads of `selectors` take their probe from `answers` (a batch's)."""
        with self._cache_lock:
            for i, sel in enumerate(selectors):
                self._probed[(sel, start_ms, end_ms)] = (answers, i)
            while len(self._probed) > _PROBED_ENTRIES:
                self._probed.popitem(last=False)

    def _probe_batch(
        self, start_ms: int, end_ms: int, selectors: list[str]
    ) -> list[_Probed] | None:
        """Each selector's probe, in one query; None when the query failed other than by
        Prometheus being unreachable (`SourceUnavailable` is raised)."""
        span = promql_duration((end_ms - start_ms) / 1000)
        promql = " or ".join(
            f'label_replace({_probe(sel, span, _READ_AHEAD_SERIES)}, "{_PROBE_LABEL}", '
            f'"{i}", "", "")'
            for i, sel in enumerate(selectors)
        )
        try:
            answers = _probe_answers(
                self._vector(promql, end_ms), len(selectors), _READ_AHEAD_SERIES
            )
        except (QueryError, BadData) as exc:
            _log.debug("read-ahead probe not used", prometheus=self.url, error=str(exc))
            return None
        if any(one.series > _QUICK_SERIES for one in answers):
            self._large_counters = True
        return answers

    def _instants(self, window: Window) -> _Instants:
        """The window's looks' instants, worked out once per window."""
        with self._cache_lock:
            instants = self._windows.get(window)
        if instants is None:
            instants = _Instants.of(window)
            with self._cache_lock:
                self._windows[window] = instants
                while len(self._windows) > _WINDOW_ENTRIES:
                    self._windows.popitem(last=False)
        return instants

    def _take_probed(self, selector_text: str, start_ms: int, end_ms: int) -> _Probed | None:
        """The read-ahead probe of this read, once it is answered (None: there is none, or
        it failed, and the read probes for itself; Prometheus down raises)."""
        with self._cache_lock:
            expected = self._probed.pop((selector_text, start_ms, end_ms), None)
        if expected is None:
            return None
        answers, i = expected
        probed = answers.result()
        return None if probed is None else probed[i]

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        """Observations of one metric for one version per interval of `window`, or None when
        the version has no series (see `MetricSource.fetch`)."""
        log = _log.bind(metric=query.name, version=str(version), prometheus=self.url)
        if query.kind is MetricKind.RATIO:
            return self._fetch_ratio(query, matchers, window, log)
        if query.kind is MetricKind.HISTOGRAM:
            return self._fetch_histogram(query, matchers, window, log)
        raise QueryError(f"metric {query.name!r}: unknown kind {query.kind!r}")

    # --- ratio ---------------------------------------------------------------------------

    def _fetch_ratio(
        self, query: MetricQuery, matchers: dict[str, str], window: Window, log: Any
    ) -> RatioSeries | None:
        if not query.total or not (query.bad or query.good):
            raise QueryError(f"ratio metric {query.name!r} needs `total` and `bad` or `good`")
        read = self._read_ratio(
            render(query.total, matchers),
            render(query.bad or query.good, matchers),
            window,
            "bad" if query.bad else "good",
        )
        if read is None:
            return None
        total_result, part_result = read
        return ratio_series(query, total_result, part_result, window, log)

    def _read_ratio(
        self, total_text: str, part_text: str, window: Window, part: str
    ) -> tuple[_Cumulative, _Cumulative] | None:
        """The cumulative increases of a ratio's total and of its `part` (bad or good); None
        when the version has no series. A part that can be counted from the total's samples
        is, when they are read (`metrics.selectors`); else it is read beside the total (one
        look's instant queries at once), and an empty answer is checked (`_check_part`)."""
        selects = narrowing(total_text, part_text)
        instants = self._instants(window)
        if selects is not None and self._raw_start_of(total_text, instants, False) is not None:
            total_result, parts = self._query_counted(total_text, window, {part_text: selects})
            if not total_result:
                return None
            part_result = parts.get(part_text)
            if part_result is None:  # the total's samples were not read (its looks were known)
                part_result = self._query_cumulative(part_text, window)
                self._check_part(
                    total_text, part_text, part, selects, window, total_result, part_result
                )
            return total_result, part_result
        # the part is read beside the total (needed unless the version has no series at all)
        reading_part = self._beside(self._part_reads, self._query_cumulative, part_text, window)
        try:
            total_result = self._query_cumulative(total_text, window)
            if not total_result:
                reading_part.cancel()
                return None
            part_result = reading_part.result()
        finally:
            wait([reading_part])  # no read of this fetch outlives it
        self._check_part(total_text, part_text, part, selects, window, total_result, part_result)
        return total_result, part_result

    def _check_part(
        self,
        total_text: str,
        part_text: str,
        part: str,
        selects: Narrowing | None,
        window: Window,
        total: _Cumulative,
        answered: _Cumulative,
    ) -> None:
        """Raise `PartMissing` when the part, read by its own query, answered no series while
        its total has requests and series of the total that it selects had the samples its
        query counts (module docstring: an empty part)."""
        if answered or selects is None:
            return
        last = window.intervals - 1
        requests = sum(
            value
            for by_look in total.values()
            if math.isfinite(value := by_look.get(last, math.nan))
        )
        extra = (parse_selector(part_text) or frozenset()) - (
            parse_selector(total_text) or frozenset()
        )
        names = sorted({m.name for m in extra})
        if requests <= 0 or not names or "__name__" in names:
            return
        instants = self._instants(window)
        promql = _part_series_query(total_text, names, instants.ranges[-1])
        groups = self._vector(promql, instants.ms[-1])
        if any(selects(_label_key(g.get("metric", {}))) is not False for g in groups):
            # its empty answers are not kept: a later look asks again
            self._forget(_look_queries(part_text, instants, False))
            raise PartMissing(part, part_text, requests)

    # --- histogram ---------------------------------------------------------------------

    def _fetch_histogram(
        self, query: MetricQuery, matchers: dict[str, str], window: Window, log: Any
    ) -> HistogramSeries | None:
        if not query.buckets:
            raise QueryError(f"histogram metric {query.name!r} needs `buckets`")
        selector_text = render(query.buckets, matchers)
        result = self._query_cumulative(selector_text, window, by_le=True)
        if not result:
            return None
        return histogram_series(query, selector_text, result, window, log)

    # --- helpers -------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"Prometheus at {self.url}"

    def _query_cumulative(
        self, selector_text: str, window: Window, *, by_le: bool = False
    ) -> _Cumulative:
        """Cumulative increases since window.start, checked (`_check_consistent`).

        Label key -> {look -> the increase since the window's start}, at every look from the
        series' first to the window's last (`_Aligned` turns them into per-interval
        increases); empty when the version has no series. They come from one instant query per
        look, or, when more than `range_read_from - 1` looks are not cached, from one read of
        the raw samples (the same numbers: `metrics.increase`).
        """
        return self._query_counted(selector_text, window, by_le=by_le)[0]

    def _query_counted(
        self,
        selector_text: str,
        window: Window,
        parts: dict[str, Narrowing] | None = None,
        *,
        by_le: bool = False,
    ) -> tuple[_Cumulative, dict[str, _Cumulative]]:
        """`_query_cumulative`, and those of `parts` (part selector -> which series of
        `selector_text` it selects) counted from the same raw samples, checked alike. A part
        is missing when no raw samples were read (the looks were cached, or asked one by
        one). The parts the read-ahead found (`_count_part`) are counted too, and cached."""
        instants = self._instants(window)
        queries = _look_queries(selector_text, instants, by_le)
        read, counted = self._cumulative(
            selector_text, queries, instants, by_le=by_le, parts=parts or {}
        )
        cumulative = read or {}
        self._check_consistent(selector_text, window, cumulative)
        asked = {text: counted[text] for text in parts or {} if text in counted}
        for text, part in asked.items():
            self._check_consistent(text, window, part)
        return cumulative, asked

    def _check_consistent(
        self, selector_text: str, window: Window, cumulative: dict[LabelKey, dict[int, float]]
    ) -> None:
        """Raise `InconsistentAnswer` when series answered before are missing now.

        Increases since one start only gain series as the looks go on: a series (an error
        series of a version, a bucket) answered at one look and missing at a later one, in this
        fetch or since an earlier fetch over the same start, is a partial answer (one query of
        several lost data), never "no errors".
        """
        last = window.intervals - 1
        now = np.unique(
            np.fromiter(
                (hash(key) for key, by_look in cumulative.items() if last in by_look),
                dtype=np.int64,
            )
        )
        for key, by_look in cumulative.items():
            first = min(by_look)
            if len(by_look) != last - first + 1:
                missing = [k + 1 for k in range(first, last + 1) if k not in by_look]
                raise InconsistentAnswer(
                    f"{self._where}: {selector_text} answered {_describe_key(key)} at look "
                    f"{first + 1} but not at look(s) {missing[:5]}; a partial answer is not read"
                )
        memory_key = hash((selector_text, window.start.timestamp()))  # not the long text
        end = window.end.timestamp()
        with self._cache_lock:
            found = self._seen.pop(memory_key, b"")
            seen = np.frombuffer(found, dtype=np.float64) if found else None
            if seen is not None and seen[0] <= end:
                gone = np.setdiff1d(seen[1:].view(np.int64), now, assume_unique=True).size
                if gone:
                    self._seen[memory_key] = found
                    raise InconsistentAnswer(
                        f"{self._where}: {selector_text} answered {gone} series at an earlier "
                        "look since the same start that it does not answer now; a partial answer "
                        "is not read"
                    )
            if seen is None or seen[0] <= end:
                known = now if seen is None else np.union1d(seen[1:].view(np.int64), now)
                found = np.float64(end).tobytes() + known.tobytes()
            self._seen[memory_key] = found  # the newest last
            while len(self._seen) > _CACHE_ENTRIES:
                del self._seen[next(iter(self._seen))]

    def _cumulative(
        self,
        selector_text: str,
        queries: list[_LookQuery],
        instants: _Instants,
        *,
        by_le: bool,
        parts: dict[str, Narrowing],
    ) -> tuple[_Cumulative | None, dict[str, _Cumulative]]:
        """Label key -> {look -> cumulative increase}; None when the version has no series.
        And the parts' (`_query_counted`), those of `parts` and of the read-ahead, when the
        raw samples were read.

        Concurrent asks for the same counter and looks (the total of an error-rate and of a
        success-rate metric) share one read.
        """
        key = (selector_text, by_le, tuple(q.at_seconds for q in queries))
        return self._reading.get(
            key,
            lambda: self._read_cumulative(
                selector_text,
                queries,
                instants,
                by_le=by_le,
                parts={**self._parts_of.get(selector_text, {}), **parts},
            ),
        )

    def _read_cumulative(
        self,
        selector_text: str,
        queries: list[_LookQuery],
        instants: _Instants,
        *,
        by_le: bool,
        parts: dict[str, Narrowing],
    ) -> tuple[_Cumulative | None, dict[str, _Cumulative]]:
        start_ms = self._raw_read_start(instants, queries)
        checked = self._checked_look(queries)
        if start_ms is not None and checked is not None:
            look = queries.index(checked)
            (raw, counted, plain), asking = self._read_raw(
                selector_text, queries, start_ms, by_le=by_le, parts=parts, checked_at=look
            )
            try:
                # no series at all is Prometheus' own answer (the probe's): nothing to check
                agrees = (raw is None and asking is None) or self._settle_check(
                    raw, plain, look, asking, checked
                )
            except BaseException as exc:
                if asking is not None:
                    self._abandon_check(exc)
                raise
            if agrees:
                self._remember_all(queries, raw or {})
                for text, part in counted.items():
                    self._remember_all(_look_queries(text, instants, by_le), part)
                return raw, counted
            _log.warning(
                "raw samples give other counts than the store's own increase() and "
                "increase_prometheus(); using one query a look from now on",
                prometheus=self.url,
                selector=selector_text,
            )
        # The whole window first: it fails fast when Prometheus is down, and an empty answer
        # means the version has no series at all, so there is nothing more to ask. Cached looks
        # (a counter another metric read a moment ago) are taken as they are, without a pool.
        values = [self._cached(q) for q in queries]
        if values[-1] is None:
            values[-1] = self._instant(queries[-1])
        if not values[-1]:
            return None, {}
        uncached = [q for q, v in zip(queries, values, strict=True) if v is None]
        if uncached:
            with ThreadPoolExecutor(max_workers=min(_PARALLEL_QUERIES, len(uncached))) as pool:
                answered = iter(pool.map(self._instant, uncached))
            values = [v if v is not None else next(answered) for v in values]
        cumulative: dict[LabelKey, dict[int, float]] = {}
        for k, at_look in enumerate(values):
            assert at_look is not None
            for key, value in at_look.items():
                cumulative.setdefault(key, {})[k] = value
        return cumulative, {}

    def _raw_start_of(self, selector_text: str, instants: _Instants, by_le: bool) -> int | None:
        """`_raw_read_start` of a read of `selector_text` about to start."""
        # the looks are needed only to ask the cache, and a new source has none
        queries = _look_queries(selector_text, instants, by_le) if self._cache else None
        return self._raw_read_start(instants, queries)

    def _raw_read_start(self, instants: _Instants, queries: list[_LookQuery] | None) -> int | None:
        """The looks' common range start (ms) when they are to be read raw: enough of them
        are not cached, their ranges share a start, and no raw read disagreed; else None (one
        instant query a look). `queries` None: none of the looks is cached."""
        # a store whose increase() has rules of its own: the raw read, whatever the window,
        # so every look counts with the same arithmetic as on Prometheus
        reads_from = 1 if self.increase_differs else self.range_read_from
        enough = (
            self._uncached_at_least(queries, reads_from)
            if queries is not None and self._cache
            else len(instants.ms) >= reads_from
        )
        if not enough or self.raw_reads_disagree:
            return None
        return instants.start_ms

    def _checked_look(self, queries: list[_LookQuery]) -> _LookQuery | None:
        """The look a raw read is checked at (`_settle_check`): the latest one at least
        `EDGE_SECONDS` old, whose samples have all landed. None while the check is still to
        come and no look is that old (the read then asks one query a look: what it would
        compare is not settled yet); the last look once the check has passed (not asked)."""
        check = self._raw_read_agrees
        if check is not None and check.done() and check.exception() is None:
            return queries[-1]
        edge = time.time() - EDGE_SECONDS
        return next((q for q in reversed(queries) if q.at_seconds <= edge), None)

    @property
    def increase_differs(self) -> bool:
        """Whether the store's own `increase()` follows other rules than Prometheus' on the
        same samples, which its `increase_prometheus()` showed the raw read to have
        (VictoriaMetrics: `_judge`); then every window is read raw, however short."""
        return self._increase_differs

    @property
    def raw_reads_disagree(self) -> bool:
        """Whether a raw read gave other counts than the store's own `increase()` and
        `increase_prometheus()` (`_judge`; then this source keeps to one instant query a
        look)."""
        check = self._raw_read_agrees
        return (
            check is not None and check.done() and check.exception() is None and not check.result()
        )

    def _claim_check(self, look: _LookQuery) -> Future[list[dict[str, Any]]] | None:
        """The first raw read of this source checks its counts against Prometheus' own answer
        for its latest settled look (`_checked_look`, `_settle_check`): for that read, that
        answer, asked now and concurrently with the read; None for every other read."""
        with self._cache_lock:
            if self._raw_read_agrees is not None:
                return None
            self._raw_read_agrees = Future()
        return self._ask_beside(self._vector, look.promql, look.at_ms)

    def _settle_check(
        self,
        raw: dict[LabelKey, dict[int, float]] | None,
        plain: dict[LabelKey, float] | None,
        look: int,
        asking: Future[list[dict[str, Any]]] | None,
        last: _LookQuery,
    ) -> bool:
        """Whether the raw read agrees with the store (`_judge`): decided by the checking
        read, waited for by the others (which ask for themselves if that check failed)."""
        check = self._raw_read_agrees
        if asking is None and check is not None:
            try:
                return check.result()
            except Exception:
                return self._judge(raw, plain, look, self._vector(last.promql, last.at_ms), last)
        answer = asking.result() if asking else self._vector(last.promql, last.at_ms)
        agrees = self._judge(raw, plain, look, answer, last)
        if check is not None and asking is not None:
            check.set_result(agrees)
        return agrees

    def _judge(
        self,
        raw: dict[LabelKey, dict[int, float]] | None,
        plain: dict[LabelKey, float] | None,
        look: int,
        answer: list[dict[str, Any]],
        last: _LookQuery,
    ) -> bool:
        """Whether the raw read agrees with the store, each side by its own rules.

        Prometheus (and what runs its engine: Thanos, Mimir, Cortex) answers `increase()` with
        the arithmetic of the raw read: its answer for the look must be the read's. A store
        whose `increase()` follows other rules gives another number from the same samples:
        VictoriaMetrics' does not extrapolate, starts from the sample before the range, and
        counts a series born in the range from 0. Its `increase_prometheus()` (MetricsQL) is
        the plain difference of the samples in the range (last - first + the drops, no
        extrapolation): the read's plain differences at the look (`metrics.increase`) must be
        that answer, so the store holds the samples the read counted, and the read keeps
        Prometheus' arithmetic (the counts Prometheus would give from those samples). A store
        that knows neither, or gives other numbers to both, disagrees."""
        if self._agrees(raw, look, answer):
            return True
        if plain is None or not self._plain_agrees(plain, last):
            return False
        if not self._increase_differs:
            _log.info(
                "the store's increase() follows its own rules (VictoriaMetrics: no "
                "extrapolation); its increase_prometheus() agrees with the raw samples, "
                "counted as Prometheus counts them",
                prometheus=self.url,
                selector=last.selector,
            )
        self._increase_differs = True
        return True

    def _plain_agrees(self, plain: dict[LabelKey, float], last: _LookQuery) -> bool:
        """Whether the store's `increase_prometheus()` over the look's range (its start
        included, `_plain_query`) is the read's plain differences `plain`; False when the
        store does not know the function (Prometheus' engine rejects it)."""
        try:
            answer = self._vector(_plain_query(last.selector, last.seconds, last.by_le), last.at_ms)
        except (QueryError, BadData) as exc:
            _log.debug(
                "no increase_prometheus() to compare with", prometheus=self.url, error=str(exc)
            )
            return False
        return _same_values(_values(answer), plain)

    def _abandon_check(self, exc: BaseException) -> None:
        """The checking read failed: its waiters are told, and the next raw read checks."""
        with self._cache_lock:
            check, self._raw_read_agrees = self._raw_read_agrees, None
        if check is not None and not check.done():
            check.set_exception(exc)

    @staticmethod
    def _agrees(
        raw: dict[LabelKey, dict[int, float]] | None, look: int, answer: list[dict[str, Any]]
    ) -> bool:
        """Whether Prometheus' own answer for `look` (asked, not cached) is the raw read's."""
        computed = {key: by_look[look] for key, by_look in (raw or {}).items() if look in by_look}
        return _same_values(_values(answer), computed)

    def _read_raw(
        self,
        selector_text: str,
        queries: list[_LookQuery],
        start_ms: int,
        *,
        by_le: bool,
        parts: dict[str, Narrowing],
        checked_at: int,
    ) -> tuple[
        tuple[_Cumulative | None, dict[str, _Cumulative], dict[LabelKey, float] | None],
        Future[list[dict[str, Any]]] | None,
    ]:
        """Every look's cumulative increase from the raw samples, read in time pages of about
        max(`page_samples`, 20 × series) samples (see `metrics.increase`), the `parts`' and
        the plain differences at look `checked_at` (`_read_pages`); and, for the read that
        checks them, the store's own answer for that look, asked beside the pages."""
        checked = queries[checked_at]
        ends_ms = [q.at_ms for q in queries]
        # One probe, which reads only the samples in the lookback before two instants: the
        # series present at the window's start (every other series of the pages was born
        # inside it), and how many there are at its end. The larger count sizes the pages:
        # about `page_samples` samples, or more with many series, so that a page's labels do
        # not outweigh its samples.
        span = promql_duration((ends_ms[-1] - start_ms) / 1000)
        probed = self._take_probed(selector_text, start_ms, ends_ms[-1])
        if probed is None:
            probed = _probe_answers(self._vector(_probe(selector_text, span), ends_ms[-1]), 1)[0]
        # The check is asked beside the pages of a counter read, and after the pages of a
        # histogram read (a costlier query): by then a counter read has usually taken it.
        asking = None if by_le else self._claim_check(checked)
        # a large counter's series at the start (left out of the read-ahead) are asked for
        # beside its first page: the counts alone size the pages
        # (its label objects are learnt once, for the listing and the pages: `known`)
        known: dict[bytes, LabelKey] = {}
        present: Future[set[LabelKey]] | set[LabelKey] | None = probed.present
        try:
            if present is None:
                present = self._ask_beside(
                    self._series_at, f"{selector_text} offset {span}", ends_ms[-1], known
                )
            read = self._read_pages(
                selector_text,
                queries,
                start_ms,
                present,
                probed.series,
                by_le,
                known,
                parts,
                plain_at=checked_at,
            )
        except BaseException as exc:
            if asking is not None:
                wait([asking])  # no request of this read outlives it
                self._abandon_check(exc)
            raise
        finally:
            if isinstance(present, Future):
                wait([present])
        if by_le:
            asking = self._claim_check(checked)
        return read, asking

    def _read_pages(
        self,
        selector_text: str,
        queries: list[_LookQuery],
        start_ms: int,
        present: set[LabelKey] | Future[set[LabelKey]],
        series_count: int,
        by_le: bool,
        known: dict[bytes, LabelKey],
        parts: dict[str, Narrowing],
        *,
        plain_at: int,
    ) -> tuple[_Cumulative | None, dict[str, _Cumulative], dict[LabelKey, float] | None]:
        """The cumulative increases (None: no series at the last look, the version has none),
        each part's (empty when it has none; a part missing: a series of its total could
        not be told, `metrics.selectors`), and the plain differences at look `plain_at`
        (`metrics.increase`)."""
        ends_ms = [q.at_ms for q in queries]
        budget = max(self.page_samples, _PAGE_SAMPLES_PER_SERIES * series_count)
        step_ms = (ends_ms[-1] - start_ms) / len(ends_ms)
        per_look = series_count * max(step_ms / _DENSEST_SCRAPE_MS, 1.0)
        # no series at either end (all born and gone inside the window, or none at all):
        # one look first, and the pages are sized from what it holds
        looks_per_page = max(1, int(budget // per_look)) if series_count else 1
        groups: dict[LabelKey, LabelKey] = {}
        ask = partial(self._page_answer, selector_text)
        read = partial(self._page, by_le=by_le, known=known, groups=groups)
        # Page k + 1 is asked for (in a thread) as soon as page k's answer is in, and written
        # by the server while page k is decoded and counted; at most two answers are held.
        first, last = 0, min(looks_per_page, len(ends_ms))
        answer = ask(start_ms - 1, ends_ms[last - 1])  # the first includes `start` itself
        texts = list(parts)
        computed = CumulativeIncrease(
            start_ms,
            ends_ms,
            present.result() if isinstance(present, Future) else present,
            [parts[text] for text in texts],
            plain_at=plain_at,
        )
        following: Future[tuple[str, bytes, int]] | None = None
        try:
            while True:
                # the next page is sized by this one's samples, counted in its bytes
                per_look = max(count_samples(answer[1]) / (last - first), 1.0)
                looks_per_page = max(1, int(budget // per_look))
                if last < len(ends_ms):
                    upto = min(last + looks_per_page, len(ends_ms))
                    following = self._ask_beside(ask, ends_ms[last - 1], ends_ms[upto - 1])
                computed.add_page(read(*answer, ends_ms[last - 1]))
                if following is None:
                    break
                answer, first, last = following.result(), last, upto
                following = None
        finally:
            if following is not None:
                wait([following])  # no request of this read outlives it
        # (cumulative ranges only grow: a series answered at one look is at the last)
        counted = {}
        for i, text in enumerate(texts):
            part = computed.part_answers(i)
            if part is not None:
                counted[text] = part
        cumulative = computed.answers()
        answered = cumulative if _answered_at(cumulative, len(queries) - 1) else None
        return answered, counted, computed.plain_answers()

    def _remember_all(
        self, queries: list[_LookQuery], cumulative: dict[LabelKey, dict[int, float]]
    ) -> None:
        """Cache a raw read's settled looks as if each had been asked (each answer is written
        out only when it is asked for)."""
        settled = time.time() - self.settle_seconds
        with self._cache_lock:
            for k, q in enumerate(queries):
                if q.at_seconds <= settled:
                    self._cache[q.cache_key] = _Settled(cumulative, k)
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _page_answer(
        self, selector_text: str, after_ms: int, end_ms: int
    ) -> tuple[str, bytes, int]:
        """The query for the raw samples with times in (after_ms, end_ms], its answer as it
        came (decoded by `_page`), and `after_ms`. The range reaches back to `after_ms`
        itself: Prometheus 2.x's ranges hold both ends, VictoriaMetrics' (and Prometheus
        3's) leave out their start, so a sample at `after_ms` comes from one store and not the
        other, and `_page` drops it; a range one millisecond shorter would lose, on the
        second kind, the sample at `after_ms + 1` (the window's first, at its start)."""
        promql = f"{selector_text}[{promql_duration((end_ms - after_ms) / 1000)}]"
        return promql, self._ask(promql, end_ms / 1000), after_ms

    def _page(
        self,
        promql: str,
        raw: bytes,
        after_ms: int,
        end_ms: int,
        *,
        by_le: bool,
        known: dict[bytes, LabelKey],
        groups: dict[LabelKey, LabelKey],
    ) -> Page:
        """A page's raw samples with times in (after_ms, end_ms], flat (`known` and
        `groups`: what the read's earlier pages learnt of its series)."""
        matrix = self._matrix(promql, raw, known)
        keys, sizes = matrix.keys, matrix.sizes
        times_ms = np.rint(matrix.times * 1000).astype(np.int64)
        values = matrix.values
        after = times_ms > after_ms
        if not after.all():  # a sample at the range's start: the previous page's, or before
            owner = np.repeat(np.arange(len(keys)), sizes)
            sizes = np.bincount(owner[after], minlength=len(keys)).astype(np.int64)
            times_ms, values = times_ms[after], values[after]
            kept = np.flatnonzero(sizes)
            if kept.size < len(keys):
                keys, sizes = [keys[i] for i in kept.tolist()], sizes[kept]
        for key in keys:
            if key not in groups:
                le = dict(key).get("le") if by_le else None
                groups[key] = (("le", str(le)),) if le is not None else ()
        return Page(
            keys=keys,
            groups=[groups[key] for key in keys],
            sizes=sizes,
            times_ms=times_ms,
            values=values,
            end_ms=end_ms,
        )

    def _cached(self, query: _LookQuery) -> dict[LabelKey, float] | None:
        if query.at_seconds > time.time() - self.settle_seconds:
            return None
        with self._cache_lock:
            cached = self._cache.get(query.cache_key)
            if cached is not None:
                self._cache.move_to_end(query.cache_key)
        if isinstance(cached, _Settled):
            return cached.values()
        return cached

    def _uncached_at_least(self, queries: list[_LookQuery], count: int) -> bool:
        """Whether the cache cannot answer `count` or more of `queries` (newest first: a window
        not read yet stops at its last looks)."""
        settled = time.time() - self.settle_seconds
        missing = 0
        with self._cache_lock:
            cache = self._cache
            for q in reversed(queries):
                if q.at_seconds > settled or q.cache_key not in cache:
                    missing += 1
                    if missing >= count:
                        return True
        return False

    def _forget(self, queries: list[_LookQuery]) -> None:
        """Drop the cached answers of `queries` (answers found to have lost data)."""
        with self._cache_lock:
            for q in queries:
                self._cache.pop(q.cache_key, None)

    def _remember(self, query: _LookQuery, values: dict[LabelKey, float]) -> None:
        with self._cache_lock:
            self._cache[query.cache_key] = values
            while len(self._cache) > _CACHE_ENTRIES:
                self._cache.popitem(last=False)

    def _instant(self, query: _LookQuery) -> dict[LabelKey, float]:
        """One instant query's values; answers about a settled past are served from the
        cache."""
        cached = self._cached(query)
        if cached is not None:
            return cached
        values = _values(self._vector(query.promql, query.at_ms))
        if query.at_seconds <= time.time() - self.settle_seconds:
            self._remember(query, values)
        return values

    def _vector(self, promql: str, at_ms: int) -> list[dict[str, Any]]:
        result = self._api_query(promql, at_ms / 1000, "vector")
        if not all(isinstance(s, dict) for s in result):
            raise SourceUnavailable(
                f"{self._where} answered {promql!r} with something that is not a vector"
            )
        return result

    def _api_query(self, promql: str, at_seconds: float, result_type: str) -> list[Any]:
        """One `/api/v1/query`; the answer's `result`, checked for type and warnings."""
        raw = self._ask(promql, at_seconds)
        body = self._decoded(raw, json.loads)
        result: list[Any] = self._checked(body, promql, result_type)
        return result

    def _series_at(self, promql: str, at_ms: int, known: dict[bytes, LabelKey]) -> set[LabelKey]:
        """The label keys of the series of an instant vector (its values are not read;
        `known`: label objects parsed already, shared with the read's pages)."""
        raw = self._ask(promql, at_ms / 1000)
        body, keys = self._decoded(raw, partial(decode_vector_keys, known=known))
        self._checked(body, promql, "vector")
        return set(keys)

    def _matrix(self, promql: str, raw: bytes, known: dict[bytes, LabelKey]) -> Matrix:
        """The answer to a range selector's query, its samples decoded flat (`metrics.matrix`;
        `known`: the label objects this read has parsed already)."""
        try:
            matrix = self._decoded(raw, partial(decode_matrix, known=known))
        except NotAMatrix as exc:
            raise BadData(f"unreadable samples in the answer to {promql!r}: {exc}") from exc
        self._checked(matrix.body, promql, "matrix")
        return matrix

    def _decoded(self, raw: bytes, decode: Callable[[bytes], _T]) -> _T:
        try:
            return decode(raw)
        except json.JSONDecodeError:
            raise SourceUnavailable(
                f"{self._where} answered with something that is not JSON; "
                "is this the Prometheus base URL?"
            ) from None

    def _checked(self, body: Any, promql: str, result_type: str) -> Any:
        """The answer's `data.result`, once it is a successful `result_type` with no warnings."""
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or body.get("status") != "success":
            raise SourceUnavailable(
                f"{self._where} answered {promql!r} with something that is not the Prometheus API"
            )
        warnings = body.get("warnings")
        if warnings:
            text = "; ".join(str(w) for w in warnings)
            if len(text) > _MAX_ERROR_TEXT:
                text = text[:_MAX_ERROR_TEXT] + "..."
            raise PartialAnswer(
                f"{self._where} answered {promql!r} with warnings, so the answer may miss data "
                f"and is not read: {text}"
            )
        result = data.get("result")
        if data.get("resultType") != result_type or not isinstance(result, list):
            raise SourceUnavailable(
                f"{self._where} answered {promql!r} with something that is not a {result_type}"
            )
        return result

    def _ask(self, promql: str, at_seconds: float) -> bytes:
        """The answer to one `/api/v1/query` of `promql` at `at_seconds`, as it came; every
        failure becomes a `metrics.errors` error."""
        try:
            # POST (form-encoded), as Prometheus allows: a long selector never meets a URL limit
            raw = self._transport.post_form(
                "/api/v1/query", {"query": promql, "time": f"{at_seconds:.3f}"}
            )
        except TokenUnreadable as exc:
            raise SourceUnavailable(f"{self._where}: {exc}") from None
        except BodyTooLarge as exc:
            raise AnswerTooLarge(
                f"{self._where} answered {promql!r} with more than {_size(exc.limit)}, the most "
                "Verdict reads (prometheus.maxAnswerBytes): narrow the query's selector or "
                "raise the limit"
            ) from None
        except HTTPFailure as exc:
            if exc.status in _QUERY_REJECTED_STATUSES:
                raise QueryError(
                    f"{self._where} rejected the query {promql!r}: {exc.text}"
                ) from None
            raise SourceUnavailable(
                f"{self._where} answered HTTP {exc.status}: {exc.text}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise SourceUnavailable(f"{self._where} {self._describe(exc)}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise SourceUnavailable(
                f"{self._where} answered with something that is not the Prometheus API ({exc!r})"
            ) from exc
        # counted as written, before anything is parsed (a label named `metric` first in its
        # series' labels counts twice: the cap errs towards refusing)
        if len(raw) > self.max_series * len(_SERIES) and raw.count(_SERIES) > self.max_series:
            raise AnswerTooLarge(
                f"{self._where} answered {promql!r} with more than {self.max_series:,} series, "
                "the most Verdict reads in one answer (prometheus.maxSeries): narrow the "
                "query's selector or raise the limit"
            )
        return raw

    def _describe(self, exc: BaseException) -> str:
        """What went wrong, in words, for a transport-level failure."""
        attempts = self.retries + 1
        after = f" ({attempts} attempts)" if attempts > 1 else ""
        causes = list(_causes(exc))
        # refused and DNS first: urllib3's NewConnectionError subclasses ConnectTimeoutError
        for cause in causes:
            if isinstance(cause, urllib3.exceptions.NameResolutionError | socket.gaierror):
                host = urllib3.util.parse_url(self.url).host
                return f"is unreachable: cannot resolve host name {host!r}{after}"
            if isinstance(cause, ConnectionRefusedError):
                return f"is unreachable: connection refused{after}"
        for cause in causes:
            if isinstance(cause, urllib3.exceptions.TimeoutError | TimeoutError):
                return f"did not answer within {self.timeout} s{after}"
        for cause in causes:
            if isinstance(cause, urllib3.exceptions.ResponseError):
                return f"kept answering with server errors{after}: {cause}"
            if isinstance(cause, urllib3.exceptions.SSLError):
                return f"is unreachable: TLS failed: {cause}"
        for cause in causes:
            if isinstance(cause, ConnectionResetError | urllib3.exceptions.ProtocolError):
                return f"dropped the connection{after}: {cause}"
        return f"is unreachable: {exc}"


class _LookQuery:
    """The cumulative increase of one counter selector from a window's start to one look's
    end: `increase_query(selector, seconds)` at `at`. Its PromQL is written when first sent.
    (A plain class with slots: a window's reads make a few hundred of these, and a frozen
    dataclass with cached properties costs several times as much to make and to ask.)"""

    __slots__ = (
        "_promql",
        "at",
        "at_ms",
        "at_seconds",
        "by_le",
        "cache_key",
        "seconds",
        "selector",
    )

    def __init__(
        self,
        selector: str,
        by_le: bool,
        seconds: float,
        at: datetime,
        at_seconds: float,
        at_ms: int,
    ) -> None:
        self.selector = selector
        self.by_le = by_le
        self.seconds = seconds
        self.at = at
        self.at_seconds = at_seconds
        self.at_ms = at_ms
        # the same key for the same PromQL at the same instant
        self.cache_key: tuple[str, bool, float, float] = (selector, by_le, seconds, at_seconds)
        self._promql: str | None = None

    @property
    def promql(self) -> str:
        if self._promql is None:
            self._promql = increase_query(self.selector, self.seconds, by_le=self.by_le)
        return self._promql


class _Settled:
    """A cached answer of a raw read: look `look` of its cumulative increases."""

    __slots__ = ("cumulative", "look")

    def __init__(self, cumulative: dict[LabelKey, dict[int, float]], look: int) -> None:
        self.cumulative = cumulative
        self.look = look

    def values(self) -> dict[LabelKey, float]:
        """The values as the instant query would give them."""
        return {
            key: by_look[self.look]
            for key, by_look in self.cumulative.items()
            if self.look in by_look
        }


@dataclass(frozen=True)
class _Aligned:
    """Series summed, one slot per interval of the window.

    `values[i]` sums the finite increases of interval i (0 when none); `present[i]` says
    whether any series had one there; `non_finite[i]` whether any of them was NaN or ±Inf.
    A series' increase during interval i is its cumulative value at look i less the largest
    finite value before it (0 at the window's start; cumulative counts never decrease, and
    extrapolation noise could make them), never below 0; NaN where the value at i or at the
    look before is not finite.
    """

    values: FloatArray
    present: BoolArray
    non_finite: BoolArray

    @classmethod
    def of(cls, series: list[dict[int, float]], window: Window) -> _Aligned:
        """The cumulative increases `series` (look -> value, each answered at every look
        from its first to the window's last: `_check_consistent`) summed."""
        return cls.by_group(series, [0] * len(series), 1, window)[0]

    @classmethod
    def by_group(
        cls, series: list[dict[int, float]], groups: list[int], count: int, window: Window
    ) -> list[_Aligned]:
        """`of` for each of `count` groups at once (series i in group `groups[i]`), summed
        in the series' order, as one series after another would be."""
        intervals = window.intervals
        cumulative = np.zeros((len(series), intervals), dtype=np.float64)
        have = np.zeros((len(series), intervals), dtype=np.bool_)
        total = sum(len(by_look) for by_look in series)
        looks = np.fromiter(itertools.chain.from_iterable(series), dtype=np.int64, count=total)
        values = np.fromiter(
            itertools.chain.from_iterable(by_look.values() for by_look in series),
            dtype=np.float64,
            count=total,
        )
        rows = np.repeat(np.arange(len(series)), [len(by_look) for by_look in series])
        inside = (looks >= 0) & (looks < intervals)
        cumulative[rows[inside], looks[inside]] = values[inside]
        have[rows[inside], looks[inside]] = True
        finite = have & np.isfinite(cumulative)
        highest = np.maximum.accumulate(np.where(finite, cumulative, 0.0), axis=1)
        before = np.zeros_like(cumulative)
        before[:, 1:] = np.maximum(highest[:, :-1], 0.0)
        # a series' first look follows nothing, so nothing spoils it
        finite_before = np.ones_like(have)
        finite_before[:, 1:] = finite[:, :-1] | ~have[:, :-1]
        with np.errstate(invalid="ignore"):
            increases = np.where(
                finite & finite_before, np.maximum(cumulative - before, 0.0), math.nan
            )
        counted = have & np.isfinite(increases)
        sums = np.zeros((count, intervals), dtype=np.float64)
        present = np.zeros((count, intervals), dtype=np.bool_)
        non_finite = np.zeros((count, intervals), dtype=np.bool_)
        if len(set(groups)) == len(groups):  # a series a group (the usual case): placed as is
            sums[groups] = np.where(counted, increases, 0.0)
            present[groups] = have
            non_finite[groups] = have & ~counted
        else:
            # summed one series after another, in order (`ufunc.at` is unbuffered), as the
            # series would be one by one
            np.add.at(sums, groups, np.where(counted, increases, 0.0))
            np.logical_or.at(present, groups, have)
            np.logical_or.at(non_finite, groups, have & ~counted)
        return [
            cls(values=sums[g], present=present[g], non_finite=non_finite[g])
            for g in range(count)
        ]


def ratio_series(
    query: MetricQuery,
    total_result: _Cumulative,
    part_result: _Cumulative,
    window: Window,
    log: Any,
) -> RatioSeries | None:
    """A ratio metric's bad and total counts per interval from the cumulative increases of its
    total and of its part (bad or good); None when no interval has a usable total."""
    total = _Aligned.of(list(total_result.values()), window)
    part = _Aligned.of(list(part_result.values()), window)

    broken = total.non_finite | part.non_finite
    if broken.any():
        log.warning(
            "non-finite values from Prometheus; intervals treated as missing",
            intervals=np.flatnonzero(broken).tolist(),
        )
    usable = total.present & ~broken
    if not usable.any():
        log.warning("no usable total in the window", intervals=window.intervals)
        return None
    total_counts = np.where(usable, np.maximum(total.values, 0.0), 0.0)
    part_counts = np.where(usable, np.maximum(part.values, 0.0), 0.0)
    bad = part_counts if query.bad else total_counts - part_counts
    # extrapolation can push one series a little past the other: bad stays within total
    bad = np.clip(bad, 0.0, total_counts)
    return RatioSeries(
        bad=np.asarray(bad, dtype=np.float64), total=np.asarray(total_counts, dtype=np.float64)
    )


def histogram_series(
    query: MetricQuery, selector_text: str, result: _Cumulative, window: Window, log: Any
) -> HistogramSeries | None:
    """A histogram metric's per-bucket counts per interval from the cumulative increases of its
    buckets (`result`: one key per `le`, from `selector_text`); None when no interval has
    usable counts. Raises `BadData` for a bucket without a usable `le` or no `+Inf` bucket."""
    promql = increase_query(selector_text, window.step.total_seconds(), by_le=True)
    bound_of: list[float] = []
    for key in result:
        le = dict(key).get("le")
        try:
            bound = float(le) if isinstance(le, str) else math.nan
        except ValueError:
            bound = math.nan
        if math.isnan(bound):
            raise BadData(
                f"histogram metric {query.name!r}: a series of {promql} has "
                f"{'no `le` label' if le is None else f'the `le` value {le!r}'}"
            )
        bound_of.append(bound)
    if math.inf not in bound_of:
        raise BadData(
            f'histogram metric {query.name!r}: {promql} has no le="+Inf" bucket; '
            "every Prometheus histogram must have one"
        )

    raw_bounds = sorted(set(bound_of))
    place = {bound: i for i, bound in enumerate(raw_bounds)}
    buckets = _Aligned.by_group(
        list(result.values()), [place[b] for b in bound_of], len(raw_bounds), window
    )
    broken = np.logical_or.reduce([b.non_finite for b in buckets])
    if broken.any():
        log.warning(
            "non-finite values from Prometheus; intervals treated as missing",
            intervals=np.flatnonzero(broken).tolist(),
        )
    usable = np.logical_or.reduce([b.present for b in buckets]) & ~broken
    if not usable.any():
        log.warning("no usable histogram counts in the window", intervals=window.intervals)
        return None
    cumulative = np.column_stack([np.maximum(b.values, 0.0) for b in buckets])
    cumulative[~usable] = 0.0
    # cumulative counts never decrease with `le`; extrapolation noise can make them
    cumulative = np.maximum.accumulate(cumulative, axis=1)
    counts = np.diff(cumulative, axis=1, prepend=0.0)
    bounds = np.asarray(
        [b * query.unit_seconds if math.isfinite(b) else b for b in raw_bounds],
        dtype=np.float64,
    )
    return HistogramSeries(bounds=bounds, counts=np.asarray(counts, dtype=np.float64))

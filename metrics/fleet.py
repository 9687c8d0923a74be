"""Many runs' looks read together: a few queries for all the looks of one analysis at once.

A look of one run reads its own counters: a probe, a page of raw samples per counter and version,
instant queries for its short windows and its pre-run baseline: about ten requests a look. When
many runs of one analysis look at about the same time (a controller's Rollouts that started
updating together, a busy web provider), `FleetSource`, wrapped around a `PrometheusSource`,
reads the looks that arrive together in a few requests, whatever their number:

* **one raw read per counter** (its template and matcher labels) for every look of the batch,
  canary and baseline alike: the counter's selector with each matcher label whose value differs
  between the looks as a regular expression of exactly their values
  (`destination_service_name=~"svc-1-canary|svc-1-stable|svc-2-canary"`), over the union of
  their windows. Each look keeps its own series and samples and computes every interval's
  cumulative increase with Prometheus' own arithmetic (`metrics.increase`, a ratio's part
  counted from its total's samples as `metrics.selectors` tells), exactly as its own raw read
  would: the same numbers (the tests hold them equal);
* **one instant query** for everything else of the batch, each piece tagged with a
  `verdict_fetch` label (`label_replace`) and joined by `or` (a balanced tree, so Prometheus
  merges them in n log n): every raw read's probe (the series present at its window's start,
  `sel @ start`) and every look of a short window (fewer looks than the source's
  `range_read_from`, or any window while raw reads are not checked yet: a run's first
  intervals, the pre-run baseline) as the source's own `increase_query`, every selector pinned
  at the look's instant with `@`; a ratio's part that answered no series while its total has
  requests is checked as the inner source checks it (`PrometheusSource._check_part`: the label
  values of the total's series its query would have counted), all of them in one more query.

So a batch costs one request per counter read raw plus one or two, and every look's numbers are
those its own reads would give: the arithmetic, the counted parts, the check of an empty part,
the consistency checks (`PrometheusSource._check_consistent`) and the series-to-intervals step
(`ratio_series`, `histogram_series`) are the inner source's. A batch's queries are cut to at
most `LONG_QUERY` characters each, and to `SHORT_QUERY` once the store refused a longer one
(VictoriaMetrics takes 16 KiB by default).

How looks get together. The run service tells the source every fetch of a look before it fetches
(`read_together`); a look that arrives less than `gather` seconds after another look of the
same analysis (the same counters) opens a batch or joins the open one; the look that opened it
waits `gather` seconds for more (at most `max_looks` join), reads for all of them, and every
look's fetches are then answered from what was read (`fetch`). A look with no other look of its
analysis that close (a small fleet) never waits: the inner source reads it, as before. Looks
that arrive while their batch is being read join the next one.

What is left to the inner source (`fetch` passes it on): a lone look; a look's fetches that the
batch could not answer as its own reads would: a ratio whose part cannot be counted from its
total's samples; a window whose looks' ranges do not share a start in whole milliseconds; a
window of more than 20 looks while raw reads are not checked (its settled looks are in the inner
source's cache); a metric whose data cannot be used (the inner source says why). Raw reads wait
for the inner source's first raw read to be checked against the server's own `increase()`
(the batch asks one look's fetch of it first, when a look is old enough to check), and stop for
good when they disagreed (another PromQL engine). An answer too large for one read splits
nothing: the batch's looks are read one by one.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np
import structlog

from metrics.errors import AnswerTooLarge, BadData, PartMissing, QueryError
from metrics.increase import CumulativeIncrease, LabelKey, Page
from metrics.prometheus import (
    EDGE_SECONDS,
    _counted_part,
    histogram_series,
    ratio_series,
)
from metrics.promql import increase_query, promql_duration, render, union_selector
from metrics.selectors import narrowing, parse_selector
from metrics.source import (
    Fetch,
    MetricKind,
    MetricQuery,
    Series,
    Version,
    Window,
)

_log = structlog.get_logger()
DEFAULT_GATHER = 0.15
"""Seconds the first look of a batch waits for others (only while looks keep arriving)."""
LONG_QUERY = 256 * 1024
"""Characters of PromQL one request of a batch may hold at first (Prometheus has no limit)."""
SHORT_QUERY = 12 * 1024
"""... and once the store refused a longer one (under VictoriaMetrics' 16 KiB)."""
_TAG = "verdict_fetch"
_MOST_INSTANT_LOOKS = 20  # a longer window read by instant queries is the inner source's
_KEEP_SECONDS = 120.0  # answers not taken by their look within this are dropped
_STEP_ASIDE = object()  # the batch left this fetch to the inner source

_T = TypeVar("_T")
FetchKey = tuple[MetricQuery, str, tuple[tuple[str, str], ...], Window]
Cumulative = dict[LabelKey, dict[int, float]]


def fetch_key(
    query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
) -> FetchKey:
    return (query, str(version), tuple(sorted(matchers.items())), window)


def _counters(query: MetricQuery) -> list[tuple[str, bool, str]]:
    """(template, by `le`, role) of every counter a metric reads: `total` and `part` of a
    ratio, `buckets` of a histogram."""
    if query.kind is MetricKind.HISTOGRAM:
        return [(query.buckets, True, "buckets")] if query.buckets else []
    part = query.bad or query.good
    return [(query.total, False, "total"), (part, False, "part")] if query.total and part else []


@dataclass
class _Batch:
    """Looks gathered to be read together (each: its fetches)."""

    deadline: float
    looks: list[list[Fetch]] = field(default_factory=list)
    closed: bool = False
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Raw:
    """One fetch's counter read raw: its selector, the window's instants (ms) and, once read,
    the series present at its start and its samples."""

    fetch: Fetch
    template: str
    by_le: bool
    role: str
    text: str
    start_ms: int
    ends_ms: list[int]
    present: set[LabelKey] = field(default_factory=set)
    page: Page | None = None


@dataclass
class _Short:
    """One fetch's counter read by instant queries, one a look (a short window)."""

    fetch: Fetch
    by_le: bool
    role: str
    text: str
    looks: list[tuple[float, int]]  # (range seconds, instant ms) of each look
    tag: str = ""  # its looks' answers are tagged `<tag>.<look>`


class FleetSource:
    """A `MetricSource` that reads the looks of many runs together (module docstring) and
    passes everything else to `inner` (a `PrometheusSource`)."""

    def __init__(self, inner: Any, *, gather: float = DEFAULT_GATHER, max_looks: int = 100) -> None:
        self.inner = inner
        self.gather = max(0.0, gather)
        self.max_looks = max(2, max_looks)
        self._lock = threading.Lock()
        self._open: dict[tuple[Any, ...], _Batch] = {}
        self._last: dict[tuple[Any, ...], float] = {}
        self._answers: dict[FetchKey, tuple[float, object]] = {}
        self.longest_query = LONG_QUERY
        self.batches = 0
        """Batches read so far (and `batched_looks`: the looks they held)."""
        self.batched_looks = 0

    def __repr__(self) -> str:
        return f"FleetSource({self.inner!r})"

    @property
    def url(self) -> str:
        return str(self.inner.url)

    # --- MetricSource and the hints -------------------------------------------------------

    def fetch(
        self, query: MetricQuery, version: Version, matchers: dict[str, str], window: Window
    ) -> Series | None:
        with self._lock:
            found = self._answers.pop(fetch_key(query, version, matchers, window), None)
        if found is None or found[1] is _STEP_ASIDE:
            return self.inner.fetch(query, version, matchers, window)  # type: ignore[no-any-return]
        answer = found[1]
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[return-value]

    def check(self) -> None:
        self.inner.check()

    def answers_quickly(self) -> bool:
        quick = getattr(self.inner, "answers_quickly", None)
        return bool(quick()) if quick is not None else False

    def answered(self, fetches: Sequence[Fetch]) -> bool:
        """Whether a batch already holds the answer of every one of `fetches` (an error
        included): fetching them sends no request."""
        with self._lock:
            for f in fetches:
                found = self._answers.get(_key_of(f))
                if found is None or found[1] is _STEP_ASIDE:
                    return False
        return True

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def read_ahead(self, fetches: Sequence[Fetch]) -> None:
        """Passed on to the inner source for the fetches no batch has read."""
        with self._lock:
            waiting = [f for f in fetches if _key_of(f) not in self._answers]
        read_ahead = getattr(self.inner, "read_ahead", None)
        if waiting and read_ahead is not None:
            read_ahead(waiting)

    def read_together(self, fetches: Sequence[Fetch]) -> None:
        """Every fetch of one look, before it fetches: read with the other looks of its
        analysis that arrive with it (module docstring); a lone look returns at once."""
        fetches = list(fetches)
        family = _family(fetches)
        if family is None:
            return
        now = time.monotonic()
        with self._lock:
            # another look of the analysis came less than `gather` ago: more are coming
            busy = now - self._last.get(family, -math.inf) < self.gather
            self._last[family] = now
            batch: _Batch | None = self._open.get(family)
            leader = batch is None or batch.closed or len(batch.looks) >= self.max_looks
            if leader:
                batch = _Batch(deadline=now + self.gather) if busy else None
                if batch is not None:
                    self._open[family] = batch
            if batch is not None:
                batch.looks.append(fetches)
        if batch is None:
            return  # alone: the look reads its own, as before
        if not leader:
            batch.done.wait()
            return
        time.sleep(max(0.0, batch.deadline - time.monotonic()))
        with self._lock:
            batch.closed = True
            if self._open.get(family) is batch:
                del self._open[family]
        try:
            if len(batch.looks) > 1:
                self._read(batch.looks)
        finally:
            batch.done.set()

    # --- a batch ---------------------------------------------------------------------------

    def _read(self, looks: list[list[Fetch]]) -> None:
        """Read every fetch of `looks` together and keep each answer for its look."""
        answers: dict[FetchKey, object] = {}
        fetches = [f for look in looks for f in look]
        try:
            self._read_all(fetches, answers)
        except AnswerTooLarge:
            answers = {}  # one by one: each look's own reads page what they read
        except Exception as exc:  # the server is down, a query was rejected: every look's error
            answers = {_key_of(f): exc for f in fetches}
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (at, _) in self._answers.items() if now - at > _KEEP_SECONDS]:
                del self._answers[key]
            for f in fetches:
                self._answers[_key_of(f)] = (now, answers.get(_key_of(f), _STEP_ASIDE))
            self.batches += 1
            self.batched_looks += len(looks)

    def _read_all(self, fetches: list[Fetch], answers: dict[FetchKey, object]) -> None:
        raw_ok = self._raw_reads_checked()
        if not raw_ok:
            # the inner source checks its first raw read against the server's own answer (at a
            # look whose samples have all landed): one fetch of the batch that it would read
            # raw goes first, and decides for the others
            first = next((f for f in fetches if self._checkable(f)), None)
            if first is not None:
                try:
                    answers[_key_of(first)] = self.inner.fetch(
                        first.query, first.version, first.matchers, first.window
                    )
                except Exception as exc:
                    answers[_key_of(first)] = exc
                raw_ok = self._raw_reads_checked()
        shorts: list[_Short] = []
        raws: list[_Raw] = []
        for f in fetches:
            if _key_of(f) not in answers:
                self._plan(f, shorts, raws, answers, raw_ok)
        if not shorts and not raws:
            return
        tagged = self._instant(shorts, raws)
        checks: list[_PartCheck] = []
        for fetch, parts in _by_fetch(shorts, []):
            key = _key_of(fetch)
            if key in answers:
                continue
            try:
                answers[key] = self._series(fetch, parts, tagged, checks)
            except (BadData, QueryError):
                answers[key] = _STEP_ASIDE  # the inner source reads it, and says what is wrong
        if checks:
            self._check_parts(checks, answers)
        for (template, by_le), group in _groupby(raws, lambda r: (r.template, r.by_le)).items():
            self._shortened(partial(self._read_raws, template, by_le, group))
        for fetch, parts in _by_fetch([], raws):
            key = _key_of(fetch)
            if key in answers:
                continue
            try:
                answers[key] = self._raw_series(fetch, parts)
            except (BadData, QueryError):
                answers[key] = _STEP_ASIDE

    def _plan(
        self,
        f: Fetch,
        shorts: list[_Short],
        raws: list[_Raw],
        answers: dict[FetchKey, object],
        raw_ok: bool,
    ) -> None:
        """How `f` is read: raw (as the inner source reads a window of enough looks, once its
        raw reads are checked), by instant queries (a short window, or any window the inner
        source would not read raw yet), or by the inner source."""
        counters = _counters(f.query)
        instants = self.inner._instants(f.window)
        if not counters or instants.start_ms is None:
            answers[_key_of(f)] = _STEP_ASIDE
            return
        raw = raw_ok and len(instants.ms) >= self._raw_from()
        if raw and f.query.kind is MetricKind.RATIO and _counted(f) is None:
            answers[_key_of(f)] = _STEP_ASIDE
            return
        if raw:
            template, by_le, role = counters[0]  # a ratio's part is counted from its total
            raws.append(
                _Raw(f, template, by_le, role, render(template, f.matchers), instants.start_ms,
                     list(instants.ms))
            )  # fmt: skip
            return
        if len(instants.ms) > _MOST_INSTANT_LOOKS:
            answers[_key_of(f)] = _STEP_ASIDE  # its settled looks are in the inner's cache
            return
        for template, by_le, role in counters:
            shorts.append(
                _Short(f, by_le, role, render(template, f.matchers),
                       list(zip(instants.ranges, instants.ms, strict=True)))
            )  # fmt: skip

    def _raw_from(self) -> int:
        """The fewest looks the inner source reads raw (a store whose increase() has rules of
        its own is read raw whatever the window)."""
        return (
            1 if getattr(self.inner, "increase_differs", False) else int(self.inner.range_read_from)
        )

    def _checkable(self, f: Fetch) -> bool:
        """Whether the inner source would read `f` raw and check it: a window of enough looks,
        one of them old enough for its samples to have all landed."""
        if not _counters(f.query) or getattr(self.inner, "raw_reads_disagree", False):
            return False
        instants = self.inner._instants(f.window)
        settled = time.time() - EDGE_SECONDS
        return len(instants.ms) >= self._raw_from() and instants.seconds[0] <= settled

    def _raw_reads_checked(self) -> bool:
        """Whether the inner source's first raw read was checked and agreed with the server."""
        check = getattr(self.inner, "_raw_read_agrees", None)
        return bool(
            check is not None and check.done() and check.exception() is None and check.result()
        )

    def _instant(self, shorts: list[_Short], raws: list[_Raw]) -> dict[str, dict[LabelKey, float]]:
        """One query for the probes of `raws` and every look of `shorts`; tag -> its answer.
        Sets each raw read's `present`."""
        pieces: list[str] = []
        for i, raw in enumerate(raws):
            pieces.append(_tagged(f"{raw.text} @ {raw.start_ms / 1000:.3f}", f"p{i}"))
        asked: dict[tuple[str, bool, tuple[tuple[float, int], ...]], str] = {}
        for short in shorts:  # the same counter over the same looks is asked once
            same = (short.text, short.by_le, tuple(short.looks))
            short.tag = asked.get(same, "")
            if short.tag:
                continue
            short.tag = asked[same] = f"s{len(asked)}"
            for k, (seconds, at_ms) in enumerate(short.looks):
                query = increase_query(short.text, seconds, by_le=short.by_le, at=at_ms / 1000)
                pieces.append(_tagged(query, f"{short.tag}.{k}"))
        if not pieces:
            return {}
        at_ms = max([r.ends_ms[-1] for r in raws] + [s.looks[-1][1] for s in shorts])
        tagged: dict[str, dict[LabelKey, float]] = {}
        for series in self._pieces(pieces, at_ms):
            metric = dict(series.get("metric", {}))
            tag = metric.pop(_TAG, None)
            try:
                value = float(series["value"][1])
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise BadData(f"unreadable point in a Prometheus answer: {series!r}") from exc
            if tag is not None:
                tagged.setdefault(tag, {})[tuple(metric.items())] = value
        for i, raw in enumerate(raws):
            raw.present = set(tagged.get(f"p{i}", {}))
        return tagged

    def _series(
        self,
        fetch: Fetch,
        parts: list[Any],
        tagged: dict[str, dict[LabelKey, float]],
        checks: list[_PartCheck],
    ) -> object:
        """A short window's series from its looks' instant answers (as the inner source's
        instant queries would give it). A ratio whose part answered nothing while its total
        has requests is left in `checks` (`_check_parts`) when its part could have lost data."""
        results: dict[str, Cumulative] = {}
        for short in parts:
            if not isinstance(short, _Short):
                continue
            cumulative: Cumulative = {}
            for k in range(len(short.looks)):
                for key, value in tagged.get(f"{short.tag}.{k}", {}).items():
                    cumulative.setdefault(key, {})[k] = value
            results[short.role] = cumulative
        if not results:
            return _STEP_ASIDE
        window = fetch.window
        log = _log.bind(
            metric=fetch.query.name, version=str(fetch.version), prometheus=self.inner.url
        )
        if fetch.query.kind is MetricKind.HISTOGRAM:
            short = parts[0]
            if not _last(results["buckets"], window):
                return None
            self.inner._check_consistent(short.text, window, results["buckets"])
            return histogram_series(fetch.query, short.text, results["buckets"], window, log)
        total, part = results.get("total", {}), results.get("part", {})
        if not _last(total, window):
            return None
        for short in parts:
            self.inner._check_consistent(short.text, window, results[short.role])
        if not part:
            check = _part_check(fetch, window, total)
            if check is not None:
                check.series = partial(ratio_series, fetch.query, total, part, window, log)
                checks.append(check)
                return _STEP_ASIDE  # until checked
        return ratio_series(fetch.query, total, part, window, log)

    def _check_parts(self, checks: list[_PartCheck], answers: dict[FetchKey, object]) -> None:
        """The inner source's check of an empty part (`PrometheusSource._check_part`), for all
        of `checks` in one query: the label values of the total's series that the part's query
        would have counted; one the part selects (or cannot tell) means its answer lost data."""
        pieces = [_tagged(c.query, f"c{i}") for i, c in enumerate(checks)]
        at_ms = max(c.at_ms for c in checks)
        tagged: dict[str, list[LabelKey]] = {}
        for series in self._pieces(pieces, at_ms):
            metric = dict(series.get("metric", {}))
            tag = metric.pop(_TAG, None)
            if tag is not None:
                tagged.setdefault(tag, []).append(tuple(metric.items()))
        for i, check in enumerate(checks):
            if any(check.selects(key) is not False for key in tagged.get(f"c{i}", [])):
                answers[_key_of(check.fetch)] = PartMissing(
                    check.part, check.part_text, check.requests
                )
            else:
                answers[_key_of(check.fetch)] = check.series()

    def _pieces(self, pieces: list[str], at_ms: int) -> list[dict[str, Any]]:
        """The answers of tagged `pieces` joined by `or`, in as few queries as the store takes
        (`_fitting`)."""

        def ask() -> list[dict[str, Any]]:
            answers: list[dict[str, Any]] = []
            for part in self._fitting(pieces, lambda piece: len(piece) + 10):
                answers += self.inner._vector(_balanced_or(part), at_ms)
            return answers

        return self._shortened(ask)

    def _read_raws(self, template: str, by_le: bool, raws: list[_Raw]) -> None:
        for part in self._fitting(raws, lambda raw: 2 * sum(map(len, raw.fetch.matchers.values()))):
            self._read_raw(template, by_le, part)

    def _fitting(self, items: list[_T], size: Callable[[_T], int]) -> list[list[_T]]:
        """`items` cut into runs of at most `longest_query` characters of query (by `size`;
        one item alone may be longer)."""
        parts: list[list[_T]] = []
        used = 0
        for item in items:
            more = size(item)
            if parts and used + more <= self.longest_query:
                parts[-1].append(item)
                used += more
            else:
                parts.append([item])
                used = more
        return parts

    def _shortened(self, ask: Callable[[], _T]) -> _T:
        """`ask()`, asked again in short queries when the store refused a long one
        (VictoriaMetrics takes 16 KiB by default: `-search.maxQueryLen`); short from then on."""
        try:
            return ask()
        except QueryError:
            if self.longest_query <= SHORT_QUERY:
                raise
            _log.info("the store refused a long query; asking in short ones", store=self.inner.url)
            self.longest_query = SHORT_QUERY
            return ask()

    def _read_raw(self, template: str, by_le: bool, raws: list[_Raw]) -> None:
        """One raw read of `template` for every fetch of `raws`; each keeps its samples."""
        text = _union(template, raws)
        start_ms = min(r.start_ms for r in raws)
        end_ms = max(r.ends_ms[-1] for r in raws)
        # back to 1 ms before the earliest start: Prometheus 2.x's ranges hold both ends,
        # others' leave out their start; samples before each look's start are dropped below
        promql = f"{text}[{promql_duration((end_ms - start_ms + 1) / 1000)}]"
        matrix = self.inner._matrix(promql, self.inner._ask(promql, end_ms / 1000), {})
        offsets = np.concatenate(([0], np.cumsum(matrix.sizes)))
        times_ms = np.rint(matrix.times * 1000).astype(np.int64)
        names = sorted(raws[0].fetch.matchers)
        series_of: dict[tuple[str, ...], list[int]] = {}
        for i, key in enumerate(matrix.keys):
            labels = dict(key)
            series_of.setdefault(tuple(labels.get(n, "") for n in names), []).append(i)
        for raw in raws:
            mine = series_of.get(tuple(raw.fetch.matchers[n] for n in names), [])
            keys: list[LabelKey] = []
            groups: list[LabelKey] = []
            sizes: list[int] = []
            times: list[Any] = []
            values: list[Any] = []
            for i in mine:
                t = times_ms[offsets[i] : offsets[i + 1]]
                lo = int(np.searchsorted(t, raw.start_ms, side="left"))
                hi = int(np.searchsorted(t, raw.ends_ms[-1], side="right"))
                if hi == lo:
                    continue
                key = matrix.keys[i]
                le = dict(key).get("le") if by_le else None
                keys.append(key)
                groups.append((("le", str(le)),) if le is not None else ())
                sizes.append(hi - lo)
                times.append(t[lo:hi])
                values.append(matrix.values[offsets[i] + lo : offsets[i] + hi])
            raw.page = Page(
                keys=keys,
                groups=groups,
                sizes=np.asarray(sizes, dtype=np.int64),
                times_ms=np.concatenate(times) if times else np.empty(0, dtype=np.int64),
                values=np.concatenate(values) if values else np.empty(0, dtype=np.float64),
                end_ms=raw.ends_ms[-1],
            )

    def _raw_series(self, fetch: Fetch, parts: list[Any]) -> object:
        """A window's series from its raw samples (as the inner source's raw read gives it)."""
        raw = next(p for p in parts if isinstance(p, _Raw))
        window = fetch.window
        counted = _counted(fetch) if fetch.query.kind is MetricKind.RATIO else None
        computed = CumulativeIncrease(
            raw.start_ms, raw.ends_ms, raw.present, [counted[2]] if counted else []
        )
        if raw.page is None:
            return _STEP_ASIDE
        computed.add_page(raw.page)
        cumulative = computed.answers()
        if not _answered(cumulative, len(raw.ends_ms) - 1):
            return None
        self.inner._check_consistent(raw.text, window, cumulative)
        log = _log.bind(
            metric=fetch.query.name, version=str(fetch.version), prometheus=self.inner.url
        )
        if fetch.query.kind is MetricKind.HISTOGRAM:
            return histogram_series(fetch.query, raw.text, cumulative, window, log)
        part = computed.part_answers(0)
        if counted is None or part is None:
            return _STEP_ASIDE  # a series of the total the part's selector cannot tell
        self.inner._check_consistent(counted[1], window, part)
        return ratio_series(fetch.query, cumulative, part, window, log)


@dataclass
class _PartCheck:
    """An empty part to check (`FleetSource._check_parts`), and its series if it is empty."""

    fetch: Fetch
    part: str
    part_text: str
    selects: Callable[[LabelKey], bool | None]
    requests: float
    query: str
    at_ms: int
    series: Callable[[], object] = lambda: None


def _part_check(fetch: Fetch, window: Window, total: Cumulative) -> _PartCheck | None:
    """The check of a ratio's empty part (as `PrometheusSource._check_part` decides it is
    needed), or None: the empty part is zero bad (or good) requests."""
    query = fetch.query
    part = query.bad or query.good
    total_text, part_text = render(query.total, fetch.matchers), render(part, fetch.matchers)
    selects = narrowing(total_text, part_text)
    requests = _requests(total, window)
    extra = (parse_selector(part_text) or frozenset()) - (parse_selector(total_text) or frozenset())
    names = sorted({m.name for m in extra})
    if selects is None or requests <= 0 or not names or "__name__" in names:
        return None
    seconds = window.step.total_seconds() * window.intervals
    end_ms = round(float(f"{window.end.timestamp():.3f}") * 1000)
    text = (
        f"count by ({', '.join(names)}) (count_over_time({total_text}"
        f"[{promql_duration(seconds)}] @ {end_ms / 1000:.3f}) >= 2)"
    )
    return _PartCheck(
        fetch, "bad" if query.bad else "good", part_text, selects, requests, text, end_ms
    )


def _key_of(f: Fetch) -> FetchKey:
    return fetch_key(f.query, f.version, f.matchers, f.window)


def _family(fetches: list[Fetch]) -> tuple[Any, ...] | None:
    """What looks must share to be read together: their counters and matcher labels (one
    analysis); None for a look that has nothing to read this way."""
    counters = sorted(
        {
            (template, by_le, tuple(sorted(f.matchers)), f.window.step)
            for f in fetches
            for template, by_le, _ in _counters(f.query)
        },
        key=repr,
    )
    return tuple(counters) if counters else None


def _counted(f: Fetch) -> tuple[str, str, Callable[[LabelKey], bool | None]] | None:
    return _counted_part(f.query, f.matchers)


def _by_fetch(shorts: list[_Short], raws: list[_Raw]) -> list[tuple[Fetch, list[Any]]]:
    """The reads of each fetch, in the order the fetches came."""
    out: dict[int, tuple[Fetch, list[Any]]] = {}
    reads: list[_Short | _Raw] = [*shorts, *raws]
    for read in reads:
        out.setdefault(id(read.fetch), (read.fetch, []))[1].append(read)
    return list(out.values())


def _groupby(
    items: list[_Raw], key: Callable[[_Raw], tuple[str, bool]]
) -> dict[tuple[str, bool], list[_Raw]]:
    groups: dict[tuple[str, bool], list[_Raw]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def _union(template: str, raws: list[_Raw]) -> str:
    return union_selector(template, [r.fetch.matchers for r in raws])


def _tagged(query: str, tag: str) -> str:
    return f'label_replace({query}, "{_TAG}", "{tag}", "", "")'


def _balanced_or(pieces: list[str]) -> str:
    """`a or b or c ...` as a balanced tree: Prometheus merges an `or` in the size of its left
    side, so a chain of n pieces costs n², a tree n log n."""
    if len(pieces) == 1:
        return pieces[0]
    middle = len(pieces) // 2
    return f"({_balanced_or(pieces[:middle])}) or ({_balanced_or(pieces[middle:])})"


def _last(cumulative: Cumulative, window: Window) -> bool:
    return _answered(cumulative, window.intervals - 1)


def _answered(cumulative: Cumulative, look: int) -> bool:
    return any(look in by_look for by_look in cumulative.values())


def _requests(total: Cumulative, window: Window) -> float:
    last = window.intervals - 1
    return sum(
        value for by_look in total.values() if math.isfinite(value := by_look.get(last, math.nan))
    )

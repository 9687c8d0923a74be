"""Read once: the raw samples read in pages give exactly the counts of one instant query a look.

Every scenario of the real-Prometheus suite (counter resets, series born inside the window,
scrapes off the interval bounds, NaN samples, missing scrapes, series that stop), every
built-in template, both versions: `PrometheusSource` reading the raw samples (in one page, and
in many small pages) answers what it answers with one cumulative `increase()` query per look.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import structlog.testing

from metrics.prometheus import PrometheusSource
from metrics.promql import BUILTIN_TEMPLATES, render
from metrics.source import (
    Fetch,
    MetricKind,
    MetricQuery,
    RatioSeries,
    Series,
    Version,
    Window,
)
from tests.conftest import PrometheusServer, SlowProxy
from tests.helpers import assert_same_arrays, series_arrays
from tests.local_http import Recording, recording_prometheus, rewriting_prometheus
from tests.promdata import default_scenarios

pytestmark = pytest.mark.prometheus

SCENARIOS = sorted(default_scenarios(datetime.now(UTC)))
QUERIES = [BUILTIN_TEMPLATES[n] for n in ("istio-error-rate", "istio-success-rate", "istio-latency")]
ERROR_RATE = QUERIES[0]
REQUESTS = 'istio_requests_total{reporter="destination",{{ selector }}}'
# a ratio whose part is not counted from its total's samples (a regular expression outside
# the subset `metrics.selectors` evaluates): read as its own selector, beside the total
UNCOUNTED = MetricQuery(
    name="uncounted-errors", kind=MetricKind.RATIO, total=REQUESTS,
    bad='istio_requests_total{reporter="destination",response_code=~"5\\\\d\\\\d",{{ selector }}}',
)
INSTANT_ONLY = 10**9  # never enough uncached looks for a raw read


@pytest.fixture
def recorder(prometheus: PrometheusServer) -> Iterator[Recording]:
    """Every query sent to the real Prometheus through `recorder.url`, in order."""
    with recording_prometheus(prometheus.url) as recording:
        yield recording


def _fetch(source: PrometheusSource, prometheus: PrometheusServer, name: str, query: MetricQuery,
           version: Version, step: timedelta) -> Series | None:
    scenario = prometheus.scenarios[name]
    try:
        return source.fetch(query, version, scenario.matchers(version), scenario.window(step))
    finally:
        source.close()


@pytest.mark.parametrize("step", [timedelta(seconds=60), timedelta(seconds=30)], ids=["1m", "30s"])
@pytest.mark.parametrize("version", [Version.CANARY, Version.BASELINE])
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
@pytest.mark.parametrize("name", SCENARIOS)
def test_raw_read_gives_the_counts_of_the_cumulative_instant_queries(
    prometheus: PrometheusServer, name: str, query: MetricQuery, version: Version, step: timedelta
) -> None:
    instant = _fetch(
        PrometheusSource(prometheus.url, range_read_from=INSTANT_ONLY), prometheus, name, query,
        version, step,
    )
    one_page = _fetch(
        PrometheusSource(prometheus.url, range_read_from=1, page_samples=10**9), prometheus,
        name, query, version, step,
    )
    many_pages = _fetch(
        PrometheusSource(prometheus.url, range_read_from=1, page_samples=25), prometheus, name,
        query, version, step,
    )
    expected = series_arrays(instant)
    if name == "no-canary" and version is Version.CANARY:
        assert expected is None
    else:
        assert expected is not None and expected[-1].sum() > 0, "precondition: requests counted"
    for read in (one_page, many_pages):
        got = series_arrays(read)
        assert (got is None) == (expected is None)
        if got is None or expected is None:
            continue
        for have, want in zip(got, expected, strict=True):
            assert have.shape == want.shape
            # the same arithmetic; sums over series may differ in the last bits
            np.testing.assert_allclose(have, want, rtol=1e-12, atol=1e-9)


def test_the_scenarios_exercise_what_the_raw_read_must_reproduce(
    prometheus: PrometheusServer,
) -> None:
    # Late-born series and extrapolation make the counts fractional: the comparison above is
    # about more than whole numbers. (increase() extrapolates a series born inside the window.)
    scenario = prometheus.scenarios["fresh-canary"]
    series = PrometheusSource(prometheus.url, range_read_from=1).fetch(
        BUILTIN_TEMPLATES["istio-error-rate"], Version.CANARY, scenario.canary_matchers,
        scenario.window(),
    )
    assert isinstance(series, RatioSeries)
    assert not np.allclose(series.bad, np.round(series.bad)), "some counts are extrapolated"
    assert not np.allclose(series.total, np.round(series.total))


def test_a_raw_read_sends_one_query_a_page_not_one_a_look(
    prometheus: PrometheusServer, recorder: Recording
) -> None:
    scenario = prometheus.scenarios["healthy"]
    window = scenario.window(timedelta(seconds=30))
    source = PrometheusSource(recorder.url, range_read_from=1)
    sent = recorder.sent
    source.fetch(BUILTIN_TEMPLATES["istio-latency"], Version.CANARY, scenario.canary_matchers, window)
    # one probe (the series present at the window's start, how many at its end), one page, and, once
    # per source, Prometheus' own answer for the last look to check the raw read against
    assert window.intervals == 80
    assert len(sent) == 3
    sent.clear()
    source.fetch(BUILTIN_TEMPLATES["istio-latency"], Version.BASELINE,
                 scenario.baseline_matchers, window)
    assert len(sent) == 2


def test_a_large_read_is_cut_into_pages_of_bounded_size(
    prometheus: PrometheusServer, recorder: Recording
) -> None:
    # 40 bucket series (20 `le` × 2 response codes) × 4 samples a minute = 160 samples a look
    # at 1 m: a budget of 2000 samples holds about 12 looks, so 40 looks take 4 pages
    scenario = prometheus.scenarios["healthy"]
    source = PrometheusSource(recorder.url, range_read_from=1, page_samples=2000)
    source.fetch(BUILTIN_TEMPLATES["istio-latency"], Version.CANARY, scenario.canary_matchers,
                 scenario.window())
    sizes = [
        sum(len(s.get("values", [])) for s in answer["data"]["result"])
        for _, answer in recorder.sent
    ]
    pages = [size for size in sizes if size]  # not the probe (a vector)
    assert len(pages) >= 4
    assert max(pages) <= 2000 + 160


def test_concurrent_reads_of_the_same_counter_share_one(
    prometheus: PrometheusServer, slow_prometheus: SlowProxy
) -> None:
    # error-rate and success-rate read the same total counter; fetched at the same time (as
    # `fetch_observations` does), its raw samples are read once
    slow_prometheus.delay = 0.5  # both fetches are surely under way together
    scenario = prometheus.scenarios["healthy"]
    with recording_prometheus(slow_prometheus.url) as recording:
        source = PrometheusSource(recording.url, range_read_from=1)
        by_bad, by_good = _fetch_together(source, scenario, [QUERIES[0], QUERIES[1]])
    asked = recording.queries
    total = QUERIES[0].total.replace("{{ selector }}", 'destination_service_name="healthy-canary"')
    assert sum(1 for q in asked if q.startswith(total)) == 1  # one page
    assert isinstance(by_bad, RatioSeries) and isinstance(by_good, RatioSeries)
    np.testing.assert_array_equal(by_bad.total, by_good.total)


def _fetch_together(
    source: PrometheusSource, scenario: Any, queries: list[MetricQuery]
) -> list[Series | None]:
    """The canary's `queries`, fetched at the same moment from two threads."""
    barrier = threading.Barrier(2)

    def fetch(query: MetricQuery) -> Series | None:
        barrier.wait()
        return source.fetch(query, Version.CANARY, scenario.canary_matchers, scenario.window())

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(fetch, queries))


@pytest.fixture
def doubling_proxy(prometheus: PrometheusServer) -> Iterator[str]:
    """A proxy to the real Prometheus whose answers to `increase()` over 40 minutes are doubled:
    a PromQL engine with other arithmetic than the raw read's."""

    def double(query: str, answer: dict[str, Any]) -> bool:
        if "increase(" not in query or "[40m]" not in query:
            return False
        for series in answer["data"]["result"]:
            series["value"][1] = repr(2 * float(series["value"][1]))
        return True

    with rewriting_prometheus(prometheus.url, double) as url:
        yield url


def test_a_raw_read_that_disagrees_with_prometheus_gives_way_to_its_answers(
    prometheus: PrometheusServer, doubling_proxy: str
) -> None:
    # Another engine (Prometheus 3's left-open ranges, a remote store) may count differently
    # from the raw read's Prometheus 2.x arithmetic: the source checks its first raw read against
    # the engine's own last look and, if they differ, keeps to one query a look.
    scenario = prometheus.scenarios["healthy"]
    window = scenario.window()
    source = PrometheusSource(doubling_proxy, range_read_from=1)
    with structlog.testing.capture_logs() as logs:
        series = source.fetch(ERROR_RATE, Version.CANARY, scenario.canary_matchers, window)
    engine = PrometheusSource(doubling_proxy, range_read_from=INSTANT_ONLY).fetch(
        ERROR_RATE, Version.CANARY, scenario.canary_matchers, window
    )
    assert isinstance(series, RatioSeries) and isinstance(engine, RatioSeries)
    np.testing.assert_array_equal(series.total, engine.total)
    assert series.total[-1] > 1.5 * series.total[-2], "the engine's doubled last look is used"
    assert any("using one query a look" in e["event"] for e in logs)
    assert source.raw_reads_disagree


def _read_ahead_and_fetch(
    source: PrometheusSource,
    prometheus: PrometheusServer,
    name: str,
    recorder: Recording | None = None,
) -> tuple[list[list[np.ndarray] | None], list[str]]:
    """Every query × version of a scenario, told to the source first (as `fetch_observations`
    does), fetched concurrently; the arrays, and the PromQL sent (through `recorder`)."""
    scenario = prometheus.scenarios[name]
    window = scenario.window(timedelta(seconds=30))
    if recorder is not None:
        recorder.sent.clear()
    fetches = [
        Fetch(query, version, scenario.matchers(version), window)
        for query in QUERIES
        for version in (Version.CANARY, Version.BASELINE)
    ]
    try:
        source.read_ahead(fetches)
        with ThreadPoolExecutor(max_workers=4) as pool:
            series = list(pool.map(lambda f: source.fetch(f.query, f.version, f.matchers, f.window), fetches))
    finally:
        source.close()
    return [series_arrays(s) for s in series], recorder.queries if recorder is not None else []


@pytest.mark.parametrize("name", ["healthy", "fresh-canary"])
@pytest.mark.parametrize(("quick_seconds", "probes_sent"), [(0.0, 2), (60.0, 1)])
def test_reading_ahead_probes_every_counter_in_one_query_a_version_with_the_same_counts(
    prometheus: PrometheusServer,
    recorder: Recording,
    name: str,
    quick_seconds: float,
    probes_sent: int,
) -> None:
    source = PrometheusSource(recorder.url, range_read_from=1, quick_seconds=quick_seconds)
    ahead, sent = _read_ahead_and_fetch(source, prometheus, name, recorder)
    instant, _ = _read_ahead_and_fetch(PrometheusSource(prometheus.url, range_read_from=INSTANT_ONLY), prometheus, name)
    probes = [q for q in sent if " offset " in q and "increase(" not in q]
    # one probe a version, sent side by side; one for both from a quick source (whose
    # requests are sent one after another)
    assert len(probes) == probes_sent and all("verdict_probe" in q for q in probes), probes
    for got, expected in zip(ahead, instant, strict=True):
        assert (got is None) == (expected is None)
        assert_same_arrays(got, expected)


def test_a_counter_with_many_series_is_probed_by_its_own_read(
    prometheus: PrometheusServer, recorder: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the read-ahead lists a counter's series only up to a limit; above it, that counter's read
    # probes for itself (in parallel with the others) and counts the same
    import metrics.prometheus

    monkeypatch.setattr(metrics.prometheus, "_READ_AHEAD_SERIES", 1)
    ahead, sent = _read_ahead_and_fetch(
        PrometheusSource(recorder.url, range_read_from=1, quick_seconds=0),
        prometheus,
        "healthy",
        recorder,
    )
    instant, _ = _read_ahead_and_fetch(PrometheusSource(prometheus.url, range_read_from=INSTANT_ONLY), prometheus, "healthy")
    probes = [q for q in sent if " offset " in q and "increase(" not in q]
    assert sum("verdict_probe" in q for q in probes) == 2
    assert any("verdict_probe" not in q for q in probes)
    for got, expected in zip(ahead, instant, strict=True):
        assert_same_arrays(got, expected)


def test_a_second_look_at_a_settled_window_sends_no_probe(
    prometheus: PrometheusServer, recorder: Recording
) -> None:
    # the looks a raw read cached are not read again, so reading ahead does not probe for them
    source = PrometheusSource(recorder.url, range_read_from=1)
    _read_ahead_and_fetch(source, prometheus, "healthy", recorder)
    again, sent = _read_ahead_and_fetch(source, prometheus, "healthy", recorder)
    assert not [q for q in sent if " offset " in q], sent
    first, _ = _read_ahead_and_fetch(PrometheusSource(prometheus.url, range_read_from=1), prometheus, "healthy")
    for got, expected in zip(again, first, strict=True):
        assert_same_arrays(got, expected)


def test_a_source_keeps_its_threads_between_reads_and_ends_them_on_close(
    prometheus: PrometheusServer,
) -> None:
    # what a read asks beside another (probes, the check, the next page) and the parts of
    # ratios run on the source's own threads: kept between reads, ended by close(), and
    # started again when a closed source is used again
    def source_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith(("verdict-ask", "verdict-part"))}

    before = source_threads()
    # (quick_seconds=0: threads whatever the server's speed; a quick one is read without them)
    source = PrometheusSource(prometheus.url, range_read_from=1, quick_seconds=0)
    scenario = prometheus.scenarios["healthy"]
    window = scenario.window(timedelta(seconds=30))
    fetches = [Fetch(q, v, scenario.matchers(v), window) for q in [*QUERIES, UNCOUNTED] for v in Version]

    def read_all() -> list[list[np.ndarray] | None]:
        source.read_ahead(fetches)
        return [series_arrays(source.fetch(f.query, f.version, f.matchers, f.window)) for f in fetches]

    first = read_all()
    kept = source_threads() - before
    assert {t.name.split("_")[0] for t in kept} == {"verdict-ask", "verdict-part"}, kept
    source.close()
    for thread in kept:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in kept), "close() ends the source's threads"
    again = read_all()  # a closed source still reads, as its HTTP pool still connects
    source.close()
    for got, expected in zip(again, first, strict=True):
        assert_same_arrays(got, expected, exact=True)


@pytest.mark.parametrize(("new_looks", "raw"), [(2, False), (3, True)])
def test_a_window_is_read_raw_once_enough_of_its_looks_are_not_cached(
    prometheus: PrometheusServer, recorder: Recording, new_looks: int, raw: bool
) -> None:
    # with range_read_from=3, a window whose cache lacks 2 looks asks those 2 instant queries;
    # one that lacks 3 reads the raw samples again
    scenario = prometheus.scenarios["healthy"]
    step = timedelta(seconds=60)
    source = PrometheusSource(recorder.url, range_read_from=3)
    matchers = scenario.matchers(Version.CANARY)
    looks = scenario.window(step).intervals
    first = Window(start=scenario.start, end=scenario.start + step * (looks - new_looks), step=step)
    whole = scenario.window(step)
    source.fetch(ERROR_RATE, Version.CANARY, matchers, first)
    recorder.sent.clear()
    again = source.fetch(ERROR_RATE, Version.CANARY, matchers, whole)
    source.close()
    pages = [q for q in recorder.queries if q.endswith("]") and "increase(" not in q]
    increases = [q for q in recorder.queries if "increase(" in q]
    if raw:
        assert pages, recorder.queries
    else:
        assert not pages and len(increases) == 2 * new_looks, recorder.queries  # total and bad
    expected = PrometheusSource(prometheus.url, range_read_from=INSTANT_ONLY).fetch(
        ERROR_RATE, Version.CANARY, matchers, whole
    )
    assert_same_arrays(series_arrays(again), series_arrays(expected))


# Parts counted from their total's samples (`metrics.selectors`): a ratio's part that is its
# total with more matchers is not read again. Each is compared with Prometheus' own count of
# the part (one instant query a look, its matchers evaluated by Prometheus).
PARTS = {
    # counted here
    '=~"5.."': True, '=~"5.*"': True, '=~"2..|5.."': True, '=~"50[0-9]"': True,
    '=~"(2|5)0."': True, '=~"[0-9]+"': True, '=~"20?3"': True, '=~".*"': True,
    '=~""': True, '=~"x*"': True, '!~"5.."': True, '!~"2.*"': True, '="503"': True,
    '!="200"': True, '="200 "': True,
    # read as their own selectors
    '=~"5\\\\d\\\\d"': False, '=~"(?i)5.."': False, '=~"5.{2}"': False, '=~"[^2].."': False,
}
ABSENT = {  # a label no series has reads as "" (as in PromQL)
    'grpc_response_status=""': True, 'grpc_response_status=~".*"': True,
    'grpc_response_status!=""': True, 'grpc_response_status=~"x?"': True,
}


def _part_query(matcher: str) -> MetricQuery:
    label = matcher if matcher.startswith("grpc") else f"response_code{matcher}"
    return MetricQuery(
        name="part", kind=MetricKind.RATIO, total=REQUESTS,
        bad=f'istio_requests_total{{reporter="destination",{label},{{{{ selector }}}}}}',
    )


@pytest.mark.parametrize("name", ["error-regression", "fresh-canary", "counter-reset", "missing-scrapes"])
@pytest.mark.parametrize(("matcher", "counted"), [*PARTS.items(), *ABSENT.items()])
def test_a_part_counted_from_its_total_is_prometheus_own_count(
    prometheus: PrometheusServer, recorder: Recording, name: str, matcher: str, counted: bool
) -> None:
    query = _part_query(matcher)
    scenario = prometheus.scenarios[name]
    window = scenario.window(timedelta(seconds=30))
    for version in Version:
        recorder.sent.clear()
        source = PrometheusSource(recorder.url, range_read_from=1, page_samples=400)
        got = series_arrays(source.fetch(query, version, scenario.matchers(version), window))
        part = render(query.bad or "", scenario.matchers(version))
        pages_of_part = [q for q in recorder.queries if q.startswith(part + "[")]
        assert bool(pages_of_part) is not counted, pages_of_part
        assert sum(q.startswith(render(REQUESTS, scenario.matchers(version)) + "[") for q in recorder.queries) > 1, "precondition: several pages"
        expected = series_arrays(PrometheusSource(prometheus.url, range_read_from=INSTANT_ONLY).fetch(
            query, version, scenario.matchers(version), window
        ))
        assert got is not None and expected is not None
        for have, want in zip(got, expected, strict=True):
            np.testing.assert_allclose(have, want, rtol=1e-12, atol=1e-9)


def test_the_parts_compared_above_tell_the_series_apart(prometheus: PrometheusServer) -> None:
    # (precondition of the comparison: the parts select different series, each of them some
    # and not all, so a matcher evaluated wrongly here changes a count)
    scenario = prometheus.scenarios["error-regression"]
    source = PrometheusSource(prometheus.url, range_read_from=INSTANT_ONLY)
    bad_share = {}
    for matcher in PARTS:
        series = source.fetch(_part_query(matcher), Version.CANARY, scenario.canary_matchers, scenario.window())
        assert isinstance(series, RatioSeries)
        bad_share[matcher] = round(float(series.bad.sum() / series.total.sum()), 6)
    assert bad_share['=~"5.."'] not in (0.0, 1.0)
    assert bad_share['=~"5.."'] + bad_share['!~"5.."'] == pytest.approx(1.0)
    assert {bad_share[m] for m in PARTS} == {0.0, 1.0, bad_share['=~"5.."'], bad_share['!~"5.."']}


@pytest.mark.parametrize("quick_seconds", [0.0, 60.0], ids=["threads", "quick"])
@pytest.mark.parametrize("settled", [True, False], ids=["settled", "not-settled"])
def test_an_analysis_reads_each_requests_counter_without_its_parts(
    prometheus: PrometheusServer, recorder: Recording, quick_seconds: float, settled: bool
) -> None:
    # error rate and success rate (5xx and not 5xx of all requests) and latency, both versions:
    # the raw samples of each version's requests counter and buckets are read, never a part's;
    # the read-ahead probes no part. A window still settling (its looks not cached) may read
    # a requests counter once a metric (when the reads do not meet), counting the parts again.
    source = PrometheusSource(
        recorder.url, range_read_from=1, quick_seconds=quick_seconds,
        settle_seconds=300 if settled else 10**9,
    )
    got, sent = _read_ahead_and_fetch(source, prometheus, "error-regression", recorder)
    instant, _ = _read_ahead_and_fetch(
        PrometheusSource(prometheus.url, range_read_from=INSTANT_ONLY), prometheus, "error-regression"
    )
    scenario = prometheus.scenarios["error-regression"]
    pages = [q.split("[")[0] for q in sent if q.endswith("]")]
    requests = [render(REQUESTS, scenario.matchers(v)) for v in Version]
    buckets = [render(BUILTIN_TEMPLATES["istio-latency"].buckets or "", scenario.matchers(v)) for v in Version]
    assert set(pages) == {*requests, *buckets}, pages
    assert all(pages.count(b) == 1 for b in buckets)
    assert all(pages.count(r) == 1 if settled else pages.count(r) <= 2 for r in requests), pages
    assert not any("response_code" in q for q in sent if "verdict_probe" in q)
    for have, want in zip(got, instant, strict=True):
        assert_same_arrays(have, want)

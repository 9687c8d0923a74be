"""PrometheusSource against a real Prometheus serving generated Istio traffic."""

from __future__ import annotations

import collections
import http.server
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import requests
import structlog.testing

from metrics.errors import BadData, QueryError, SourceUnavailable
from metrics.prometheus import PrometheusSource
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import HistogramSeries, MetricKind, MetricQuery, RatioSeries, Version, Window
from tests.conftest import PrometheusServer, SlowProxy
from tests.promdata import ISTIO_BUCKETS_MS, VersionData

pytestmark = pytest.mark.prometheus

ERROR_RATE = BUILTIN_TEMPLATES["istio-error-rate"]
SUCCESS_RATE = BUILTIN_TEMPLATES["istio-success-rate"]
LATENCY = BUILTIN_TEMPLATES["istio-latency"]
MINUTE = timedelta(seconds=60)


def _ratio(
    prometheus: PrometheusServer,
    name: str,
    version: Version,
    step: timedelta = MINUTE,
    query: MetricQuery = ERROR_RATE,
) -> RatioSeries | None:
    scenario = prometheus.scenarios[name]
    series = PrometheusSource(prometheus.url).fetch(
        query, version, scenario.matchers(version), scenario.window(step)
    )
    assert series is None or isinstance(series, RatioSeries)
    return series


def _histogram(prometheus: PrometheusServer, name: str, version: Version) -> HistogramSeries | None:
    scenario = prometheus.scenarios[name]
    series = PrometheusSource(prometheus.url).fetch(
        LATENCY, version, scenario.matchers(version), scenario.window()
    )
    assert series is None or isinstance(series, HistogramSeries)
    return series


def _truth(prometheus: PrometheusServer, name: str, version: Version) -> VersionData:
    return prometheus.data[name].versions[version]


# --- counts -------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [timedelta(seconds=30), MINUTE], ids=["30s", "1m"])
@pytest.mark.parametrize("name", ["healthy", "error-regression", "latency-regression"])
@pytest.mark.parametrize("version", [Version.CANARY, Version.BASELINE])
def test_ratio_counts_per_interval_match_generated_traffic(
    prometheus: PrometheusServer, name: str, version: Version, step: timedelta
) -> None:
    scenario = prometheus.scenarios[name]
    window = scenario.window(step)
    truth = _truth(prometheus, name, version)
    series = _ratio(prometheus, name, version, step)

    assert series is not None
    assert series.total.shape == (window.intervals,)
    true_total = truth.per_interval(truth.requests, window)
    true_bad = truth.per_interval(truth.errors, window)
    assert series.total.sum() == pytest.approx(true_total.sum(), rel=0.02)
    assert series.bad.sum() == pytest.approx(true_bad.sum(), rel=0.02, abs=3)
    # A label set's first scrape is invisible to increase() (no earlier sample): when a
    # version's first 503 happens inside the window, that scrape's requests are missed.
    np.testing.assert_allclose(series.total, true_total, atol=3)
    np.testing.assert_allclose(series.bad, true_bad, atol=3)


def test_on_the_scrape_grid_increase_is_exact(prometheus: PrometheusServer) -> None:
    # healthy baseline: both label sets exist before the window, every scrape is on the
    # interval bounds, so Prometheus 2.x needs no extrapolation at all.
    truth = _truth(prometheus, "healthy", Version.BASELINE)
    window = prometheus.scenarios["healthy"].window()
    assert truth.errors[truth.times <= window.start.timestamp()].sum() > 0, "precondition"
    series = _ratio(prometheus, "healthy", Version.BASELINE)

    assert series is not None
    np.testing.assert_array_equal(series.total, truth.per_interval(truth.requests, window))
    np.testing.assert_array_equal(series.bad, truth.per_interval(truth.errors, window))


def test_success_rate_counts_bad_as_total_minus_good(prometheus: PrometheusServer) -> None:
    by_bad = _ratio(prometheus, "error-regression", Version.CANARY, query=ERROR_RATE)
    by_good = _ratio(prometheus, "error-regression", Version.CANARY, query=SUCCESS_RATE)

    assert by_bad is not None and by_good is not None
    np.testing.assert_allclose(by_good.total, by_bad.total)
    np.testing.assert_allclose(by_good.bad, by_bad.bad, atol=1e-9)
    assert by_good.bad.sum() > 100  # 5 % of ~4800 requests


def test_error_regression_shows_in_the_canary_only(prometheus: PrometheusServer) -> None:
    canary = _ratio(prometheus, "error-regression", Version.CANARY)
    baseline = _ratio(prometheus, "error-regression", Version.BASELINE)

    assert canary is not None and baseline is not None
    assert canary.bad.sum() / canary.total.sum() == pytest.approx(0.05, abs=0.01)
    assert baseline.bad.sum() / baseline.total.sum() == pytest.approx(0.001, abs=0.001)


# --- histograms ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [Version.CANARY, Version.BASELINE])
def test_latency_buckets_match_generated_latencies(
    prometheus: PrometheusServer, version: Version
) -> None:
    window = prometheus.scenarios["healthy"].window()
    truth = _truth(prometheus, "healthy", version)
    series = _histogram(prometheus, "healthy", version)

    assert series is not None
    expected_bounds = [b / 1000 if math.isfinite(b) else b for b in ISTIO_BUCKETS_MS]
    np.testing.assert_allclose(series.bounds, expected_bounds)
    assert series.counts.shape == (window.intervals, len(ISTIO_BUCKETS_MS))
    assert (series.counts >= 0).all()
    true_counts = sum(truth.per_interval(b, window) for b in truth.buckets.values())
    np.testing.assert_allclose(series.counts, true_counts, atol=3)
    ratio = _ratio(prometheus, "healthy", version)
    assert ratio is not None
    np.testing.assert_allclose(series.totals, ratio.total)


def _share_over(series: HistogramSeries, seconds: float) -> float:
    over = series.counts[:, series.bounds > seconds].sum()
    return float(over / series.counts.sum())


def test_latency_regression_moves_canary_requests_to_slower_buckets(
    prometheus: PrometheusServer,
) -> None:
    canary = _histogram(prometheus, "latency-regression", Version.CANARY)
    baseline = _histogram(prometheus, "latency-regression", Version.BASELINE)

    assert canary is not None and baseline is not None
    # lognormal, sigma 0.5: P(> 250 ms) is 0.33 at a 200 ms median, 0.011 at 80 ms
    assert _share_over(canary, 0.25) == pytest.approx(0.33, abs=0.04)
    assert _share_over(baseline, 0.25) == pytest.approx(0.011, abs=0.006)


def test_histogram_without_inf_bucket_is_bad_data(prometheus: PrometheusServer) -> None:
    scenario = prometheus.scenarios["healthy"]
    query = MetricQuery(
        name="no-inf",
        kind=MetricKind.HISTOGRAM,
        buckets='istio_request_duration_milliseconds_bucket{le!="+Inf",{{ selector }}}',
        unit_seconds=0.001,
    )
    with pytest.raises(BadData, match=r"\+Inf"):
        PrometheusSource(prometheus.url).fetch(
            query, Version.CANARY, scenario.canary_matchers, scenario.window()
        )


# --- counter resets, missing and broken data ------------------------------------------------


def test_counter_reset_gives_no_negative_or_inflated_counts(prometheus: PrometheusServer) -> None:
    scenario = prometheus.scenarios["counter-reset"]
    selector = f'destination_service_name="{scenario.service(Version.CANARY)}"'
    resets = requests.get(
        f"{prometheus.url}/api/v1/query",
        params={
            "query": f"sum(resets(istio_requests_total{{{selector}}}[40m]))",
            "time": scenario.end.timestamp(),
        },
        timeout=5,
    ).json()["data"]["result"]
    assert float(resets[0]["value"][1]) >= 1, "precondition: the canary counters do reset"

    window = scenario.window()
    truth = _truth(prometheus, "counter-reset", Version.CANARY)
    true_total = truth.per_interval(truth.requests, window)
    for step in (timedelta(seconds=30), MINUTE):
        series = _ratio(prometheus, "counter-reset", Version.CANARY, step)
        assert series is not None
        assert (series.total >= 0).all() and (series.bad >= 0).all()
        assert series.total.max() <= true_total.max() + 3
    series = _ratio(prometheus, "counter-reset", Version.CANARY)
    assert series is not None
    np.testing.assert_allclose(series.total, true_total, atol=3)
    assert series.total.sum() == pytest.approx(true_total.sum(), rel=0.02)
    histogram = _histogram(prometheus, "counter-reset", Version.CANARY)
    assert histogram is not None
    assert (histogram.counts >= 0).all()
    np.testing.assert_allclose(histogram.totals, series.total)


@pytest.mark.parametrize("query", [ERROR_RATE, SUCCESS_RATE, LATENCY], ids=lambda q: q.name)
def test_version_without_series_is_no_data(
    prometheus: PrometheusServer, query: MetricQuery
) -> None:
    scenario = prometheus.scenarios["no-canary"]
    source = PrometheusSource(prometheus.url)

    canary = source.fetch(query, Version.CANARY, scenario.canary_matchers, scenario.window())
    baseline = source.fetch(query, Version.BASELINE, scenario.baseline_matchers, scenario.window())

    assert canary is None
    assert baseline is not None


def test_version_without_5xx_has_zero_bad_counts_not_no_data(
    prometheus: PrometheusServer,
) -> None:
    truth = _truth(prometheus, "low-traffic", Version.CANARY)
    assert truth.errors.sum() == 0, "precondition: the low-traffic canary never answered a 5xx"
    series = _ratio(prometheus, "low-traffic", Version.CANARY)

    assert series is not None
    assert (series.bad == 0).all()
    window = prometheus.scenarios["low-traffic"].window()
    assert series.total.sum() == truth.per_interval(truth.requests, window).sum() > 0


@pytest.mark.parametrize("query", [ERROR_RATE, LATENCY], ids=lambda q: q.name)
def test_label_injection_matches_nothing(prometheus: PrometheusServer, query: MetricQuery) -> None:
    window = prometheus.scenarios["healthy"].window()
    matchers = {"destination_service_name": 'a"} or vector(1) #'}

    assert PrometheusSource(prometheus.url).fetch(query, Version.CANARY, matchers, window) is None


def test_non_finite_points_are_missing_intervals_with_a_warning(
    prometheus: PrometheusServer,
) -> None:
    scenario = prometheus.scenarios["nan-sample"]
    window = scenario.window()
    assert scenario.nan_at is not None
    nan_interval = round((scenario.nan_at - scenario.start) / window.step)  # NaN on its end
    truth = _truth(prometheus, "nan-sample", Version.CANARY)
    with structlog.testing.capture_logs() as logs:
        series = _ratio(prometheus, "nan-sample", Version.CANARY)

    assert series is not None
    broken = [nan_interval - 1, nan_interval]
    assert (series.total[broken] == 0).all() and (series.bad[broken] == 0).all()
    expected = truth.per_interval(truth.requests, window)
    expected[broken] = 0
    np.testing.assert_allclose(series.total, expected, atol=3)
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert warnings and warnings[0]["intervals"] == broken
    assert warnings[0]["metric"] == "istio-error-rate" and warnings[0]["version"] == "canary"


def test_scrapes_off_the_interval_bounds_keep_counts_honest(prometheus: PrometheusServer) -> None:
    # Scrapes 7 s after each bound. Per-interval ranges (increase(x[1m])) would see only 45 s of
    # each minute and scale it by 4/3, inflating the apparent number of requests. Cumulative
    # ranges since the window's start see every increment: the window's total is right, and
    # no interval is scaled up (counts shift by a few seconds of traffic between neighbours).
    window = prometheus.scenarios["scrape-offset"].window()
    for version in (Version.CANARY, Version.BASELINE):
        truth = _truth(prometheus, "scrape-offset", version)
        series = _ratio(prometheus, "scrape-offset", version)
        assert series is not None
        true_total = truth.requests_between(window.start, window.end)
        assert series.total.sum() == pytest.approx(true_total, rel=0.02)
        expected = truth.per_interval(truth.requests, window)
        # the sum of squares, which an inflated count would raise by 4/3 or more, stays close
        assert (series.total**2).sum() == pytest.approx((expected**2).sum(), rel=0.08)


# --- failures -----------------------------------------------------------------------------


def test_check_passes_on_a_running_prometheus(prometheus: PrometheusServer) -> None:
    PrometheusSource(prometheus.url).check()


def test_invalid_promql_is_query_error(prometheus: PrometheusServer) -> None:
    scenario = prometheus.scenarios["healthy"]
    query = MetricQuery(
        name="broken",
        kind=MetricKind.RATIO,
        total="istio_requests_total{{{ selector }}",  # missing closing brace
        bad='istio_requests_total{response_code=~"5..",{{ selector }}}',
    )
    with pytest.raises(QueryError, match="parse error") as raised:
        PrometheusSource(prometheus.url).fetch(
            query, Version.CANARY, scenario.canary_matchers, scenario.window()
        )
    assert prometheus.url in str(raised.value)


def test_unreachable_prometheus_is_source_unavailable_quickly(
    unreachable_url: str, prometheus: PrometheusServer
) -> None:
    source = PrometheusSource(unreachable_url, timeout=2.0, retries=2)
    window = prometheus.scenarios["healthy"].window()

    started = time.monotonic()
    with pytest.raises(SourceUnavailable) as raised:
        source.fetch(ERROR_RATE, Version.CANARY, {"destination_service_name": "x"}, window)
    elapsed = time.monotonic() - started

    assert f"Prometheus at {unreachable_url} is unreachable: connection refused" in str(
        raised.value
    )
    assert elapsed < 5.0  # refused at once; retries back off 0 s then 0.4 s
    with pytest.raises(SourceUnavailable, match="connection refused"):
        source.check()


def test_unknown_host_is_source_unavailable() -> None:
    with pytest.raises(
        SourceUnavailable, match=re.escape("cannot resolve host name 'prometheus.invalid'")
    ):
        PrometheusSource("http://prometheus.invalid:9090", timeout=2.0, retries=0).check()


@pytest.mark.parametrize("retries", [0, 2])
def test_slow_prometheus_times_out_as_source_unavailable(
    slow_prometheus: SlowProxy, prometheus: PrometheusServer, retries: int
) -> None:
    slow_prometheus.delay = 4.0
    scenario = prometheus.scenarios["healthy"]
    source = PrometheusSource(slow_prometheus.url, timeout=1.0, retries=retries)

    started = time.monotonic()
    with pytest.raises(SourceUnavailable, match=r"did not answer within 1\.0 s") as raised:
        source.fetch(ERROR_RATE, Version.CANARY, scenario.canary_matchers, scenario.window())
    elapsed = time.monotonic() - started

    assert slow_prometheus.url in str(raised.value)
    # each attempt waits 1 s, backoff adds 0 s + 0.4 s; generous slack for a busy machine
    assert 1.0 <= elapsed < (retries + 1) * 1.0 + 0.4 + 5.0


def test_slow_prometheus_within_the_timeout_answers(
    slow_prometheus: SlowProxy, prometheus: PrometheusServer
) -> None:
    slow_prometheus.delay = 0.3
    scenario = prometheus.scenarios["healthy"]
    direct = _ratio(prometheus, "healthy", Version.CANARY)
    proxied = PrometheusSource(slow_prometheus.url, timeout=5.0).fetch(
        ERROR_RATE, Version.CANARY, scenario.canary_matchers, scenario.window()
    )

    assert isinstance(proxied, RatioSeries) and direct is not None
    np.testing.assert_array_equal(proxied.total, direct.total)


_COUNTING = threading.Lock()


class _FixedAnswer(http.server.BaseHTTPRequestHandler):
    status = 503
    body = b'{"status":"error","errorType":"unavailable","error":"overloaded"}'
    calls: collections.Counter[str]  # attempts per query (the source sends a few at once)
    encodings: list[str]  # the Accept-Encoding of each request

    def do_GET(self) -> None:
        self._answer(urllib.parse.urlsplit(self.path).query)

    def do_POST(self) -> None:
        self._answer(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())

    def _answer(self, form: str) -> None:
        type(self).encodings.append(self.headers.get("Accept-Encoding", ""))
        query = urllib.parse.parse_qs(form).get("query", [""])
        with _COUNTING:
            type(self).calls[query[0]] += 1
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def broken_prometheus() -> Iterator[tuple[str, type[_FixedAnswer]]]:
    """An HTTP server on a free loopback port that gives every request one fixed answer."""
    handler = type("Answer", (_FixedAnswer,), {"calls": collections.Counter(), "encodings": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("status", "body", "calls", "message"),
    [
        (503, None, 3, "kept answering with server errors"),
        (
            500,
            b'{"status":"error","errorType":"internal","error":"boom"}',
            1,
            "HTTP 500: internal: boom",
        ),
        (404, b"404 page not found", 1, "HTTP 404: 404 page not found"),
        (200, b"<html>a login page</html>", 1, "not JSON"),
        (200, b'{"status":"success","data":[]}', 1, "not the Prometheus API"),
    ],
    ids=["503-retried", "500", "404", "html", "data-not-an-object"],
)
def test_server_errors_and_foreign_answers_are_source_unavailable(
    broken_prometheus: tuple[str, type[_FixedAnswer]],
    status: int,
    body: bytes | None,
    calls: int,
    message: str,
) -> None:
    url, handler = broken_prometheus
    handler.status = status
    if body is not None:
        handler.body = body
    start = datetime(2024, 1, 1, tzinfo=UTC)
    window = Window(start=start, end=start + MINUTE * 5, step=MINUTE)

    with pytest.raises(SourceUnavailable, match=message) as raised:
        PrometheusSource(url, timeout=2.0, retries=2).fetch(
            ERROR_RATE, Version.CANARY, {"destination_service_name": "x"}, window
        )

    assert url in str(raised.value)
    assert handler.calls and set(handler.calls.values()) == {calls}, "each query tried this often"


@pytest.mark.parametrize("name", ["healthy", "error-regression", "fresh-canary"])
def test_errors_of_series_born_inside_the_window_are_all_counted(
    prometheus: PrometheusServer, name: str
) -> None:
    # Istio creates a version's 503 series at its first 5xx: increase() alone never counts that
    # first error, which would undercount the rare errors of a fresh canary.
    window = prometheus.scenarios[name].window()
    for version in (Version.CANARY, Version.BASELINE):
        truth = _truth(prometheus, name, version)
        series = _ratio(prometheus, name, version)
        assert series is not None
        # every error counted, to within half an event (increase() extrapolates a fraction)
        errors = truth.errors_between(window.start, window.end)
        assert series.bad.sum() == pytest.approx(errors, abs=0.5)
        assert series.total.sum() == pytest.approx(
            truth.requests_between(window.start, window.end), rel=1e-3
        )


def test_settled_answers_are_not_asked_again(
    prometheus: PrometheusServer, slow_prometheus: SlowProxy
) -> None:
    # A canary looks every interval on all data since its start: answers about instants long
    # past cannot change and are served from the source's cache. Behind a proxy that turns slow
    # after the first fetch, the second fetch of the same (past) window needs no request at all.
    scenario = prometheus.scenarios["healthy"]
    slow_prometheus.delay = 0.0
    source = PrometheusSource(slow_prometheus.url, timeout=1.0, retries=0)
    query = BUILTIN_TEMPLATES["istio-error-rate"]
    first = source.fetch(query, Version.CANARY, scenario.canary_matchers, scenario.window())
    slow_prometheus.delay = 5.0
    again = source.fetch(query, Version.CANARY, scenario.canary_matchers, scenario.window())
    assert first is not None and again is not None
    np.testing.assert_array_equal(first.total, again.total)
    fresh = PrometheusSource(slow_prometheus.url, timeout=1.0, retries=0)
    with pytest.raises(SourceUnavailable, match=r"did not answer within 1\.0 s"):
        fresh.fetch(query, Version.CANARY, scenario.canary_matchers, scenario.window())


def test_the_proxy_environment_is_honoured(
    prometheus: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The environment is read once per source, as requests reads it: a proxy that refuses
    # connections is used, unless NO_PROXY names the Prometheus host.
    from tests.conftest import free_port

    scenario = prometheus.scenarios["healthy"]
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "")
    through_proxy = PrometheusSource(prometheus.url, timeout=2.0, retries=0)
    with pytest.raises(SourceUnavailable):
        through_proxy.fetch(ERROR_RATE, Version.CANARY, scenario.canary_matchers, scenario.window())
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = PrometheusSource(prometheus.url, timeout=2.0, retries=0)
    series = direct.fetch(ERROR_RATE, Version.CANARY, scenario.canary_matchers, scenario.window())
    assert isinstance(series, RatioSeries) and series.total.sum() > 0


def test_answers_are_asked_uncompressed_unless_the_analysis_asks_for_gzip(
    broken_prometheus: tuple[str, type[_FixedAnswer]],
) -> None:
    from analyzer.spec import parse_analysis
    from metrics.factory import SourceSettings, open_source

    url, handler = broken_prometheus
    handler.status = 200
    handler.body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
    spec = parse_analysis(
        {"name": "x", "canary": {"a": "b"}, "baseline": {"a": "c"}, "metrics": [
            {"name": "errors", "template": "istio-error-rate", "slo": {"max": 0.01}}],
         "prometheus": {"url": url, "compress": True}}
    )
    for compress in (False, spec.prometheus.compress):
        open_source(SourceSettings.of(url, compress=compress)).check()
    assert handler.encodings == ["identity", "gzip"]

"""Scenario data for the real-Prometheus tests, written as OpenMetrics text.

A `Scenario` describes the traffic of one service under rollout: a canary and a baseline
(stable) version, each serving Poisson traffic with a per-request error probability and
lognormal latency. `generate` turns it into what an Istio sidecar would expose, scraped
every 15 s, and `write_openmetrics` writes the series of many scenarios into one file
that `promtool tsdb create-blocks-from openmetrics` turns into TSDB blocks.

Series are named and labelled exactly as Istio's destination-side telemetry names them:

* `istio_requests_total{reporter="destination",destination_service_name=...,response_code=...}`
* `istio_request_duration_milliseconds_bucket{...,le=...}` with Istio's default buckets,
  plus `_sum` and `_count`

with `destination_service_name="<scenario>-canary"` for the canary and
`"<scenario>-stable"` for the baseline. Like a real sidecar, a series (one response code of
one version) only exists from its first request on: a version that never answered a 503 has
no 503 series at all.

The generator keeps the ground truth (`ScenarioData`): requests, errors and per-bucket
latency counts per scrape, so tests can compare what Prometheus answers with what happened.
Everything is drawn from a numpy generator seeded from the scenario's `seed` and name, so the
same scenario always produces the same file.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from metrics.simulated import lognormal_bucket_probabilities
from metrics.source import Version, Window

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

SCRAPE_INTERVAL_S = 15.0
"""Seconds between two scrapes of the sidecars."""

ISTIO_BUCKETS_MS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
    30000, 60000, 300000, 600000, 1800000, 3600000, math.inf,
)  # fmt: skip
"""Istio's default `istio_request_duration_milliseconds` bucket bounds (`le`), in ms."""

OK_CODE = "200"
ERROR_CODE = "503"
CODES = (OK_CODE, ERROR_CODE)

REQUESTS_FAMILY = "istio_requests"
DURATION_FAMILY = "istio_request_duration_milliseconds"


@dataclass(frozen=True)
class Scenario:
    """Traffic of one service during a rollout.

    `start`/`end` is the analysis window (timezone-aware, on the scrape grid); series start
    `warmup` before it, so the first interval of the window already has a sample before it, and
    (by default, 65 minutes) the analysis has the hour of baseline traffic before the run that a
    real rollout has: its pre-run window.

    Regression semantics: before `regression_onset` the canary behaves like the baseline
    (baseline error probability, latency factor 1); from the onset on (or during the whole
    data span when `regression_onset` is None) it uses `canary_error_probability` and
    `canary_latency_factor`. Latency medians and sigmas are always each version's own.

    `counter_reset_at` restarts the canary's sidecar: every canary counter drops to 0 at
    the first scrape at or after that time (the restart happens just after the previous
    scrape) and keeps counting from there.

    `canary_absent` leaves the canary out entirely (no series at all).
    `scrape_offset_s` shifts every scrape off the 15 s grid by that many seconds, as real
    scrapes are; 0 keeps scrapes on the grid (and so on the window's interval bounds).
    `nan_at` writes NaN as the value of the canary's 200 counter at that scrape (a broken
    exporter); the ground truth is unaffected.
    `canary_gap` (from, to) drops the canary's scrapes in [from, to) (a broken scrape: the
    counters keep counting, Prometheus just has no samples then); `canary_stop_at` drops every
    canary scrape from then on (pods gone). The ground truth keeps the requests either way.
    """

    name: str
    start: datetime
    end: datetime
    canary_rps: float = 20.0
    baseline_rps: float = 60.0
    canary_error_probability: float = 0.0002
    baseline_error_probability: float = 0.0002
    canary_latency_median_ms: float = 80.0
    canary_latency_sigma: float = 0.5
    baseline_latency_median_ms: float = 80.0
    baseline_latency_sigma: float = 0.5
    canary_latency_factor: float = 1.0
    regression_onset: datetime | None = None
    counter_reset_at: datetime | None = None
    canary_absent: bool = False
    scrape_interval_s: float = SCRAPE_INTERVAL_S
    scrape_offset_s: float = 0.0
    warmup: timedelta = timedelta(minutes=65)
    nan_at: datetime | None = None
    canary_gap: tuple[datetime, datetime] | None = None
    canary_stop_at: datetime | None = None
    seed: int = 20240611

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("scenario times must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("scenario end must be after its start")

    def service(self, version: Version) -> str:
        """The `destination_service_name` of one version's traffic."""
        return f"{self.name}-canary" if version is Version.CANARY else f"{self.name}-stable"

    def matchers(self, version: Version) -> dict[str, str]:
        """Label matchers selecting one version's traffic (what an analysis file puts in
        `canary:` / `baseline:`)."""
        return {"destination_service_name": self.service(version)}

    @property
    def canary_matchers(self) -> dict[str, str]:
        return self.matchers(Version.CANARY)

    @property
    def baseline_matchers(self) -> dict[str, str]:
        return self.matchers(Version.BASELINE)

    def window(self, step: timedelta = timedelta(seconds=60)) -> Window:
        """The analysis window cut into intervals of `step`."""
        return Window(start=self.start, end=self.end, step=step)

    def scrape_times(self) -> FloatArray:
        """Unix times (s) of every scrape, from `start - warmup` to `end`."""
        first = (self.start - self.warmup).timestamp()
        count = int((self.end.timestamp() - first) // self.scrape_interval_s) + 1
        times = first + self.scrape_interval_s * np.arange(count, dtype=np.float64)
        return np.asarray(times + self.scrape_offset_s, dtype=np.float64)


@dataclass(frozen=True)
class VersionData:
    """Ground truth of one version: what happened in each scrape interval.

    Entry j of every array is about the interval (times[j] - scrape interval, times[j]].
    `buckets[code][j, k]` counts requests answered with `code` whose latency fell in
    Istio bucket k, i.e. in (ISTIO_BUCKETS_MS[k-1], ISTIO_BUCKETS_MS[k]].
    """

    times: FloatArray
    requests: IntArray
    errors: IntArray
    buckets: dict[str, IntArray] = field(repr=False)
    latency_sum_ms: dict[str, FloatArray] = field(repr=False)

    def _mask(self, start: datetime, end: datetime) -> npt.NDArray[np.bool_]:
        return np.asarray(
            (self.times > start.timestamp()) & (self.times <= end.timestamp()), dtype=np.bool_
        )

    def requests_between(self, start: datetime, end: datetime) -> int:
        """Requests in scrape intervals ending in (start, end]."""
        return int(self.requests[self._mask(start, end)].sum())

    def errors_between(self, start: datetime, end: datetime) -> int:
        """5xx answers in scrape intervals ending in (start, end]."""
        return int(self.errors[self._mask(start, end)].sum())

    def bucket_counts_between(self, start: datetime, end: datetime) -> IntArray:
        """Per-bucket request counts (all codes) in scrape intervals ending in (start, end]."""
        mask = self._mask(start, end)
        return np.asarray(sum(b[mask].sum(axis=0) for b in self.buckets.values()), dtype=np.int64)

    def per_interval(self, values: IntArray, window: Window) -> FloatArray:
        """Sum `values` (one per scrape, or one row per scrape) into the window's intervals."""
        out = np.zeros((window.intervals, *values.shape[1:]), dtype=np.float64)
        offset = (self.times - window.start.timestamp()) / window.step.total_seconds()
        index = np.ceil(offset - 1e-9).astype(np.int64) - 1
        inside = (index >= 0) & (index < window.intervals)
        np.add.at(out, index[inside], values[inside])
        return out


@dataclass(frozen=True)
class ScenarioData:
    """Ground truth of a scenario: one `VersionData` per version present."""

    scenario: Scenario
    versions: dict[Version, VersionData]

    @property
    def canary(self) -> VersionData:
        return self.versions[Version.CANARY]

    @property
    def baseline(self) -> VersionData:
        return self.versions[Version.BASELINE]


def _lognormal_bucket_probabilities(median_ms: float, sigma: float) -> FloatArray:
    """Probability that a lognormal latency falls in each Istio bucket (the simulated source's law)."""
    return lognormal_bucket_probabilities(ISTIO_BUCKETS_MS, median_ms, sigma)


def _generate_version(
    scenario: Scenario, version: Version, rng: np.random.Generator, times: FloatArray
) -> VersionData:
    canary = version is Version.CANARY
    rps = scenario.canary_rps if canary else scenario.baseline_rps
    median = scenario.canary_latency_median_ms if canary else scenario.baseline_latency_median_ms
    sigma = scenario.canary_latency_sigma if canary else scenario.baseline_latency_sigma

    regressed = np.zeros(times.shape, dtype=np.bool_)
    if canary:
        onset = scenario.regression_onset
        regressed[:] = True if onset is None else times > onset.timestamp()
    error_probability = np.where(
        regressed, scenario.canary_error_probability, scenario.baseline_error_probability
    )
    latency_factor = np.where(regressed, scenario.canary_latency_factor, 1.0)

    requests = rng.poisson(rps * scenario.scrape_interval_s, size=times.shape).astype(np.int64)
    errors = rng.binomial(requests, error_probability).astype(np.int64)
    per_code = {OK_CODE: requests - errors, ERROR_CODE: errors}

    buckets: dict[str, IntArray] = {}
    latency_sum: dict[str, FloatArray] = {}
    for code, counts in per_code.items():
        rows = np.zeros((times.size, len(ISTIO_BUCKETS_MS)), dtype=np.int64)
        for factor in np.unique(latency_factor):
            rows_with_factor = latency_factor == factor
            probabilities = _lognormal_bucket_probabilities(median * float(factor), sigma)
            rows[rows_with_factor] = rng.multinomial(counts[rows_with_factor], probabilities)
        buckets[code] = rows
        # `_sum` is not used by Verdict: its expectation is enough.
        mean_ms = median * latency_factor * math.exp(sigma**2 / 2.0)
        latency_sum[code] = np.asarray(counts * mean_ms, dtype=np.float64)

    return VersionData(
        times=times,
        requests=requests,
        errors=errors,
        buckets=buckets,
        latency_sum_ms=latency_sum,
    )


def generate(scenario: Scenario) -> ScenarioData:
    """Draw the scenario's traffic (deterministic for a given scenario)."""
    rng = np.random.default_rng([scenario.seed, zlib.crc32(scenario.name.encode())])
    times = scenario.scrape_times()
    versions = [Version.BASELINE] if scenario.canary_absent else [Version.BASELINE, Version.CANARY]
    return ScenarioData(
        scenario=scenario,
        versions={v: _generate_version(scenario, v, rng, times) for v in versions},
    )


# --- OpenMetrics -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Series:
    """The exposed counters of one (version, response code) label set."""

    labels: str
    times: FloatArray
    requests: FloatArray  # cumulative, as exposed (NaN where the exporter broke)
    buckets: FloatArray  # cumulative per `le`, shape (scrapes, buckets)
    latency_sum: FloatArray


def _cumulative_since_restart(increments: FloatArray, restart: int | None) -> FloatArray:
    """Counter values: running sums of per-scrape increments, from 0 again at `restart`."""
    values = np.cumsum(increments, axis=0)
    if restart is not None and 0 < restart < values.shape[0]:
        values[restart:] -= values[restart - 1]
    return np.asarray(values, dtype=np.float64)


def _labels(scenario: Scenario, version: Version, code: str) -> str:
    service = scenario.service(version)
    workload = f"{scenario.name}-{'canary' if version is Version.CANARY else 'stable'}"
    return (
        f'reporter="destination",source_workload="{scenario.name}-client",'
        f'destination_workload="{workload}",destination_service_name="{service}",'
        f'destination_service_namespace="default",request_protocol="http",'
        f'response_code="{code}",response_flags="-"'
    )


def _scraped(times: FloatArray, scenario: Scenario) -> npt.NDArray[np.bool_]:
    """Which of the canary's scrapes reached Prometheus (see `canary_gap`, `canary_stop_at`)."""
    scraped = np.ones(times.shape, dtype=np.bool_)
    if scenario.canary_gap is not None:
        gap_from, gap_to = scenario.canary_gap
        scraped &= (times < gap_from.timestamp()) | (times >= gap_to.timestamp())
    if scenario.canary_stop_at is not None:
        scraped &= times < scenario.canary_stop_at.timestamp()
    return scraped


def _series(data: ScenarioData) -> Iterator[_Series]:
    scenario = data.scenario
    for version, truth in data.versions.items():
        restart: int | None = None
        if version is Version.CANARY and scenario.counter_reset_at is not None:
            restart = int(np.searchsorted(truth.times, scenario.counter_reset_at.timestamp()))
        nan_index: int | None = None
        if version is Version.CANARY and scenario.nan_at is not None:
            nan_index = int(np.searchsorted(truth.times, scenario.nan_at.timestamp()))
        for code in CODES:
            increments = truth.buckets[code]
            count = increments.sum(axis=1).astype(np.float64)
            requests = _cumulative_since_restart(count, restart)
            buckets = np.cumsum(
                _cumulative_since_restart(increments.astype(np.float64), restart), axis=1
            )
            latency_sum = _cumulative_since_restart(truth.latency_sum_ms[code], restart)
            # A sidecar creates a label set on its first request (and again after a restart).
            exists = requests > 0
            if restart is not None:
                exists[:restart] = np.cumsum(exists[:restart]) > 0
                exists[restart:] = np.cumsum(exists[restart:]) > 0
            else:
                exists = np.cumsum(exists) > 0
            if version is Version.CANARY:
                exists &= _scraped(truth.times, scenario)
            if code == OK_CODE and nan_index is not None and nan_index < requests.size:
                requests[nan_index] = math.nan
            yield _Series(
                labels=_labels(scenario, version, code),
                times=truth.times[exists],
                requests=requests[exists],
                buckets=buckets[exists],
                latency_sum=latency_sum[exists],
            )


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


def write_openmetrics(datasets: Iterable[ScenarioData], out: TextIO) -> int:
    """Write the series of every dataset as one OpenMetrics exposition; return the sample count.

    promtool wants each metric family in one block, and each series' samples in ascending time
    order; a histogram's samples of one timestamp (buckets, count, sum) are kept together.
    """
    all_series = [s for data in datasets for s in _series(data)]
    samples = 0
    out.write(f"# TYPE {REQUESTS_FAMILY} counter\n")
    out.write(f"# HELP {REQUESTS_FAMILY} Requests handled by the destination sidecar.\n")
    for s in all_series:
        for t, value in zip(s.times, s.requests, strict=True):
            out.write(f"{REQUESTS_FAMILY}_total{{{s.labels}}} {_number(value)} {t:.3f}\n")
        samples += s.times.size
    out.write(f"# TYPE {DURATION_FAMILY} histogram\n")
    out.write(f"# HELP {DURATION_FAMILY} Request duration seen by the destination sidecar.\n")
    out.write(f"# UNIT {DURATION_FAMILY} milliseconds\n")
    les = [_le(b) for b in ISTIO_BUCKETS_MS]
    for s in all_series:
        lines: list[str] = []
        for j, t in enumerate(s.times):
            stamp = f"{t:.3f}"
            for le, value in zip(les, s.buckets[j], strict=True):
                lines.append(
                    f'{DURATION_FAMILY}_bucket{{{s.labels},le="{le}"}} {_number(value)} {stamp}\n'
                )
            lines.append(
                f"{DURATION_FAMILY}_count{{{s.labels}}} {_number(s.buckets[j, -1])} {stamp}\n"
            )
            lines.append(
                f"{DURATION_FAMILY}_sum{{{s.labels}}} {_number(s.latency_sum[j])} {stamp}\n"
            )
        out.writelines(lines)
        samples += s.times.size * (len(les) + 2)
    out.write("# EOF\n")
    return samples


def write_openmetrics_file(datasets: Sequence[ScenarioData], path: Path) -> int:
    """`write_openmetrics` into a file; return the sample count."""
    with path.open("w", encoding="utf-8") as out:
        return write_openmetrics(datasets, out)


# --- The scenarios the tests share ---------------------------------------------------------


def default_scenarios(now: datetime) -> dict[str, Scenario]:
    """The shared scenarios, all over the same 40-minute window ending 30 minutes before `now`
    (aligned to the minute).

    * `healthy`: canary 20 rps, baseline 60 rps, 0.02 % errors, latency median 80 ms sigma 0.5;
    * `error-regression`: as healthy, canary errors 5 %;
    * `latency-regression`: as healthy, canary latency x2.5;
    * `low-traffic`: as healthy, canary 0.02 rps (a few dozen requests in the window);
    * `no-canary`: as healthy, the canary has no series at all;
    * `counter-reset`: as healthy, the canary's counters restart from 0 mid-window;
    * `scrape-offset`: as healthy, scrapes 7 s off the interval bounds (Prometheus extrapolates);
    * `nan-sample`: as healthy, the canary's 200 counter reads NaN once, 10 minutes in;
    * `fresh-canary`: as healthy with 0.05 % errors, but every series starts with the window
      (pods that just started): each version's 503 series is born inside the window;
    * `missing-scrapes`: as error-regression, but the canary's scrapes are missing for
      2.5 minutes from 12 minutes in (gaps, then the counters carry on);
    * `canary-stops`: as healthy, but the canary's series stop 25 minutes in (pods gone): the
      last 15 minutes have baseline traffic and no canary samples at all.
    * `young-busy`: a busy service (4,000 requests a second, the canary at 5 %) whose stable
      version started with the rollout: no history before the run.
    * `shared-incident`: as healthy, but both versions fail 0.8 % of requests all along (a shared
      dependency in trouble): beyond the 0.5 % SLO, under the 1 % rollback trigger.
    """
    end = now.replace(second=0, microsecond=0) - timedelta(minutes=30)
    start = end - timedelta(minutes=40)
    middle = start + (end - start) / 2
    scenarios = [
        Scenario("healthy", start, end),
        Scenario("error-regression", start, end, canary_error_probability=0.05),
        Scenario("latency-regression", start, end, canary_latency_factor=2.5),
        Scenario("low-traffic", start, end, canary_rps=0.02),
        Scenario("no-canary", start, end, canary_absent=True),
        Scenario("counter-reset", start, end, counter_reset_at=middle),
        Scenario("scrape-offset", start, end, scrape_offset_s=7.0),
        Scenario("nan-sample", start, end, nan_at=start + timedelta(minutes=10)),
        Scenario(
            "fresh-canary",
            start,
            end,
            warmup=timedelta(0),
            canary_error_probability=0.0005,
            baseline_error_probability=0.0005,
        ),
        Scenario(
            "missing-scrapes",
            start,
            end,
            canary_error_probability=0.05,
            canary_gap=(start + timedelta(minutes=12), start + timedelta(minutes=14, seconds=30)),
        ),
        Scenario("canary-stops", start, end, canary_stop_at=start + timedelta(minutes=25)),
        Scenario(
            "young-busy",
            start,
            end,
            canary_rps=200.0,
            baseline_rps=3800.0,
            warmup=timedelta(0),
        ),
        Scenario(
            "shared-incident",
            start,
            end,
            canary_error_probability=0.008,
            baseline_error_probability=0.008,
        ),
    ]
    return {s.name: s for s in scenarios}

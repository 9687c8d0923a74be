"""Frozen canary data: no new canary requests for a while when the canary should get traffic.

When a canary's pods are gone or its scrape breaks, its counters stop growing and the counts
since the start of the window freeze: judged as they are, an earlier healthy stretch could pass
a canary nobody is watching any more. `quiet_canary` finds that case from the per-interval
counts of both versions: the canary got no request in more than `MAX_QUIET_INTERVALS` intervals
in a row up to the look, while the baseline kept getting requests and the canary's share of
traffic before the silence says it should have had some (at least `EXPECTED_REQUESTS` expected:
a Poisson count of 0 then has probability under 5e-5). A canary with so little traffic that a
silence is ordinary (a few requests an hour) is not called frozen.

Every way in judges per-interval counts: `verdict analyze` its window, and a run (the web
provider, the controller, the standalone strategies) the whole intervals since its start at each
look (`analyzer.runs.model.look_window`), so this one rule finds a frozen canary everywhere. A
frozen canary's metric is "no data" unless it failed (`analyzer.analysis`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from metrics.source import FloatArray, RatioSeries, Series

MAX_QUIET_INTERVALS = 2
"""More intervals than this without a canary request, while it should get some, is frozen."""

EXPECTED_REQUESTS = 10.0
"""Canary requests the quiet stretch should have held, at its earlier share of traffic."""


@dataclass(frozen=True)
class QuietCanary:
    """The canary got no request in the `intervals` intervals up to the look, where about
    `expected` were due (its earlier share of the `baseline_requests` of that stretch)."""

    intervals: int
    expected: float
    baseline_requests: float

    def reason(self, metric: str) -> str:
        return (
            f"{metric}: no canary request in the last {self.intervals} intervals while the baseline "
            f"got {self.baseline_requests:.0f} (about {self.expected:.0f} canary requests were due): "
            "the canary's series stopped (pods gone or scrape broken); frozen counts are no data, "
            "never a pass"
        )


def _totals(series: Series) -> FloatArray:
    if isinstance(series, RatioSeries):
        return series.total
    return series.totals


def quiet_canary(canary: Series | None, baseline: Series | None, look: int) -> QuietCanary | None:
    """The canary's silence up to `look` (1-based interval count), or None if it is not frozen."""
    if canary is None or baseline is None:
        return None
    c = _totals(canary)[:look]
    b = _totals(baseline)[:look]
    active = np.flatnonzero(c > 0)
    if active.size == 0:
        return None  # never any request: that is "no data" already
    quiet = int(look - 1 - active[-1])
    if quiet <= MAX_QUIET_INTERVALS:
        return None
    before_c = float(c[: look - quiet].sum())
    before_b = float(b[: look - quiet].sum())
    during_b = float(b[look - quiet :].sum())
    if before_b <= 0 or during_b <= 0:
        return None  # no baseline traffic to compare with: nobody is sending requests
    expected = during_b * before_c / before_b
    if expected < EXPECTED_REQUESTS:
        return None
    return QuietCanary(intervals=quiet, expected=expected, baseline_requests=during_b)

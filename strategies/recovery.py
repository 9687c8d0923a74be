"""After a rollback: does the old version serve again?

Every way that acts checks it once its write back to stable has landed (fail-safe rule I2 says
the write lands; this says it helped):

* the old version's pods are Ready (`pods`), and its route or selector is in place (`route`),
  as the strategy read them back;
* one more look, an `interval` after the rollback: each ratio metric of the analysis (error
  rate, success rate: their bad fraction) for the **baseline** (the old version) over that
  interval is back at its pre-run level: at most `before × (1 + tolerance) + margin`, with the
  metric's own `compare` tolerance and margin (default 0.5 and 0.001), where `before` is the
  baseline over the pre-run window (`preRunWindow`, else as long as the run before its start).
  Without pre-run traffic the metric's SLO bound is the level; without either, or without a
  request since the rollback, it cannot be shown back, and is not.

The result, `RollbackCheck`, is "rollback verified" when every part holds, else "rollback did
not recover" with the parts that did not (a page). `back_at_level` is pure; `rates_back` reads
the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from analyzer.plan import AnalysisPlan, MetricPlan
from metrics.source import MetricKind, MetricSource, RatioSeries, Version, Window

DEFAULT_TOLERANCE = 0.5
DEFAULT_MARGIN = 0.001
VERIFIED = "rollback-verified"
NOT_RECOVERED = "rollback-not-recovered"
"""The outcomes of the decisions that report the check (`analyzer.notify.OUTCOMES`)."""


@dataclass(frozen=True)
class Part:
    """One part of the check: what was looked at, whether it holds, and what was seen."""

    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class RollbackCheck:
    parts: tuple[Part, ...]
    time: datetime

    @property
    def verified(self) -> bool:
        return bool(self.parts) and all(p.ok for p in self.parts)

    @property
    def outcome(self) -> str:
        return VERIFIED if self.verified else NOT_RECOVERED

    def text(self) -> str:
        head = "rollback verified" if self.verified else "rollback did not recover"
        shown = self.parts if self.verified else tuple(p for p in self.parts if not p.ok)
        return f"{head}: " + "; ".join(f"{p.name}: {p.detail}" for p in shown)

    def as_json(self) -> dict[str, Any]:
        return {
            "verified": self.verified,
            "time": self.time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "checks": [p.as_json() for p in self.parts],
        }


def back_at_level(
    name: str,
    before: tuple[float, float] | None,
    after: tuple[float, float] | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    margin: float = DEFAULT_MARGIN,
    slo: float | None = None,
) -> Part:
    """Whether the old version's bad fraction since the rollback (`after`: bad, total requests)
    is back at its level before the run (`before`), or under `slo` when there is no `before`."""
    if after is None or after[1] <= 0:
        return Part(name, False, "no request to the old version since the rollback")
    rate = after[0] / after[1]
    if before is not None and before[1] > 0:
        level = before[0] / before[1]
        bound = level * (1 + tolerance) + margin
        source = f"pre-run level {_pct(level)}"
    elif slo is not None:
        bound = slo
        source = "no pre-run traffic; SLO"
    else:
        return Part(name, False, f"{_pct(rate)} now, and no pre-run level or SLO to hold it to")
    ok = rate <= bound
    word = "back at" if ok else "above"
    return Part(
        name,
        ok,
        f"{_pct(rate)} over {after[1]:.0f} requests, {word} its {source} (at most {_pct(bound)})",
    )


def rates_back(
    plan: AnalysisPlan,
    source: MetricSource,
    params: dict[str, str],
    *,
    before: Window,
    after: Window,
) -> list[Part]:
    """`back_at_level` for every ratio metric of `plan`, the baseline (old version) read over
    `before` and `after`. Raises what the source raises."""
    _, baseline = plan.matchers(params)
    parts = []
    for metric in plan.metrics:
        if metric.kind is not MetricKind.RATIO:
            continue
        tolerance, margin = _bounds(metric)
        parts.append(
            back_at_level(
                f"{metric.name} of the old version",
                _counts(source.fetch(metric.query, Version.BASELINE, baseline, before)),
                _counts(source.fetch(metric.query, Version.BASELINE, baseline, after)),
                tolerance=tolerance,
                margin=margin,
                slo=metric.max_bad_rate,
            )
        )
    return parts


def rates_since(
    plan: AnalysisPlan,
    source: MetricSource,
    params: dict[str, str],
    *,
    started: datetime,
    restored: datetime,
    now: datetime,
) -> list[Part]:
    """`rates_back` for a run that started at `started` and was rolled back at `restored`:
    before = the pre-run window (`preRunWindow`, else as long as the run, before its start),
    after = from `restored` to `now`. A source that fails makes one failing part."""
    if now <= restored:
        return [Part("metrics", False, "no time has passed since the rollback")]
    ran = max(restored - started, now - restored)
    length = timedelta(seconds=plan.pre_run_window) if plan.pre_run_window > 0 else ran
    before = Window(start=started - length, end=started, step=length)
    after = Window(start=restored, end=now, step=now - restored)
    try:
        return rates_back(plan, source, params, before=before, after=after)
    except Exception as error:
        return [Part("metrics", False, f"the look after the rollback failed: {error}")]


def check_of(parts: Sequence[Part], now: datetime) -> RollbackCheck:
    return RollbackCheck(parts=tuple(parts), time=now)


def _bounds(metric: MetricPlan) -> tuple[float, float]:
    if metric.compare is None:
        return DEFAULT_TOLERANCE, DEFAULT_MARGIN
    return metric.compare.tolerance, metric.compare.margin


def _counts(series: object) -> tuple[float, float] | None:
    if not isinstance(series, RatioSeries):
        return None
    total = float(series.total[series.total == series.total].sum())
    bad = float(series.bad[series.bad == series.bad].sum())
    return bad, total


def _pct(value: float) -> str:
    return f"{value * 100:.3g} %"

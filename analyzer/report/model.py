"""A run's report as data, read from the run store: the run, its stored events, nothing else.

The figures come from the looks recorded when the run was judged (each metric's canary and
baseline values and its checks' bounds as written then), never from judging again, so a report
shows what was decided, whatever later versions of the checks would say. Bounds are read by
their names in the checks' `statistic` documents: confidence bounds (`lower`/`upper`,
`canaryLower`/`canaryUpper`, ...), thresholds (`max`, `failAbove`, `failAboveRatio` x
`baselineRate`, ...) and sequential evidence (`eFail` against `failAt`, `ePass` against `passAt`);
a name a report does not know is left out of the plot (the check's reason still shows).

Stored figures are read defensively: a number that is not finite is "not recorded" (an e-value
that overflowed to infinity is kept as the largest float, its cap), and look, step and weight
numbers that are not whole finite numbers are left out, so any stored run gives a report.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from analyzer.notify.events import FOLLOW_UPS, parse_time
from analyzer.report.manual import ManualAction, manual_actions
from analyzer.runs import Run

# statistic keys: (lower, upper) → label of a band; single keys → label of a limit line
_BANDS = {
    ("lower", "upper"): "canary bound",
    ("canaryLower", "canaryUpper"): "canary bound",
    ("baselineLower", "baselineUpper"): "baseline bound",
    ("slowerShareLower", "slowerShareUpper"): "canary share slower than the threshold",
}
_LIMITS = {
    "max": "SLO max",
    "min": "SLO min",
    "failAbove": "fails above",
    "passAtOrBelow": "passes at or below",
    "maxSlowerShare": "SLO: allowed share slower",
}
_SHARE_KEYS = {"slowerShareLower", "slowerShareUpper", "maxSlowerShare"}
# a share measured at the look (no bound): a line on the share axis
_SHARE_VALUES = {"slowerShare": "canary share slower than the threshold"}
# ratio limits relative to the baseline rate: key -> label (the limit is ratio x baselineRate)
_RATIO_LIMITS = {"failAboveRatio": "fails above", "passBelowRatio": "passes below"}
# sequential evidence: e-value key, its threshold key, label
_EVIDENCE = (
    ("eFail", "failAt", "evidence the canary is worse", "fails at"),
    ("ePass", "passAt", "evidence the canary is no worse", "passes at"),
)


@dataclass(frozen=True)
class Band:
    label: str
    lower: float
    upper: float


@dataclass(frozen=True)
class MetricPoint:
    """One metric at one look, as recorded."""

    look: int
    time: datetime
    verdict: str
    canary: float | None
    baseline: float | None
    bands: tuple[Band, ...] = ()
    limits: Mapping[str, float] = field(default_factory=dict)
    """Lines in the value's unit (an SLO, the comparison's fail and pass thresholds)."""
    share_bands: tuple[Band, ...] = ()
    share_limits: Mapping[str, float] = field(default_factory=dict)
    """Latency metrics: bounds on the share of canary requests slower than the threshold."""
    share_values: Mapping[str, float] = field(default_factory=dict)
    evidence: Mapping[str, float] = field(default_factory=dict)
    """Sequential checks that report e-values: the evidence at this look, by label."""
    evidence_limits: Mapping[str, float] = field(default_factory=dict)
    """The e-values at which the evidence decides: `fails at (check)`, `passes at (check)`."""


@dataclass(frozen=True)
class MetricHistory:
    name: str
    kind: str
    unit: str
    """`rate` (a fraction) or `seconds`."""
    critical: bool
    verdict: str
    reason: str
    final: Mapping[str, Any]
    """The metric's document at the last look (`analyzer.render.metric_json`)."""
    points: tuple[MetricPoint, ...]
    failed_at_look: int | None = None


@dataclass(frozen=True)
class StepRecord:
    step: int | None
    """None: a web-provider run, one segment from its start to its decision."""
    weight: int | None
    started: datetime | None
    ended: datetime | None
    verdict: str | None
    last_look: int | None


@dataclass(frozen=True)
class LookRecord:
    look: int
    time: datetime
    step: int | None
    weight: int | None
    verdict: str
    score: float | None


@dataclass(frozen=True)
class Decision:
    outcome: str
    reason: str
    time: datetime
    look: int | None
    step: int | None
    weight: int | None
    verdict: str | None


@dataclass(frozen=True)
class RunReport:
    run: Run
    way: str
    rollout: str
    verdict: str | None
    reason: str
    decision: Decision | None
    decisions: tuple[Decision, ...]
    steps: tuple[StepRecord, ...]
    looks: tuple[LookRecord, ...]
    metrics: tuple[MetricHistory, ...]
    manual: tuple[ManualAction, ...] = ()
    """People's actions (promote, abort, pause, resume), in order."""

    @property
    def deciding_look(self) -> int | None:
        """The look at which the decision was taken (None: no decision yet)."""
        return self.decision.look if self.decision is not None else None

    @property
    def look_count(self) -> int:
        """How many looks the run had: the run's own count, or more if its events record more
        (a run whose final state was not written still shows the looks it had)."""
        recorded = max((lk.look for lk in self.looks), default=0)
        return max(self.run.looks, len(self.looks), recorded)

    @property
    def headline(self) -> str:
        """What happened in one word: the decision's outcome, else the last verdict."""
        if self.decision is not None:
            return self.decision.outcome
        return self.verdict or "no looks yet"


def build_report(run: Run, events: Sequence[Mapping[str, Any]]) -> RunReport:
    """The report of `run` from its stored events (`RunStore.events`)."""
    looks = [e for e in events if e.get("kind") == "look"]
    decisions = tuple(_decision(e) for e in events if e.get("kind") == "decision")
    way = next((str(e["run"].get("way")) for e in events if "run" in e), "web")
    metrics = _metrics(looks) if looks else _metrics_from_answer(run)
    # the decision the run ended on (a rollback's check reports on it, it does not replace it)
    deciding = [d for d in decisions if d.outcome not in FOLLOW_UPS]
    decision = (deciding or list(decisions))[-1] if decisions else None
    last_look = looks[-1] if looks else None
    verdict = (decision.verdict if decision else None) or (
        str(last_look.get("verdict")) if last_look else run.verdict
    )
    reason = (decision.reason if decision else "") or (
        str(last_look.get("reason") or "") if last_look else run.reason
    )
    return RunReport(
        run=run,
        way=way,
        rollout=f"{run.key.namespace}/{run.key.rollout}",
        verdict=verdict,
        reason=reason or run.reason,
        decision=decision,
        decisions=decisions,
        steps=_steps(events),
        looks=tuple(
            LookRecord(
                look=_whole(e.get("look")) or i + 1,
                time=parse_time(e["time"]),
                step=_whole(e.get("step")),
                weight=_whole(e.get("weight")),
                verdict=str(e.get("verdict")),
                score=_number(e.get("score")),
            )
            for i, e in enumerate(looks)
        ),
        metrics=metrics,
        manual=manual_actions(events),
    )


def _decision(event: Mapping[str, Any]) -> Decision:
    return Decision(
        outcome=str(event.get("outcome")),
        reason=str(event.get("reason") or ""),
        time=parse_time(event["time"]),
        look=_whole(event.get("look")),
        step=_whole(event.get("step")),
        weight=_whole(event.get("weight")),
        verdict=None if event.get("verdict") is None else str(event.get("verdict")),
    )


def _steps(events: Sequence[Mapping[str, Any]]) -> tuple[StepRecord, ...]:
    steps: dict[int | None, StepRecord] = {}
    for e in events:
        kind, step = e.get("kind"), _whole(e.get("step"))
        if kind == "started":
            steps[step] = StepRecord(
                step, _whole(e.get("weight")), parse_time(e["time"]), None, None, None
            )
        elif kind == "ended":
            started = steps.get(step)
            steps[step] = StepRecord(
                step,
                _whole(e.get("weight")),
                started.started if started else _maybe_time(e.get("started")),
                parse_time(e["time"]),
                None if e.get("verdict") is None else str(e.get("verdict")),
                _whole(e.get("look")),
            )
    return tuple(steps.values())


def _metrics(looks: Sequence[Mapping[str, Any]]) -> tuple[MetricHistory, ...]:
    order: list[str] = []
    points: dict[str, list[MetricPoint]] = {}
    last: dict[str, Mapping[str, Any]] = {}
    for i, event in enumerate(looks):
        time = parse_time(event["time"])
        look = _whole(event.get("look")) or i + 1
        for doc in event.get("metrics") or ():
            name = str(doc.get("name"))
            if name not in points:
                order.append(name)
                points[name] = []
            points[name].append(_point(doc, look, time))
            last[name] = doc
    return tuple(_history(name, last[name], points[name]) for name in order)


def _metrics_from_answer(run: Run) -> tuple[MetricHistory, ...]:
    """A run stored without events (before they were kept): its last answer, one point."""
    if not run.answer:
        return ()
    time = run.updated_at
    return tuple(
        _history(str(doc.get("name")), doc, [_point(doc, run.looks, time)])
        for doc in run.answer.get("metrics", [])
    )


def _history(name: str, doc: Mapping[str, Any], points: list[MetricPoint]) -> MetricHistory:
    return MetricHistory(
        name=name,
        kind=str(doc.get("kind") or ("histogram" if _unit(doc) == "seconds" else "ratio")),
        unit=_unit(doc),
        critical=bool(doc.get("critical")),
        verdict=str(doc.get("verdict")),
        reason=str(doc.get("reason") or ""),
        final=doc,
        points=tuple(points),
        failed_at_look=_whole(doc.get("failedAtLook")),
    )


def _unit(doc: Mapping[str, Any]) -> str:
    sides = (doc.get("canary") or {}, doc.get("baseline") or {})
    return "seconds" if any("seconds" in s for s in sides) else "rate"


def _point(doc: Mapping[str, Any], look: int, time: datetime) -> MetricPoint:
    unit = _unit(doc)
    key = "seconds" if unit == "seconds" else "rate"
    canary = _number((doc.get("canary") or {}).get(key))
    baseline = _number((doc.get("baseline") or {}).get(key))
    bands: list[Band] = []
    limits: dict[str, float] = {}
    share_bands: list[Band] = []
    share_limits: dict[str, float] = {}
    share_values: dict[str, float] = {}
    evidence: dict[str, float] = {}
    evidence_limits: dict[str, float] = {}
    for check in doc.get("checks") or ():
        stat = check.get("statistic") or {}
        name = str(check.get("check", "check"))
        flip = _complement(stat, canary) if unit == "rate" else False
        for (lo_key, hi_key), label in _BANDS.items():
            lo, hi = _number(stat.get(lo_key)), _number(stat.get(hi_key))
            if lo is None or hi is None:
                continue
            band = Band(f"{label} ({name})", *((1 - hi, 1 - lo) if flip else (lo, hi)))
            if unit == "seconds" or lo_key in _SHARE_KEYS:
                share_bands.append(band)
            else:
                bands.append(band)
        for key_name, label in _LIMITS.items():
            value = _number(stat.get(key_name))
            if value is None:
                continue
            if unit == "seconds" or key_name in _SHARE_KEYS:
                share_limits[f"{label} ({name})"] = value
            elif flip:
                flipped = {"SLO max": "SLO min", "SLO min": "SLO max"}.get(label, label)
                limits[f"{flipped} ({name})"] = 1 - value
            else:
                limits[f"{label} ({name})"] = value
        threshold = _number(stat.get("threshold"))
        if unit == "seconds" and threshold is not None:
            limits[f"latency threshold ({name})"] = threshold
        for key_name, label in _SHARE_VALUES.items():
            value = _number(stat.get(key_name))
            if value is not None:
                share_values[f"{label} ({name})"] = value
        base_rate = _number(stat.get("baselineRate"))
        for key_name, label in _RATIO_LIMITS.items():
            ratio = _number(stat.get(key_name))
            limit = None if ratio is None or base_rate is None else _number(ratio * base_rate)
            if unit == "rate" and limit is not None:
                limits[f"{label} ({name})"] = limit
        for e_key, at_key, label, at_label in _EVIDENCE:
            e_value, at = _e_value(stat.get(e_key)), _e_value(stat.get(at_key))
            if e_value is not None and at is not None:
                evidence[f"{label} ({name})"] = e_value
                evidence_limits[f"{at_label} ({name})"] = at
    return MetricPoint(
        look=look,
        time=time,
        verdict=str(doc.get("verdict")),
        canary=canary,
        baseline=baseline,
        bands=tuple(bands),
        limits=limits,
        share_bands=tuple(share_bands),
        share_limits=share_limits,
        share_values=share_values,
        evidence=evidence,
        evidence_limits=evidence_limits,
    )


def _complement(stat: Mapping[str, Any], canary: float | None) -> bool:
    """A check on the failure rate of a success-rate metric: its bounds are 1 - the shown rate."""
    rate = _number(stat.get("rate"))
    if rate is None or canary is None:
        return False
    return abs(rate - canary) > 1e-6 and abs(rate - (1 - canary)) <= 1e-6


def _number(value: Any) -> float | None:
    """A finite float, or None (not a number, not finite, or an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _e_value(value: Any) -> float | None:
    """An e-value as recorded, capped at the largest float (an overflow to infinity is the
    cap); NaN, negative or non-numbers are not recorded."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    if value < 0:
        return None
    try:
        return min(float(value), sys.float_info.max)
    except OverflowError:  # an int beyond the largest float
        return sys.float_info.max


def _whole(value: Any) -> int | None:
    """A look, step or weight number: an int, or a float that is a whole finite number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _maybe_time(value: Any) -> datetime | None:
    return parse_time(value) if isinstance(value, str) else None

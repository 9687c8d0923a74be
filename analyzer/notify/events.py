"""Events of a run: a step (or a web-provider run) starting and ending, a look, a decision.

Every way in (the demo, the web provider, the canary loop, the controller) describes what a run
does with these events; the run store keeps them in order (reports are made of them) and the
notifiers post them (Grafana annotations, webhooks, Slack). Plain data, JSON both ways.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class EventKind(enum.StrEnum):
    STARTED = "started"
    """A step began (or, for a web-provider run, the run): a region opens."""
    ENDED = "ended"
    """That step (or run) ended: the region closes."""
    LOOK = "look"
    """One look: the analysis of all data so far, with every metric's figures."""
    DECISION = "decision"
    """What was done, and why: promoted, aborted, paused, rolled back, switched back, an abort
    that did not land, a run interrupted (Verdict stopped mid-run), or the web provider's verdict
    (pass, fail)."""


OUTCOMES = (
    "promoted",
    "aborted",
    "abort-failed",
    "paused",
    "resumed",
    "rolled-back",
    "switched-back",
    "interrupted",
    "pass",
    "fail",
    "image-pull",
    "crash-loop",
    "config-error",
    "readiness",
    "restarts",
    "sync-failed",
    "degraded",
    "pending",
    "out-of-sync",
    "shared-incident",
    "rollback-verified",
    "rollback-not-recovered",
)
"""Every decision outcome (the words filters and tags use). `abort-failed`: the controller's
abort did not land before its deadline (a filter that takes `aborted` takes it too).
`interrupted`: a canary loop stopped before its end (a signal, Ctrl-C). `resumed`: a person
resumed what a person paused. A person's action (promote, abort, pause, resume) is a decision
whose `extra.manual` says who asked, why and when (`analyzer.report.manual`).
`shared-incident`: the metrics hold the rollout on a breach both versions share (an incident,
not the new version; routed to the platform team, `analyzer.notify.routes`)."""


HEALTH_OUTCOMES = (
    "image-pull",
    "crash-loop",
    "config-error",
    "readiness",
    "restarts",
    "sync-failed",
    "degraded",
    "pending",
    "out-of-sync",
)
"""The health gate's outcomes (`strategies.health`): `image-pull`, `crash-loop`, `config-error`,
`readiness`, `restarts`, `sync-failed`, `degraded` roll back (a filter that takes `aborted` takes
them too); `pending` and `out-of-sync` hold the rollout (a filter that takes `paused` takes them
too)."""
FOLLOW_UPS = ("rollback-verified", "rollback-not-recovered")
"""After a rollback: the old version serves as before the run (`rollback-verified`), or not
(`rollback-not-recovered`, a page). They report on a decision already taken: a report's headline
stays that decision."""
COUNTS_AS: dict[str, str] = {
    "abort-failed": "aborted",
    **{o: ("paused" if o in ("pending", "out-of-sync") else "aborted") for o in HEALTH_OUTCOMES},
    "shared-incident": "paused",
}
"""Outcomes a filter also takes under a broader word (`on: [aborted]` hears of every rollback)."""


@dataclass(frozen=True)
class RunInfo:
    """Which run an event belongs to."""

    id: str
    analysis: str
    namespace: str
    rollout: str
    way: str = "demo"
    """How the run is driven: demo, web (Argo's web provider), canary, controller."""


@dataclass(frozen=True)
class Figure:
    """One metric's headline at a look: the canary's and the baseline's value, and its verdict."""

    metric: str
    verdict: str
    canary: float | None
    baseline: float | None
    unit: str
    """`rate` (a fraction) or `seconds` (a latency quantile)."""
    critical: bool = False

    def text(self) -> str:
        return f"{self.metric} {self.verdict}: canary {show_value(self.canary, self.unit)} vs baseline {show_value(self.baseline, self.unit)}"


@dataclass(frozen=True)
class RunEvent:
    kind: EventKind
    run: RunInfo
    time: datetime
    step: int | None = None
    """1-based step number; None for a web-provider run (one region for the whole run)."""
    weight: int | None = None
    """Canary traffic weight in percent at this step."""
    look: int | None = None
    verdict: str | None = None
    """The analysis verdict (pass, fail, inconclusive) at this look, or at the step's end."""
    outcome: str | None = None
    """Decisions only: one of `OUTCOMES`."""
    reason: str = ""
    figures: tuple[Figure, ...] = ()
    metrics: tuple[Mapping[str, Any], ...] = ()
    """Looks only: every metric's full document (`analyzer.render.metric_json`)."""
    started: datetime | None = None
    """Ended events: when the step (or run) began."""
    score: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: what happened, where, and why with the deciding figures."""
        where = f"{self.run.namespace}/{self.run.rollout}"
        at = f" at {self.weight} %" if self.weight is not None else ""
        if self.kind is EventKind.DECISION:
            head = f"Verdict {self.outcome} {where}{at}"
        elif self.kind is EventKind.STARTED:
            head = f"Verdict {'step ' + str(self.step) if self.step else 'run'} started {where}{at}"
        elif self.kind is EventKind.ENDED:
            head = f"Verdict {'step ' + str(self.step) if self.step else 'run'} ended {where}{at}: {self.verdict or 'no verdict'}"
        else:
            head = f"Verdict look {self.look} {where}{at}: {self.verdict}"
        deciding = [f for f in self.figures if f.verdict == "fail"] or list(self.figures)
        figures = "; ".join(f.text() for f in deciding)
        parts = [head]
        if self.reason:
            parts.append(self.reason)
        if figures:
            parts.append(figures)
        return " — ".join(parts)


def time_ms(value: datetime) -> int:
    """Epoch milliseconds (Grafana's `time` and `timeEnd`)."""
    return round(value.timestamp() * 1000)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: str) -> datetime:
    text = value[:-1] + "+00:00" if value.endswith("Z") else value
    return datetime.fromisoformat(text).astimezone(UTC)


def figures_of(metrics: Iterable[Mapping[str, Any]]) -> tuple[Figure, ...]:
    """The headline of each metric document (`metric_json`): rate or latency quantile."""
    out = []
    for m in metrics:
        canary = m.get("canary") or {}
        baseline = m.get("baseline") or {}
        unit = "seconds" if "seconds" in canary or "seconds" in baseline else "rate"
        key = "seconds" if unit == "seconds" else "rate"
        out.append(
            Figure(
                metric=str(m.get("name", "?")),
                verdict=str(m.get("verdict", "?")),
                canary=_number(canary.get(key)),
                baseline=_number(baseline.get(key)),
                unit=unit,
                critical=bool(m.get("critical", False)),
            )
        )
    return tuple(out)


def event_json(event: RunEvent) -> dict[str, Any]:
    """The event as a JSON document (stored, and the body of webhooks)."""
    out: dict[str, Any] = {
        "kind": str(event.kind),
        "run": {
            "id": event.run.id,
            "analysis": event.run.analysis,
            "namespace": event.run.namespace,
            "rollout": event.run.rollout,
            "way": event.run.way,
        },
        "time": format_time(event.time),
        "step": event.step,
        "weight": event.weight,
        "look": event.look,
        "verdict": event.verdict,
        "outcome": event.outcome,
        "reason": event.reason,
        "score": event.score,
        "figures": {
            f.metric: {
                "verdict": f.verdict,
                "canary": f.canary,
                "baseline": f.baseline,
                "unit": f.unit,
                "critical": f.critical,
            }
            for f in event.figures
        },
    }
    if event.metrics:
        out["metrics"] = [dict(m) for m in event.metrics]
    if event.started is not None:
        out["started"] = format_time(event.started)
    if event.extra:
        out["extra"] = dict(event.extra)
    return out


def event_from_json(data: Mapping[str, Any]) -> RunEvent:
    """The inverse of `event_json`."""
    run = data["run"]
    figures = tuple(
        Figure(
            metric=name,
            verdict=str(f.get("verdict", "?")),
            canary=_number(f.get("canary")),
            baseline=_number(f.get("baseline")),
            unit=str(f.get("unit", "rate")),
            critical=bool(f.get("critical", False)),
        )
        for name, f in (data.get("figures") or {}).items()
    )
    return RunEvent(
        kind=EventKind(data["kind"]),
        run=RunInfo(
            id=run["id"],
            analysis=run["analysis"],
            namespace=run["namespace"],
            rollout=run["rollout"],
            way=run.get("way", "demo"),
        ),
        time=parse_time(data["time"]),
        step=data.get("step"),
        weight=data.get("weight"),
        look=data.get("look"),
        verdict=data.get("verdict"),
        outcome=data.get("outcome"),
        reason=data.get("reason") or "",
        score=_number(data.get("score")),
        figures=figures,
        metrics=tuple(data.get("metrics") or ()),
        started=parse_time(data["started"]) if data.get("started") else None,
        extra=dict(data.get("extra") or {}),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def show_value(value: float | None, unit: str) -> str:
    """A figure as people read it: `5.1 %` for a rate, `250 ms` for a latency."""
    if value is None:
        return "n/a"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms"
    return f"{value * 100:.3g} %"

"""The report as a JSON document (`verdict report --format json`, the HTML's data).

The document is strict JSON: a number that is not finite in a stored run (NaN, infinity) is
written as null.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from analyzer.notify.events import format_time
from analyzer.report.manual import manual_json
from analyzer.report.model import Band, MetricPoint, RunReport


def report_document(report: RunReport) -> dict[str, Any]:
    document: dict[str, Any] = _finite(_document(report))
    return document


def _document(report: RunReport) -> dict[str, Any]:
    run = report.run
    decision = report.decision
    return {
        "run": {
            "id": run.id,
            "analysis": run.key.analysis,
            "namespace": run.key.namespace,
            "rollout": run.key.rollout,
            "canaryHash": run.key.canary_hash,
            "way": report.way,
            "startedAt": format_time(run.started_at),
            "updatedAt": format_time(run.updated_at),
            "looks": report.look_count,
        },
        "verdict": report.verdict,
        "headline": report.headline,
        "reason": report.reason,
        "decision": None
        if decision is None
        else {
            "outcome": decision.outcome,
            "reason": decision.reason,
            "time": format_time(decision.time),
            "look": decision.look,
            "step": decision.step,
            "weight": decision.weight,
        },
        "decidingLook": report.deciding_look,
        "manualActions": manual_json(report.manual),
        "steps": [
            {
                "step": s.step,
                "weight": s.weight,
                "startedAt": _time(s.started),
                "endedAt": _time(s.ended),
                "verdict": s.verdict,
                "lastLook": s.last_look,
            }
            for s in report.steps
        ],
        "looks": [
            {
                "look": lk.look,
                "time": format_time(lk.time),
                "step": lk.step,
                "weight": lk.weight,
                "verdict": lk.verdict,
                "score": lk.score,
            }
            for lk in report.looks
        ],
        "metrics": [
            {
                "name": m.name,
                "kind": m.kind,
                "unit": m.unit,
                "critical": m.critical,
                "verdict": m.verdict,
                "reason": m.reason,
                "failedAtLook": m.failed_at_look,
                "final": dict(m.final),
                "series": [_point(p) for p in m.points],
            }
            for m in report.metrics
        ],
    }


def _point(p: MetricPoint) -> dict[str, Any]:
    return {
        "look": p.look,
        "time": format_time(p.time),
        "verdict": p.verdict,
        "canary": p.canary,
        "baseline": p.baseline,
        "bands": _bands(p.bands),
        "limits": dict(p.limits),
        "shareBands": _bands(p.share_bands),
        "shareLimits": dict(p.share_limits),
        "shareValues": dict(p.share_values),
        "evidence": dict(p.evidence),
        "evidenceLimits": dict(p.evidence_limits),
    }


def _bands(bands: tuple[Band, ...]) -> dict[str, list[float]]:
    return {b.label: [b.lower, b.upper] for b in bands}


def _finite(value: Any) -> Any:
    """`value` with every float that is not finite replaced by None (at any depth)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _time(value: datetime | None) -> str | None:
    return None if value is None else format_time(value)

"""Plain result types shared by the checks, the judge, the CLI and the API."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class MetricStatus(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    NO_DATA = "no data"


class Verdict(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class CheckReport:
    """One check of one metric: an SLO gate, a comparison, or a Mann-Whitney judgement."""

    check: str  # "slo" | "trigger" | "compare" | "mann-whitney"
    outcome: str  # pass | fail | inconclusive
    reason: str
    statistic: dict[str, Any] = field(default_factory=dict)
    more_requests_needed: int | None = None


@dataclass(frozen=True)
class MetricReport:
    name: str
    kind: str  # ratio | histogram
    status: MetricStatus
    reason: str
    critical: bool
    weight: float
    canary: dict[str, Any]
    baseline: dict[str, Any]
    checks: list[CheckReport]
    alpha: float
    failed_at_look: int | None = None
    more_requests_needed: int | None = None
    more_minutes_needed: float | None = None  # at the canary's current request rate
    held: bool = False
    """Inconclusive because the canary is shown beyond its SLO (a promotion criterion)."""
    shared_incident: bool = False
    """Held, and the baseline is shown beyond the SLO too: an incident on both versions."""


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    score: float
    reason: str


@dataclass(frozen=True)
class AnalysisReport:
    """One analysis judged: the verdict, its score and reason, and every metric's report."""

    name: str
    verdict: Verdict
    score: float
    reason: str
    metrics: list[MetricReport]
    start: datetime
    end: datetime
    interval_seconds: float
    looks: int
    alpha: float
    beta: float = 0.10

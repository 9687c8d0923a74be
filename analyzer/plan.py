"""The plan of an analysis: the analysis file resolved once into plain numbers.

`analyzer.spec.plan_analysis` builds it from the validated file, once per analysis; everything
that judges (`analyzer.analysis`, `analyzer.checks`, `analyzer.looks`, `analyzer.judge`, the run
core) reads the plan and never the file's pydantic models: thresholds are in base units (a bad
fraction, seconds), each metric carries its share of alpha, and the defaults are filled in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from analyzer.errors import SpecError
from metrics.source import MetricKind, MetricQuery

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
CHECK_WEIGHTS = MappingProxyType({"trigger": 0.1, "compare": 0.9})
"""Each FAIL check's weight in its metric's FAIL e-value, before they are normalised to sum to 1:
the rollback trigger (for canaries far beyond it, where a tenth of alpha costs little) and the
comparison (which decides the close calls). The SLO (a promotion criterion) never fails a metric: a
breach holds it (`analyzer.looks`)."""
DEFAULT_ABORT_BAD_RATE = 0.01
"""The rollback trigger a ratio SLO gets when the file names none: 1 % bad (or twice the SLO's bad
rate when that is looser), the product brief's "error rate > 1 %"."""
DEFAULT_ABORT_SECONDS = 1.0
"""The rollback trigger a latency SLO gets when the file names none: 1 s (or twice the SLO)."""


@dataclass(frozen=True)
class ComparePlan:
    """The canary may reach baseline × (1 + tolerance) + margin; a pass is shown below
    baseline × (1 + promote_tolerance) + margin."""

    tolerance: float
    promote_tolerance: float
    margin: float


@dataclass(frozen=True)
class MetricPlan:
    """One metric, resolved: what to read, which checks, their bounds in base units, its budget."""

    name: str
    kind: MetricKind
    query: MetricQuery
    higher_is_better: bool
    quantile: float
    """The latency quantile (0.99 unless the file says otherwise); unused for ratios."""
    max_bad_rate: float | None
    """A ratio SLO as an upper bound on the bad fraction (None: no SLO, or a latency metric)."""
    latency_threshold: float | None
    """A latency SLO in seconds (None: no SLO, or a ratio metric)."""
    compare: ComparePlan | None
    abort_bad_rate: float | None = None
    """A ratio rollback trigger as a bad fraction: the canary shown above it fails at once."""
    abort_seconds: float | None = None
    """A latency rollback trigger in seconds: the canary's quantile shown above it fails at once."""
    critical: bool = False
    weight: float = 1.0
    test: Literal["sequential", "mann-whitney"] = "sequential"
    alpha: float = 0.05
    """This metric's share of the analysis' false-abort budget."""
    beta: float = 0.10

    @property
    def has_slo(self) -> bool:
        return self.max_bad_rate is not None or self.latency_threshold is not None

    @property
    def has_trigger(self) -> bool:
        return self.abort_bad_rate is not None or self.abort_seconds is not None

    @property
    def check_weights(self) -> dict[str, float]:
        """The weights of the metric's FAIL checks in its FAIL e-value (they sum to 1); the SLO
        check holds and never fails, so it has none."""
        present = [c for c, on in (("trigger", self.has_trigger), ("compare", self.compare)) if on]
        total = sum(CHECK_WEIGHTS[c] for c in present)
        return {c: CHECK_WEIGHTS[c] / total for c in present}

    @property
    def reads_prerun(self) -> bool:
        """Whether the pre-run baseline is read for this metric (a sequential comparison)."""
        return self.compare is not None and self.test == "sequential"


@dataclass(frozen=True)
class Scoring:
    mode: Literal["all", "score"] = "all"
    pass_threshold: float = 75.0


@dataclass(frozen=True)
class AnalysisPlan:
    """A whole analysis, resolved (see the module docstring)."""

    name: str
    metrics: tuple[MetricPlan, ...]
    canary: dict[str, str]
    baseline: dict[str, str]
    alpha: float = 0.05
    beta: float = 0.10
    interval: float = 30.0
    pre_run_window: float = 3600.0
    scoring: Scoring = field(default_factory=Scoring)

    def metric(self, name: str) -> MetricPlan:
        return next(m for m in self.metrics if m.name == name)

    def placeholders(self) -> set[str]:
        """Names used as `{{ name }}` in the canary and baseline matchers."""
        found: set[str] = set()
        for value in (*self.canary.values(), *self.baseline.values()):
            found.update(PLACEHOLDER.findall(value))
        return found

    def matchers(
        self, params: dict[str, str] | None = None
    ) -> tuple[dict[str, str], dict[str, str]]:
        """Canary and baseline matchers with `{{ name }}` placeholders filled from `params`."""
        return fill_matchers(self.name, self.canary, self.baseline, params)


def fill_matchers(
    name: str,
    canary: dict[str, str],
    baseline: dict[str, str],
    params: dict[str, str] | None,
) -> tuple[dict[str, str], dict[str, str]]:
    params = params or {}
    used: set[str] = set()
    for value in (*canary.values(), *baseline.values()):
        used.update(PLACEHOLDER.findall(value))
    missing = sorted(used - params.keys())
    if missing:
        raise SpecError(
            f"analysis {name!r} needs values for {', '.join(missing)} "
            "(placeholders in its canary/baseline matchers)"
        )

    def fill(m: dict[str, str]) -> dict[str, str]:
        return {k: PLACEHOLDER.sub(lambda g: params[g.group(1)], v) for k, v in m.items()}

    return fill(canary), fill(baseline)

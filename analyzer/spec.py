"""The analysis file: pydantic models, YAML loading and readable validation errors.

The keys documented in the README (and DESIGN.md) are the user contract: they keep working.
Unknown keys are errors, so a typo never silently drops a check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from analyzer.budget import metric_alphas
from analyzer.durations import parse_seconds
from analyzer.errors import SpecError as SpecError
from analyzer.gates import ArgoCDSpec, HealthSpec
from analyzer.limits import MAX_ANALYSIS_FILE_BYTES
from analyzer.notify.config import GrafanaSpec, NotificationSpec
from analyzer.plan import (
    DEFAULT_ABORT_BAD_RATE,
    DEFAULT_ABORT_SECONDS,
    PLACEHOLDER,
    AnalysisPlan,
    ComparePlan,
    MetricPlan,
    Scoring,
    fill_matchers,
)
from metrics.promql import BUILTIN_TEMPLATES
from metrics.source import MetricKind, MetricQuery

Seconds = Annotated[float, BeforeValidator(parse_seconds)]
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$")
DEFAULT_STEPS = (5, 10, 50, 100)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class PrometheusSpec(_Model):
    url: str | None = None
    timeout: Seconds = Field(default=5.0, gt=0, description="per-query timeout")
    retries: int = Field(default=2, ge=0, le=10)
    headers: dict[str, str] = Field(default_factory=dict)
    compress: bool = Field(
        default=False, description="ask for gzip answers (for a Prometheus behind a slow link)"
    )
    max_answer_bytes: int | None = Field(
        default=None,
        ge=1024,
        alias="maxAnswerBytes",
        description="the most of one answer read, in bytes (after gzip); default 256 MiB",
    )
    max_series: int | None = Field(
        default=None,
        ge=1,
        alias="maxSeries",
        description="the most series one answer may hold; default 100,000",
    )
    bearer_token_file: str | None = Field(
        default=None,
        min_length=1,
        alias="bearerTokenFile",
        description="a file holding a bearer token, read at each request (Authorization)",
    )

    @model_validator(mode="after")
    def _one_authorization(self) -> PrometheusSpec:
        if self.bearer_token_file and any(h.lower() == "authorization" for h in self.headers):
            raise ValueError("give headers.Authorization or bearerTokenFile, not both")
        return self


class SloSpec(_Model):
    """`max`/`min`: the promotion criterion (the canary must be shown within it to pass; a breach
    alone holds the rollout). `abortAbove`/`abortBelow`: the rollback trigger (the canary shown
    beyond it fails at once, whatever the baseline does); without one, an SLO gets the brief's
    default (1 % bad, 1 s latency, or twice the SLO where that is looser)."""

    max: float | str | None = None
    min: float | str | None = None
    abort_above: float | str | None = Field(default=None, alias="abortAbove")
    abort_below: float | str | None = Field(default=None, alias="abortBelow")

    @model_validator(mode="after")
    def _one_bound(self) -> SloSpec:
        if self.max is not None and self.min is not None:
            raise ValueError("give one of max or min, not both")
        if self.abort_above is not None and self.abort_below is not None:
            raise ValueError("give one of abortAbove or abortBelow, not both")
        if self.max is None and self.min is None and self.abort_above is None and self.abort_below is None:
            raise ValueError("give max or min (the promotion criterion), abortAbove or abortBelow (the rollback trigger), or both")
        return self


class CompareSpec(_Model):
    direction: Literal["increase", "decrease"] | None = None  # default: the way that is worse
    tolerance: float = Field(
        default=0.5, ge=0, description="relative: 0.5 allows 1.5x the baseline"
    )
    margin: float = Field(default=0.001, ge=0, le=1, description="absolute, in rate units")
    promote_tolerance: float | None = Field(
        default=None,
        alias="promoteTolerance",
        ge=0,
        description="relative: a pass needs the canary shown below baseline × (1 + this) + "
        "margin; default 1.5 × tolerance",
    )

    @model_validator(mode="after")
    def _promote_at_least_fail(self) -> CompareSpec:
        if self.promote_tolerance is not None and self.promote_tolerance < self.tolerance:
            raise ValueError(
                "promoteTolerance must be at least tolerance (a pass is shown below a bound "
                "at or above the one a failure is shown above)"
            )
        return self

    @property
    def effective_promote_tolerance(self) -> float:
        if self.promote_tolerance is not None:
            return self.promote_tolerance
        return 1.5 * self.tolerance


class QuerySpec(_Model):
    """A custom query: counter selectors with a `{{ selector }}` placeholder."""

    total: str | None = None
    bad: str | None = None
    good: str | None = None
    buckets: str | None = None
    unit: Literal["s", "ms"] = "s"

    @model_validator(mode="after")
    def _shape(self) -> QuerySpec:
        if self.buckets:
            if self.total or self.bad or self.good:
                raise ValueError("a histogram query has only `buckets` (and `unit`)")
        elif not self.total or not (self.bad or self.good) or (self.bad and self.good):
            raise ValueError("a ratio query needs `total` and one of `bad` or `good`")
        for text in (self.total, self.bad, self.good, self.buckets):
            if text and "{{" not in text:
                raise ValueError(f"query {text!r} has no {{{{ selector }}}} placeholder")
        return self


class MetricSpec(_Model):
    name: str
    template: Literal["istio-error-rate", "istio-success-rate", "istio-latency"] | None = None
    query: QuerySpec | None = None
    quantile: float | None = Field(default=None, gt=0, lt=1)
    slo: SloSpec | None = None
    compare: CompareSpec | None = None
    critical: bool = False
    weight: float = Field(default=1.0, ge=0)
    test: Literal["sequential", "mann-whitney"] = "sequential"

    @model_validator(mode="after")
    def _consistent(self) -> MetricSpec:
        if (self.template is None) == (self.query is None):
            raise ValueError("give exactly one of `template` or `query`")
        if self.slo is None and self.compare is None:
            raise ValueError("nothing to check: add `slo`, `compare` or both")
        kind = self.kind
        if self.slo is not None:
            for label, bound in (("max", self.slo.max), ("min", self.slo.min)):
                if bound is None:
                    continue
                if kind is MetricKind.RATIO:
                    _rate(bound, f"slo.{label}")
                else:
                    if label == "min":
                        raise ValueError("slo.min: a latency SLO is an upper bound: use slo.max")
                    try:
                        parse_seconds(bound)
                    except ValueError as error:
                        raise ValueError(f"slo.max: {error}") from None
            self._check_trigger(kind)
        if self.compare is not None and self.compare.direction is not None:
            worse = "decrease" if self.higher_is_better else "increase"
            if self.compare.direction != worse:
                raise ValueError(
                    f"compare.direction: this metric gets worse when it {worse}s; "
                    f"use direction: {worse} (or leave it out)"
                )
        if kind is MetricKind.RATIO and self.quantile is not None:
            raise ValueError("`quantile` applies to latency (histogram) metrics only")
        return self

    @property
    def kind(self) -> MetricKind:
        return self.metric_query.kind

    @property
    def metric_query(self) -> MetricQuery:
        if self.template is not None:
            return BUILTIN_TEMPLATES[self.template]
        assert self.query is not None
        q = self.query
        if q.buckets:
            return MetricQuery(
                name=self.name,
                kind=MetricKind.HISTOGRAM,
                buckets=q.buckets,
                unit_seconds=0.001 if q.unit == "ms" else 1.0,
            )
        return MetricQuery(
            name=self.name,
            kind=MetricKind.RATIO,
            total=q.total or "",
            bad=q.bad or "",
            good=q.good or "",
        )

    @property
    def higher_is_better(self) -> bool:
        """Success-rate style metrics: the displayed rate is the good fraction."""
        if self.template == "istio-success-rate":
            return True
        return bool(self.query and self.query.good and not self.query.bad)

    @property
    def effective_quantile(self) -> float:
        return self.quantile if self.quantile is not None else 0.99

    def max_bad_rate(self) -> float | None:
        """The SLO as an upper bound on the bad fraction (ratio metrics)."""
        if self.slo is None:
            return None
        if self.slo.max is not None:
            value = _rate(self.slo.max, "slo.max")
            return 1.0 - value if self.higher_is_better else value
        if self.slo.min is None:  # a rollback trigger alone
            return None
        value = _rate(self.slo.min, "slo.min")
        return value if not self.higher_is_better else 1.0 - value

    def latency_threshold(self) -> float | None:
        """The latency SLO in seconds (histogram metrics)."""
        if self.slo is None or self.slo.max is None:
            return None
        return parse_seconds(self.slo.max)

    def _check_trigger(self, kind: MetricKind) -> None:
        assert self.slo is not None
        worse = "abortBelow" if self.higher_is_better else "abortAbove"
        given = "abortAbove" if self.slo.abort_above is not None else "abortBelow"
        bound = self.slo.abort_above if self.slo.abort_above is not None else self.slo.abort_below
        if bound is None:
            return
        if given != worse:
            raise ValueError(
                f"slo.{given}: this metric gets worse when it "
                f"{'falls' if self.higher_is_better else 'rises'}; use slo.{worse}"
            )
        if kind is MetricKind.RATIO:
            _rate(bound, f"slo.{given}")
        else:
            try:
                parse_seconds(bound)
            except ValueError as error:
                raise ValueError(f"slo.{given}: {error}") from None
        slo_bad = self.max_bad_rate() if kind is MetricKind.RATIO else self.latency_threshold()
        trigger = self.abort_bad_rate() if kind is MetricKind.RATIO else self.abort_seconds()
        if slo_bad is not None and trigger is not None and trigger < slo_bad:
            raise ValueError(f"slo.{given}: the rollback trigger must lie beyond the SLO")

    def abort_bad_rate(self) -> float | None:
        """The ratio rollback trigger as a bad fraction: the file's, else the default for an SLO."""
        if self.slo is None:
            return None
        bound = self.slo.abort_above if self.slo.abort_above is not None else self.slo.abort_below
        if bound is not None:
            value = _rate(bound, "slo.abortAbove")
            return 1.0 - value if self.higher_is_better else value
        slo = self.max_bad_rate()
        return None if slo is None else min(1.0, max(DEFAULT_ABORT_BAD_RATE, 2.0 * slo))

    def abort_seconds(self) -> float | None:
        """The latency rollback trigger in seconds: the file's, else the default for an SLO."""
        if self.slo is None:
            return None
        if self.slo.abort_above is not None:
            return parse_seconds(self.slo.abort_above)
        slo = self.latency_threshold()
        return None if slo is None else max(DEFAULT_ABORT_SECONDS, 2.0 * slo)


def _rate(value: float | str, key: str) -> float:
    """A rate in [0, 1], written as 0.005 or `0.5%`."""
    if isinstance(value, str):
        text = value.strip()
        try:
            rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
        except ValueError:
            raise ValueError(
                f"{key}: expected a rate such as 0.005 or 0.5%, got {value!r}"
            ) from None
    else:
        rate = float(value)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{key}: a rate must lie between 0 and 1 (or 0% and 100%), got {value!r}")
    return rate


class ScoringSpec(_Model):
    mode: Literal["all", "score"] = "all"
    pass_threshold: float = Field(default=75.0, ge=0, le=100)


class AnalysisSpec(_Model):
    name: str
    prometheus: PrometheusSpec = Field(default_factory=PrometheusSpec)
    canary: dict[str, str]
    baseline: dict[str, str]
    interval: Seconds = Field(default=30.0, gt=0)
    alpha: float = Field(default=0.05, gt=0, lt=1, description="false-abort budget, whole analysis")
    beta: float = Field(
        default=0.10, gt=0, lt=1, description="false-promote rate of each check at its pass bound"
    )
    pre_run_window: Seconds = Field(
        default=3600.0,
        alias="preRunWindow",
        ge=0,
        description="baseline window before the run that fixes the comparison's thresholds; 0: none",
    )
    metrics: list[MetricSpec] = Field(min_length=1)
    scoring: ScoringSpec = Field(default_factory=ScoringSpec)
    steps: list[int] = Field(default_factory=lambda: list(DEFAULT_STEPS))
    grafana: GrafanaSpec | None = None  # annotations (analyzer/notify/config.py)
    notifications: list[NotificationSpec] = Field(default_factory=list)
    health: HealthSpec = Field(default_factory=HealthSpec)  # the health gate (analyzer/gates.py)
    argocd: ArgoCDSpec | None = None  # Argo CD sync status as a gate

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "use lower-case letters, digits, '.', '_' or '-' (like a Kubernetes name)"
            )
        return value

    @field_validator("canary", "baseline")
    @classmethod
    def _matchers(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("give at least one label matcher, e.g. {destination_service_name: x}")
        for label in value:
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", label):
                raise ValueError(f"invalid label name {label!r}")
        return value

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value or any(not 0 < w <= 100 for w in value) or value != sorted(set(value)):
            raise ValueError(
                "steps are increasing canary weights between 1 and 100, e.g. [5, 10, 50, 100]"
            )
        return value

    @model_validator(mode="after")
    def _unique_names(self) -> AnalysisSpec:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"metric names must be unique: {', '.join(dupes)}")
        return self

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


def plan_metric(metric: MetricSpec, *, alpha: float = 0.05, beta: float = 0.10) -> MetricPlan:
    """One metric of the file resolved into plain numbers (with its share of alpha)."""
    ratio = metric.kind is MetricKind.RATIO
    compare = None
    if metric.compare is not None:
        compare = ComparePlan(
            tolerance=metric.compare.tolerance,
            promote_tolerance=metric.compare.effective_promote_tolerance,
            margin=metric.compare.margin,
        )
    return MetricPlan(
        name=metric.name,
        kind=metric.kind,
        query=metric.metric_query,
        higher_is_better=metric.higher_is_better,
        quantile=metric.effective_quantile,
        max_bad_rate=metric.max_bad_rate() if ratio else None,
        latency_threshold=None if ratio else metric.latency_threshold(),
        abort_bad_rate=metric.abort_bad_rate() if ratio else None,
        abort_seconds=None if ratio else metric.abort_seconds(),
        compare=compare,
        critical=metric.critical,
        weight=metric.weight,
        test=metric.test,
        alpha=alpha,
        beta=beta,
    )


def plan_analysis(spec: AnalysisSpec) -> AnalysisPlan:
    """The analysis file resolved once into the plan everything that judges reads
    (`analyzer.plan`): each metric's checks and bounds in base units, its share of alpha."""
    alphas = metric_alphas(spec.metrics, spec.alpha)
    return AnalysisPlan(
        name=spec.name,
        metrics=tuple(
            plan_metric(m, alpha=a, beta=spec.beta)
            for m, a in zip(spec.metrics, alphas, strict=True)
        ),
        canary=dict(spec.canary),
        baseline=dict(spec.baseline),
        alpha=spec.alpha,
        beta=spec.beta,
        interval=spec.interval,
        pre_run_window=spec.pre_run_window,
        scoring=Scoring(mode=spec.scoring.mode, pass_threshold=spec.scoring.pass_threshold),
    )


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: `file: metrics[0].slo.max: problem`."""
    lines = []
    for item in error.errors():
        path = ""
        for part in item["loc"]:
            if isinstance(part, int):
                path += f"[{part}]"
            elif part in _TAG_NAMES:
                continue
            else:
                path += f".{part}" if path else str(part)
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see the README for the keys)"
        elif item["type"] == "missing":
            message = "required key is missing"
        lines.append(f"{source}: {path or '(top level)'}: {message}")
    return "\n".join(lines)


_TAG_NAMES = {"float", "str", "int", "function-after[_one_bound(), SloSpec]"}


def parse_analysis(data: Any, source: str = "<analysis>") -> AnalysisSpec:
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: expected a mapping of keys (name, canary, baseline, metrics, ...)"
        )
    try:
        return AnalysisSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, source)) from None


def safe_load_yaml(text: str) -> Any:
    """`yaml.safe_load` through libyaml when PyYAML has it (about ten times faster than the
    pure-Python parser: most of the reading of an analysis file); the same documents, and the
    same errors with their line and column."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(text, Loader=loader)


OTHER_SECTIONS = {"rollout": "`verdict canary run`"}
"""Top-level sections of an analysis file that other commands read: `verdict analyze` and
`verdict serve` read past them, with a note."""
_ANALYSIS_KEYS = frozenset({"name", "canary", "baseline", "metrics"})


def _read_yaml(file: Path) -> Any:
    """The YAML document of an analysis file; every problem becomes a `SpecError`."""
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_ANALYSIS_FILE_BYTES + 1)
    except OSError as error:
        raise SpecError(
            f"{file}: cannot read the analysis file: {error.strerror or error}"
        ) from None
    if len(raw) > MAX_ANALYSIS_FILE_BYTES:
        raise SpecError(
            f"{file}: the analysis file is larger than {MAX_ANALYSIS_FILE_BYTES // 1024} KiB"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SpecError(
            f"{file}: the analysis file is not UTF-8 text (byte {error.start})"
        ) from None
    try:
        return safe_load_yaml(text)
    except yaml.YAMLError as error:
        if "expected a single document" in str(error):
            raise _SeveralDocuments(f"{file}: several YAML documents, not one analysis") from None
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise SpecError(
            f"{file}: not valid YAML{where}: {getattr(error, 'problem', error)}"
        ) from None


class _SeveralDocuments(SpecError):
    """A YAML file of several documents (Kubernetes manifests): never one analysis."""


def _without_other_sections(data: Any, file: Path, notes: list[str] | None) -> Any:
    """`data` without the sections other commands read (`OTHER_SECTIONS`), each named in
    `notes`; as it is when `notes` is None (then such a section is an unknown key)."""
    if notes is None or not isinstance(data, dict):
        return data
    for key, command in OTHER_SECTIONS.items():
        if key in data:
            data = {k: v for k, v in data.items() if k != key}
            notes.append(f"{file}: its {key}: section is for {command}; ignored here")
    return data


def load_analysis(path: str | os.PathLike[str], *, notes: list[str] | None = None) -> AnalysisSpec:
    """Read and validate one analysis file; every problem becomes a `SpecError`. With `notes`,
    the sections other commands read (`rollout:`) are read past, each named in `notes`."""
    file = Path(path)
    data = _without_other_sections(_read_yaml(file), file, notes)
    return parse_analysis(data, str(file))


def not_an_analysis(data: Any) -> str | None:
    """Why a YAML document is no analysis file at all (a Kubernetes object, Helm values), or
    None when it may be one (its problems are then errors)."""
    if not isinstance(data, dict):
        return None
    if "apiVersion" in data and "kind" in data:
        return f"a Kubernetes {str(data['kind'])[:64]}, not an analysis"
    if not data.keys() & _ANALYSIS_KEYS:
        return "none of the keys name, canary, baseline, metrics: not an analysis"
    return None


def load_analyses(
    path: str | os.PathLike[str], *, notes: list[str] | None = None
) -> dict[str, AnalysisSpec]:
    """One analysis file, or every *.yaml / *.yml file of a folder, by analysis name. In a
    folder, files that are no analysis at all (Kubernetes manifests, Helm values:
    `not_an_analysis`) are skipped; with `notes`, each skip is named there, and the sections
    other commands read (`rollout:`) are read past."""
    root = Path(path)
    folder = root.is_dir()
    files = sorted([*root.glob("*.yaml"), *root.glob("*.yml")]) if folder else [root]
    if not files:
        raise SpecError(f"{root}: no analysis files (*.yaml) in this folder")
    analyses: dict[str, AnalysisSpec] = {}
    for file in files:
        try:
            data = _read_yaml(file)
        except _SeveralDocuments as several:
            if not folder:
                raise
            why: str | None = f"{several}: skipped"
        else:
            why = not_an_analysis(data) if folder else None
            why = f"{file}: {why}; skipped" if why else None
        if why is not None:
            if notes is not None:
                notes.append(why)
            continue
        spec = parse_analysis(_without_other_sections(data, file, notes), str(file))
        if spec.name in analyses:
            raise SpecError(f"{file}: analysis name {spec.name!r} is used by another file too")
        analyses[spec.name] = spec
    if not analyses:
        raise SpecError(f"{root}: no analysis file in this folder (every YAML file was skipped)")
    return analyses

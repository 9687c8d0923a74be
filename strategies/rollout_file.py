"""The `rollout:` section of an analysis file: how `verdict canary run` moves traffic.

A rollout file is an analysis file (as `verdict analyze` reads it) with one more top-level key,
`rollout:`; `load_rollout_file` splits the two and validates both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from analyzer.limits import rollout_looks_error
from analyzer.spec import (
    DEFAULT_STEPS,
    AnalysisSpec,
    Seconds,
    SpecError,
    format_validation_error,
    parse_analysis,
    safe_load_yaml,
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DestinationSpec(_Model):
    host: str = Field(min_length=1)
    subset: str | None = None


class RollbackOnSpec(_Model):
    """Blue/green: what switches back to blue during the validation period (besides Ctrl-C)."""

    analysis_fails: bool = Field(default=True, alias="analysisFails")
    max_error_rate: float | None = Field(default=0.01, ge=0, le=1, alias="maxErrorRate")
    """Green's error rate (any error-rate metric, over at least `min_requests`) above this."""
    min_requests: int = Field(default=1000, ge=1, alias="minRequests")


class RolloutSpec(_Model):
    strategy: Literal["canary", "blueGreen", "rolling"] = "canary"
    namespace: str = Field(default="default", min_length=1)
    virtual_service: str | None = Field(default=None, alias="virtualService")
    route: str | None = None
    stable: DestinationSpec | None = None
    canary: DestinationSpec | None = None
    canary_pods: str | None = Field(default=None, alias="canaryPods")
    stable_pods: str | None = Field(default=None, alias="stablePods")
    """Canary: the stable version's pods (a label selector), checked Ready after a rollback."""
    steps: list[int] = Field(default_factory=lambda: list(DEFAULT_STEPS))
    step_duration: Seconds = Field(default=300.0, gt=0, alias="stepDuration")
    on_timeout: Literal["pause", "abort", "promote"] = Field(default="pause", alias="onTimeout")
    pod_ready_timeout: Seconds = Field(default=300.0, gt=0, alias="podReadyTimeout")
    rollback_deadline: Seconds = Field(default=300.0, gt=0, alias="rollbackDeadline")
    """How long the write back to stable is tried after a fail before the command gives up."""
    # blueGreen
    active_service: str | None = Field(default=None, alias="activeService")
    preview_service: str | None = Field(default=None, alias="previewService")
    blue: dict[str, str] | None = None
    green: dict[str, str] | None = None
    validation_period: Seconds = Field(default=600.0, gt=0, alias="validationPeriod")
    rollback_on: RollbackOnSpec = Field(default_factory=RollbackOnSpec, alias="rollbackOn")
    # rolling
    deployment: str | None = None

    @field_validator("steps")
    @classmethod
    def _steps(cls, value: list[int]) -> list[int]:
        if not value or any(not 1 <= w <= 100 for w in value) or value != sorted(set(value)):
            raise ValueError(
                "steps are increasing canary weights between 1 and 100, e.g. [5, 10, 50, 100]"
            )
        if all(w == 100 for w in value):
            raise ValueError("steps need at least one weight below 100 to analyse")
        return value

    @model_validator(mode="after")
    def _strategy_needs(self) -> RolloutSpec:
        needs = {
            "canary": (
                ("virtualService", self.virtual_service),
                ("stable", self.stable),
                ("canary", self.canary),
                ("canaryPods", self.canary_pods),
            ),
            "blueGreen": (
                ("activeService", self.active_service),
                ("blue", self.blue),
                ("green", self.green),
            ),
            "rolling": (("deployment", self.deployment),),
        }[self.strategy]
        missing = [key for key, value in needs if value is None]
        if missing:
            raise ValueError(f"strategy {self.strategy} needs {', '.join(missing)}")
        if self.strategy == "blueGreen" and (
            not self.blue or not self.green or self.blue == self.green
        ):
            raise ValueError("blue and green are two different, non-empty label sets")
        return self

    @property
    def analysed_steps(self) -> list[int]:
        return [w for w in self.steps if w < 100]


@dataclass(frozen=True)
class RolloutFile:
    path: str
    analysis: AnalysisSpec
    rollout: RolloutSpec
    text: str
    """The file's text (its digest names the run when the canary pods carry no hash)."""


def parse_rollout(data: Any, source: str) -> RolloutSpec:
    if not isinstance(data, dict):
        raise SpecError(f"{source}: rollout: expected a mapping of keys (see the README)")
    try:
        return RolloutSpec.model_validate(data)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, f"{source}: rollout")) from None


def load_rollout_file(path: str | os.PathLike[str]) -> RolloutFile:
    """Read an analysis file with a `rollout:` section; every problem becomes a `SpecError`."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"{file}: cannot read the file: {error.strerror or error}") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"{file}: the file is not UTF-8 text (byte {error.start})") from None
    try:
        data = safe_load_yaml(text)
    except yaml.YAMLError as error:
        raise SpecError(f"{file}: not valid YAML: {getattr(error, 'problem', error)}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{file}: expected an analysis (a mapping of keys)")
    if "rollout" not in data:
        raise SpecError(f"{file}: no rollout: section (how to move traffic; see the README)")
    data = dict(data)
    rollout = parse_rollout(data.pop("rollout"), str(file))
    analysis = parse_analysis(data, str(file))
    too_many = rollout_looks_error(analysis.interval, _periods(rollout))
    if too_many:
        raise SpecError(f"{file}: {too_many}")
    return RolloutFile(path=str(file), analysis=analysis, rollout=rollout, text=text)


def _periods(rollout: RolloutSpec) -> dict[str, float]:
    """The rollout's fixed periods that are looked at every interval."""
    if rollout.strategy == "canary":
        return {"rollout.stepDuration": rollout.step_duration}
    if rollout.strategy == "blueGreen":
        return {"rollout.validationPeriod": rollout.validation_period}
    return {}

"""HTTP bodies of the web provider (pydantic at the edge) and its JSON error type."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from analyzer.api.limits import has_lone_surrogate
from analyzer.runs.service import MAX_VALUE_LENGTH

# Kubernetes name rules: a namespace is a DNS label, a Rollout name a DNS subdomain, a pod
# template hash a label value.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"

ANALYSIS_DOC = "The analysis file's `name`."
NAMESPACE_DOC = "The Rollout's namespace (`{{ namespace }}` in matchers)."
ROLLOUT_DOC = "The Rollout's name (`{{ rollout }}` in matchers)."
CANARY_DOC = "Pod template hash of the canary ReplicaSet (`{{ canaryHash }}` in matchers)."
STABLE_DOC = "Pod template hash of the stable ReplicaSet (`{{ stableHash }}` in matchers)."
START_DOC = (
    "RFC 3339 start of the run's data (first call only); default: the time of the first call."
)


class VerdictRequest(BaseModel):
    """A request for a verdict. Further string keys fill `{{ key }}` placeholders of matchers."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    analysis: str = Field(min_length=1, max_length=MAX_VALUE_LENGTH, description=ANALYSIS_DOC)
    namespace: str = Field(max_length=63, pattern=DNS_LABEL, description=NAMESPACE_DOC)
    rollout: str = Field(max_length=253, pattern=DNS_SUBDOMAIN, description=ROLLOUT_DOC)
    canary_hash: str = Field(
        alias="canaryHash", max_length=63, pattern=LABEL_VALUE, description=CANARY_DOC
    )
    stable_hash: str = Field(
        alias="stableHash", max_length=63, pattern=LABEL_VALUE, description=STABLE_DOC
    )
    start: str | None = Field(
        default=None,
        max_length=64,
        description=START_DOC,
        json_schema_extra={"format": "date-time"},
    )
    __pydantic_extra__: dict[str, str] = Field(init=False)

    @field_validator("analysis", "start")
    @classmethod
    def _text(cls, value: str | None) -> str | None:
        if value is not None and has_lone_surrogate(value):
            raise ValueError("holds a lone UTF-16 surrogate, which is not text")
        return value


class RunInfo(BaseModel):
    id: str
    startedAt: str
    looks: int


class VerdictResult(BaseModel):
    verdict: Literal["pass", "fail", "inconclusive"]
    score: float
    reason: str
    metrics: list[dict[str, Any]] = Field(
        description="One compact entry per metric: name, verdict, reason, critical, canary and "
        "baseline figures, failedAtLook, moreRequestsNeeded."
    )
    run: RunInfo


class VerdictAnswer(BaseModel):
    """HTTP 200: read it with `jsonPath: "{$.result}"` and `result.verdict == "pass"`."""

    result: VerdictResult


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable, e.g. `prometheus_unavailable`.")
    message: str = Field(description="What went wrong, in words a person can act on.")
    field: str | None = Field(default=None, description="The request field at fault, if any.")


class ErrorBody(BaseModel):
    """Every error answer: 4xx for bad input, 503 when Verdict cannot judge right now."""

    error: ErrorDetail


class ApiError(Exception):
    """An error answer: HTTP status, stable code, message and the field at fault."""

    def __init__(self, status: int, code: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            detail["field"] = self.field
        return {"error": detail}

"""Argo Rollouts' web metric provider, as far as Verdict's tests need it.

Evaluates one HTTP answer exactly as `metricproviders/webmetric/webmetric.go` and
`utils/evaluate/evaluate.go` do (shared/reference/argo-rollouts.md §1.2-1.4), and assesses a
metric's measurements with the template's limits as `analysis/analysis.go` does:

* transport error, timeout or a status outside 200..299 -> **Error** (never Failed);
* the body is decoded as JSON (a non-JSON body becomes the raw string, as on Argo's master);
* `jsonPath` selects the **first** match; no match -> **Error**;
* conditions: none -> Successful; only success -> Successful/Failed; only failure ->
  Failed/Successful; both -> failure wins, then success, else **Inconclusive**; an expression
  that cannot be evaluated -> **Error**.

Only tiny subsets are implemented, and anything else raises `Unsupported`:

* JSONPath: `{$}` (the whole body) and dotted keys `{$.a.b}` / `{.a.b}`;
* conditions (expr-lang): `<path> == <literal>` or `<path> != <literal>`, where `<path>` is
  `result` or `result.key.key...`, and `<literal>` a double- or single-quoted string, a
  number, `true`, `false` or `nil`. A missing key evaluates to nil, as in expr.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

SUCCESSFUL, FAILED, INCONCLUSIVE, ERROR = "Successful", "Failed", "Inconclusive", "Error"
DEFAULT_TIMEOUT_S = 10.0

_PATH = re.compile(r"^\{\s*\$?((?:\.[A-Za-z_][A-Za-z0-9_-]*)*)\s*\}$")
_CONDITION = re.compile(
    r"^\s*(result(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*(==|!=)\s*"
    r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|-?\d+(?:\.\d+)?|true|false|nil)\s*$"
)
_MISSING = object()


class Unsupported(ValueError):
    """A JSONPath or condition outside the subset this helper implements."""


@dataclass(frozen=True)
class Measurement:
    """One measurement: its phase, the value Argo stores (`json.Marshal(result)`), a message."""

    phase: str
    value: str | None = None
    message: str = ""


@dataclass(frozen=True)
class WebMetric:
    """The `provider.web` fields and conditions of one metric."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] | None = None
    json_body: Any = None
    timeout_seconds: int = 0
    json_path: str = "{$}"
    success_condition: str | None = None
    failure_condition: str | None = None

    @classmethod
    def from_template_metric(cls, metric: Mapping[str, Any]) -> WebMetric:
        """From a metric of an (Cluster)AnalysisTemplate whose args are already substituted."""
        web = metric["provider"]["web"]
        return cls(
            url=web["url"],
            method=web.get("method", "GET"),
            headers={h["key"]: h["value"] for h in web.get("headers", [])},
            json_body=web.get("jsonBody"),
            timeout_seconds=int(web.get("timeoutSeconds", 0)),
            json_path=web.get("jsonPath", "{$}"),
            success_condition=metric.get("successCondition"),
            failure_condition=metric.get("failureCondition"),
        )

    def measure(self, client: httpx.Client | None = None) -> Measurement:
        """Send the request and evaluate the answer."""
        timeout = self.timeout_seconds if self.timeout_seconds > 0 else DEFAULT_TIMEOUT_S
        own = client is None
        http = client or httpx.Client()
        try:
            response = http.request(
                self.method,
                self.url,
                headers=dict(self.headers or {}),
                json=self.json_body if self.method in ("POST", "PUT") else None,
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            return Measurement(ERROR, message=f"{type(error).__name__}: {error}")
        finally:
            if own:
                http.close()
        return evaluate(
            response.status_code,
            response.content,
            json_path=self.json_path,
            success_condition=self.success_condition,
            failure_condition=self.failure_condition,
        )


def evaluate(
    status: int,
    body: bytes,
    *,
    json_path: str = "{$}",
    success_condition: str | None = None,
    failure_condition: str | None = None,
) -> Measurement:
    """The measurement Argo records for one HTTP answer."""
    if not 200 <= status <= 299:
        return Measurement(ERROR, message=f"received non 2xx response code: {status}")
    text = body.decode("utf-8", errors="replace")
    try:
        document: Any = json.loads(text)
    except ValueError:
        document = text
    found = first_match(json_path, document)
    if found is _MISSING:
        return Measurement(ERROR, message=f"Could not find JSONPath in body: {json_path}")
    value = json.dumps(found, separators=(",", ":"))
    try:
        phase = decide(found, success_condition, failure_condition)
    except Unsupported:
        raise
    except (TypeError, ValueError) as error:
        return Measurement(ERROR, value=value, message=f"could not evaluate condition: {error}")
    return Measurement(phase, value=value)


def first_match(json_path: str, document: Any) -> Any:
    """The first value `json_path` selects in `document`, or `_MISSING`."""
    match = _PATH.match(json_path.strip())
    if match is None:
        raise Unsupported(f"JSONPath {json_path!r} is outside the supported subset")
    value = document
    for key in filter(None, match.group(1).split(".")):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def decide(result: Any, success: str | None, failure: str | None) -> str:
    """Argo's decision table (`EvaluateResult`)."""
    if not success and not failure:
        return SUCCESSFUL
    if success and not failure:
        return SUCCESSFUL if condition(success, result) else FAILED
    if failure and not success:
        return FAILED if condition(failure, result) else SUCCESSFUL
    assert success is not None and failure is not None
    if condition(failure, result):
        return FAILED
    if condition(success, result):
        return SUCCESSFUL
    return INCONCLUSIVE


def condition(expression: str, result: Any) -> bool:
    """Evaluate `result.a.b == "x"`-style expressions (see the module docstring)."""
    match = _CONDITION.match(expression)
    if match is None:
        raise Unsupported(f"condition {expression!r} is outside the supported subset")
    path, operator, literal = match.groups()
    value: Any = result
    for key in path.split(".")[1:]:
        value = value.get(key) if isinstance(value, dict) else None
    expected = _literal(literal)
    return (value == expected) if operator == "==" else (value != expected)


def _literal(text: str) -> Any:
    if text[0] == '"':
        return json.loads(text)
    if text[0] == "'":
        return json.loads('"' + text[1:-1].replace("\\'", "'").replace('"', '\\"') + '"')
    if text in ("true", "false"):
        return text == "true"
    if text == "nil":
        return None
    return float(text)  # expr compares JSON numbers (float64) with number literals


@dataclass(frozen=True)
class Limits:
    """A metric's limits (Argo's defaults when absent)."""

    count: int = 0
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    consecutive_success_limit: int = 0

    @classmethod
    def from_template_metric(cls, metric: Mapping[str, Any]) -> Limits:
        return cls(
            count=int(metric.get("count", 0)),
            failure_limit=int(metric.get("failureLimit", 0)),
            inconclusive_limit=int(metric.get("inconclusiveLimit", 0)),
            consecutive_error_limit=int(metric.get("consecutiveErrorLimit", 4)),
            consecutive_success_limit=int(metric.get("consecutiveSuccessLimit", 0)),
        )


def metric_phase(phases: Sequence[str], limits: Limits) -> str:
    """The metric's phase after these measurements ("Running" while undecided).

    `analysis.go` counters (§1.4): Error measurements are not counted in `count`; the limits are
    checked in the order failed, inconclusive, error (a later one overrides); a consecutive
    success streak of `consecutiveSuccessLimit` is Successful; `count` reached without that
    streak is Inconclusive while failureLimit applies (Failed when it is -1), else Successful.
    """
    failed = inconclusive = count = consecutive_errors = consecutive_successes = 0
    for phase in phases:
        if phase == ERROR:
            consecutive_errors += 1
        else:
            count += 1
            consecutive_errors = 0
            failed += phase == FAILED
            inconclusive += phase == INCONCLUSIVE
            consecutive_successes = consecutive_successes + 1 if phase == SUCCESSFUL else 0
        outcome = None
        if limits.failure_limit >= 0 and failed > limits.failure_limit:
            outcome = FAILED
        if inconclusive > limits.inconclusive_limit:
            outcome = INCONCLUSIVE
        if consecutive_errors > limits.consecutive_error_limit:
            outcome = ERROR
        if outcome is not None:
            return outcome
        if limits.consecutive_success_limit and (
            consecutive_successes >= limits.consecutive_success_limit
        ):
            return SUCCESSFUL
        if limits.count and count >= limits.count:
            if limits.consecutive_success_limit:
                return FAILED if limits.failure_limit == -1 else INCONCLUSIVE
            return SUCCESSFUL
    return "Running"

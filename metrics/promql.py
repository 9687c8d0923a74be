"""PromQL building: label escaping, selectors and the built-in query templates.

Every label value that reaches PromQL goes through `escape_label_value`, so a value such as
`a"} or vector(1) #` stays one string literal and cannot change the query. Label names are checked
against Prometheus' grammar `[a-zA-Z_][a-zA-Z0-9_]*`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from metrics.errors import QueryError
from metrics.source import MetricKind, MetricQuery

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SELECTOR_PLACEHOLDER = re.compile(r"\{\{\s*selector\s*\}\}")
_DURATION_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0))


def escape_label_value(value: str) -> str:
    """Escape a string for a double-quoted PromQL string literal (backslash, quote, newline)."""
    return (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def selector(matchers: Mapping[str, str]) -> str:
    """Render equality matchers as `a="x",b="y"` (no braces), escaping every value."""
    parts = []
    for name, value in sorted(matchers.items()):
        if not _LABEL_NAME.match(name):
            raise QueryError(f"invalid label name {name!r}: must match [a-zA-Z_][a-zA-Z0-9_]*")
        parts.append(f'{name}="{escape_label_value(str(value))}"')
    return ",".join(parts)


def render(template: str, matchers: Mapping[str, str]) -> str:
    """Put the version's matchers in place of `{{ selector }}` in a counter selector template."""
    if not _SELECTOR_PLACEHOLDER.search(template):
        raise QueryError(f"query {template!r} has no {{{{ selector }}}} placeholder")
    rendered_selector = selector(matchers)
    if not rendered_selector:
        # drop a separating comma next to the empty placeholder
        template = re.sub(r",\s*\{\{\s*selector\s*\}\}|\{\{\s*selector\s*\}\}\s*,?", "", template)
        return template
    return _SELECTOR_PLACEHOLDER.sub(lambda _: rendered_selector, template)


def union_selector(template: str, matchers: Sequence[Mapping[str, str]]) -> str:
    """`template`'s counter selector for the series of every set of `matchers` at once: a label
    with one value among them is matched by equality, one with several by a regular expression
    of exactly those values (`a=~"x|y"`). Every set must name the same labels. When several
    labels differ, the selector also matches their other combinations: a reader keeps each
    set's own series."""
    if not matchers:
        raise ValueError("no matchers to unite")
    names = sorted(matchers[0])
    if any(sorted(m) != names for m in matchers):
        raise ValueError("every set of matchers must name the same labels")
    parts = []
    for name in names:
        if not _LABEL_NAME.match(name):
            raise QueryError(f"invalid label name {name!r}: must match [a-zA-Z_][a-zA-Z0-9_]*")
        values = sorted({str(m[name]) for m in matchers})
        if len(values) == 1:
            parts.append(f'{name}="{escape_label_value(values[0])}"')
        else:
            pattern = "|".join(_regex_literal(v) for v in values)
            parts.append(f'{name}=~"{escape_label_value(pattern)}"')
    if not _SELECTOR_PLACEHOLDER.search(template):
        raise QueryError(f"query {template!r} has no {{{{ selector }}}} placeholder")
    return _SELECTOR_PLACEHOLDER.sub(lambda _: ",".join(parts), template)


def _regex_literal(value: str) -> str:
    """`value` as a regular expression (RE2) that matches exactly it."""
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", value)


def promql_duration(seconds: float) -> str:
    """A PromQL range duration such as `30s` or `1m30s` (whole milliseconds at worst)."""
    if seconds <= 0:
        raise ValueError("a PromQL duration must be positive")
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    rest = ms // 1000
    out = ""
    for unit, size in _DURATION_UNITS:
        count, rest = divmod(rest, int(size))
        if count:
            out += f"{count}{unit}"
    return out


def increase_query(
    counter_selector: str, range_seconds: float, *, by_le: bool = False, at: float | None = None
) -> str:
    """The counters' total increase over the last `range_seconds`, summed (by `le` for buckets).

    `increase()` handles counter resets, but it never counts the first sample of a series that
    begins inside the range (a new pod, or the first 5xx of a version: Istio creates a series at
    its first request). Those first values are added back: `min_over_time` of every series absent
    at the range's start is its first value. Without this, rare errors of a fresh canary would be
    undercounted, a bias towards promotion.

    `at` (Unix seconds): every selector pinned at that instant (the `@` modifier), so the query
    gives the same answer whenever it is evaluated, and many such queries can be asked in one.
    """
    grouping = " by (le)" if by_le else ""
    matching = " on (le)" if by_le else ""
    pinned = "" if at is None else f" @ {at:.3f}"
    window = f"[{promql_duration(range_seconds)}]{pinned}"
    offset = f"offset {promql_duration(range_seconds)}{pinned}"
    grown = f"sum{grouping}(increase({counter_selector}{window}))"
    born = (
        f"sum{grouping}(min_over_time({counter_selector}{window})"
        f" unless {counter_selector} {offset})"
    )
    return f"({grown} +{matching} {born}) or {grown}"


_ISTIO_REQUESTS = 'istio_requests_total{reporter="destination",{{ selector }}}'
_ISTIO_5XX = 'istio_requests_total{reporter="destination",response_code=~"5..",{{ selector }}}'
_ISTIO_NOT_5XX = 'istio_requests_total{reporter="destination",response_code!~"5..",{{ selector }}}'
_ISTIO_DURATION = (
    'istio_request_duration_milliseconds_bucket{reporter="destination",{{ selector }}}'
)

BUILTIN_TEMPLATES: dict[str, MetricQuery] = {
    "istio-error-rate": MetricQuery(
        name="istio-error-rate", kind=MetricKind.RATIO, total=_ISTIO_REQUESTS, bad=_ISTIO_5XX
    ),
    "istio-success-rate": MetricQuery(
        name="istio-success-rate",
        kind=MetricKind.RATIO,
        total=_ISTIO_REQUESTS,
        good=_ISTIO_NOT_5XX,
    ),
    "istio-latency": MetricQuery(
        name="istio-latency", kind=MetricKind.HISTOGRAM, buckets=_ISTIO_DURATION, unit_seconds=0.001
    ),
}

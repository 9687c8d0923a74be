"""Which series of one counter selector another selects: a part counted from the whole.

A ratio's part is most often its total with one more matcher: Istio's errors are
`istio_requests_total{...,response_code=~"5.."}`, its total `istio_requests_total{...}`.
The total's raw samples hold every series of the part, so the part can be counted from
them (`metrics.increase.CumulativeIncrease`'s parts) instead of read again. `narrowing`
says when that is exact: both selectors parse (a metric name and `name op "value"`
matchers, nothing else), the part has every matcher of the total, and each matcher it adds
can be evaluated here as Prometheus evaluates it:

* `=` and `!=` compare the label's value (`""` for a label the series lacks, as in PromQL);
* `=~` and `!~` match the whole value against a regular expression made only of letters,
  digits, `_ : / - .`, space, `| * + ? ( )` and classes of letters, digits, `_` and `-`: in
  that subset Python's `re` and Prometheus' RE2 agree, anchored at both ends. A value with
  a line break, for an expression with `.`, cannot be told (Prometheus 3 lets `.` match it,
  2 does not): the part is then read as its own selector.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

LabelKey = tuple[tuple[str, str], ...]
Narrowing = Callable[[LabelKey], bool | None]

_METRIC_NAME = re.compile(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*")
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}
_PLAIN_REGEX = re.compile(r"(?:[A-Za-z0-9_:/ .|*+?()-]|\[[A-Za-z0-9_-]+\])*")


@dataclass(frozen=True)
class Matcher:
    """One label matcher: `name op "value"`."""

    name: str
    op: str
    value: str


def parse_selector(text: str) -> frozenset[Matcher] | None:
    """The matchers of a plain series selector (its metric name as `__name__ = name`), or
    None when `text` is anything else (a range, an offset, a function, an escape other than
    `\\\\ \\" \\n \\r \\t`, a quote other than `"`)."""
    head = _METRIC_NAME.match(text)
    assert head is not None  # (every part of it is optional)
    matchers: set[Matcher] = set()
    if head.group(1):
        matchers.add(Matcher("__name__", "=", head.group(1)))
    at = head.end()
    if at < len(text):
        if text[at] != "{" or not text.rstrip().endswith("}"):
            return None
        inner, at = text[at + 1 : len(text.rstrip()) - 1], 0
        while at < len(inner) and inner[at:].strip():
            found = _MATCHER.match(inner, at)
            if found is None:
                return None
            value = _unescape(found.group(3))
            if value is None:
                return None
            matchers.add(Matcher(found.group(1), found.group(2), value))
            at = found.end()
            if at < len(inner):
                if inner[at] != ",":
                    return None
                at += 1
    return frozenset(matchers) if matchers else None


def _unescape(literal: str) -> str | None:
    out, chars = [], iter(literal)
    for char in chars:
        if char == "\\":
            escaped = _ESCAPES.get(next(chars, ""))
            if escaped is None:
                return None
            char = escaped
        out.append(char)
    return "".join(out)


def _test(matcher: Matcher) -> Callable[[str], bool | None] | None:
    """`matcher` as a test of one label value (None: it cannot be evaluated here; the test
    answers None for a value it cannot tell)."""
    value = matcher.value
    if matcher.op == "=":
        return lambda v: v == value
    if matcher.op == "!=":
        return lambda v: v != value
    if not _PLAIN_REGEX.fullmatch(value) or "(?" in value:
        return None
    try:
        pattern = re.compile(value)
    except re.error:
        return None  # Prometheus says what is wrong with it, when the part is read itself
    dot = "." in value
    negated = matcher.op == "!~"

    def test(v: str) -> bool | None:
        if dot and ("\n" in v or "\r" in v):
            return None
        return (pattern.fullmatch(v) is None) if negated else (pattern.fullmatch(v) is not None)

    return test


def narrowing(whole: str, part: str) -> Narrowing | None:
    """A test of a series of `whole` (its label key): whether `part` selects it too (None:
    it cannot be told for that series). None when `part` is not `whole` with matchers that
    can be evaluated here (module docstring)."""
    whole_matchers, part_matchers = parse_selector(whole), parse_selector(part)
    if whole_matchers is None or part_matchers is None or whole == part:
        return None
    if not whole_matchers <= part_matchers:
        return None
    extra = sorted(part_matchers - whole_matchers, key=lambda m: (m.name, m.op, m.value))
    tests = [(m.name, _test(m)) for m in extra]
    if any(test is None for _, test in tests):
        return None
    checks = [(name, test) for name, test in tests if test is not None]

    def selects(key: LabelKey) -> bool | None:
        labels = dict(key)
        for name, test in checks:
            verdict = test(labels.get(name, ""))
            if not verdict:
                return verdict
        return True

    return selects

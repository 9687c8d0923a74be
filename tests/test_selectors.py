"""metrics.selectors: when a ratio's part can be counted from its total's series, and which.

Whether the counts equal Prometheus' own is proven on a real Prometheus
(`test_prometheus_range_read.py`, the parts); here, the parsing and the cases refused.
"""

from __future__ import annotations

import pytest

from metrics.selectors import Matcher, narrowing, parse_selector

TOTAL = 'istio_requests_total{reporter="destination",destination_service_name="checkout"}'


def _with(matcher: str) -> str:
    return TOTAL[:-1] + "," + matcher + "}"


def _series(**labels: str) -> tuple[tuple[str, str], ...]:
    return (("__name__", "istio_requests_total"), ("reporter", "destination"),
            ("destination_service_name", "checkout"), *labels.items())


def test_a_plain_selector_is_its_matchers() -> None:
    assert parse_selector('x{a="1", b=~"2.." ,c!="3",d!~"4",}') == {
        Matcher("__name__", "=", "x"), Matcher("a", "=", "1"), Matcher("b", "=~", "2.."),
        Matcher("c", "!=", "3"), Matcher("d", "!~", "4"),
    }
    assert parse_selector('{a="x"}') == {Matcher("a", "=", "x")}
    assert parse_selector(" up ") == {Matcher("__name__", "=", "up")}
    assert parse_selector('x{a="q\\"\\\\\\n"}') == {Matcher("__name__", "=", "x"), Matcher("a", "=", 'q"\\\n')}


@pytest.mark.parametrize("text", [
    "", "x[5m]", "x offset 5m", "sum(x)", "x{a='b'}", 'x{a="b"} or y', 'x{a="\\u0041"}',
    'x{a="b"', 'x{a="b" c="d"}', 'x{a=~"b"} @ 100', "x{}y", "{}",
])
def test_anything_else_is_not_parsed(text: str) -> None:
    assert parse_selector(text) is None


def test_istio_errors_and_successes_are_counted_from_all_requests() -> None:
    errors = narrowing(TOTAL, _with('response_code=~"5.."'))
    successes = narrowing(TOTAL, _with('response_code!~"5.."'))
    assert errors is not None and successes is not None
    assert errors(_series(response_code="503")) is True
    assert errors(_series(response_code="200")) is False
    assert errors(_series(response_code="5030")) is False, "anchored at both ends"
    assert errors(_series()) is False, "an absent label is empty"
    assert successes(_series(response_code="200")) is True
    assert successes(_series()) is True


def test_equality_matchers_and_absent_labels() -> None:
    only = narrowing(TOTAL, _with('response_code="503"'))
    not_ok = narrowing(TOTAL, _with('response_code!="200"'))
    empty = narrowing(TOTAL, _with('grpc_status=""'))
    assert only is not None and not_ok is not None and empty is not None
    assert [only(_series(response_code=c)) for c in ("503", "500", "")] == [True, False, False]
    assert [not_ok(_series(response_code=c)) for c in ("200", "503")] == [False, True]
    assert not_ok(_series()) is True
    assert empty(_series()) is True and empty(_series(grpc_status="0")) is False


@pytest.mark.parametrize("part", [
    TOTAL,  # the same selector: one read already
    'istio_requests_total{reporter="source",destination_service_name="checkout",response_code="503"}',
    'istio_requests_total{destination_service_name="checkout",response_code="503"}',
    'istio_errors_total{reporter="destination",destination_service_name="checkout"}',
    _with('response_code=~"5\\\\d\\\\d"'),  # an escape: outside the evaluated subset
    _with('response_code=~"(?i)5.."'),
    _with('response_code=~"5.{2}"'),
    _with('response_code=~"[^2].."'),
    _with('response_code=~"5[]"'),
    _with('response_code=~"5(("'),  # Prometheus says what is wrong, to the part's own read
    "sum(" + TOTAL + ")",
])
def test_a_part_that_is_not_the_total_with_plain_matchers_is_read_itself(part: str) -> None:
    assert narrowing(TOTAL, part) is None


def test_a_line_break_under_a_dot_cannot_be_told() -> None:
    # Prometheus 3 lets `.` match a line break, Prometheus 2 does not: such a series makes
    # the part be read as its own selector (None); without a `.` there is no doubt
    dotted = narrowing(TOTAL, _with('path=~"/a.b"'))
    plain = narrowing(TOTAL, _with('path=~"/a|/b"'))
    assert dotted is not None and plain is not None
    assert dotted(_series(path="/a\nb")) is None
    assert dotted(_series(path="/axb")) is True
    assert plain(_series(path="/a\n")) is False

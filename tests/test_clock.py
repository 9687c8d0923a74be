"""The one RFC 3339 parser (CLI and web provider alike) and the domain-error → HTTP table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from analyzer.api.errors import http_error
from analyzer.clock import SystemClock, format_time, parse_time
from analyzer.runs.errors import (
    BadInput,
    OverBudget,
    QueryRejected,
    RunBusy,
    StoreDown,
    UnknownAnalysis,
)


def test_a_time_with_an_offset_is_read_in_utc() -> None:
    assert parse_time("2026-11-26T10:00:00+02:00") == datetime(2026, 11, 26, 8, tzinfo=UTC)


def test_a_time_without_a_zone_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="has no zone: end it with Z"):
        parse_time("2026-11-26T10:00:00")


def test_format_time_writes_utc_with_z() -> None:
    east = timezone(timedelta(hours=1))
    assert format_time(datetime(2026, 11, 26, 11, tzinfo=east)) == "2026-11-26T10:00:00Z"


def test_the_system_clock_is_timezone_aware() -> None:
    assert SystemClock().now().tzinfo is not None


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (UnknownAnalysis("x", field="analysis"), 404, "unknown_analysis"),
        (BadInput("x", code="invalid_start", field="start"), 422, "invalid_start"),
        (RunBusy("x"), 503, "run_busy"),
        (OverBudget("x"), 503, "look_budget_exceeded"),
        (StoreDown("x"), 503, "store_unavailable"),
        (QueryRejected("x"), 500, "query_rejected"),
    ],
)
def test_domain_errors_map_to_status_codes(error: Exception, status: int, code: str) -> None:
    answer = http_error(error)  # type: ignore[arg-type]
    assert (answer.status, answer.code) == (status, code)

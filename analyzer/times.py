"""Times as users give them: one rule for the command line and the HTTP API.

A time is RFC 3339 with a zone (`2026-11-26T10:00:00Z`, `…+01:00`); a time without a zone is
refused rather than guessed. Times outside 1970–2999 are refused (they cannot be data Verdict
reads, and some of them overflow when converted to UTC). A time may lie at most `CLOCK_SKEW`
in the future (clocks differ a little); further ahead there is no data yet.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

CLOCK_SKEW = timedelta(seconds=30)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
EXAMPLE = "2026-11-26T10:00:00Z"
_SHAPE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
# an unencoded `+` in a query string arrives as a space: `...T10:00:00 01:00`
_SPACE_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$", re.IGNORECASE)


def parse_time(value: str) -> datetime:
    """An RFC 3339 time with `Z` or an offset, in UTC; ValueError (a readable reason) otherwise."""
    text = value.strip()
    if not _SHAPE.match(text):
        raise ValueError(f"expected an RFC 3339 time such as {EXAMPLE}")
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    text = _SPACE_OFFSET.sub(r"\1+\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"expected an RFC 3339 time such as {EXAMPLE}") from None
    if parsed.tzinfo is None:
        raise ValueError("the time needs a zone: end it with Z or an offset such as +01:00")
    try:
        utc = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError("the time must lie between 1970 and 2999")
    return utc


def in_future(value: datetime, now: datetime) -> bool:
    """Whether `value` lies further in the future than clocks may differ (`CLOCK_SKEW`)."""
    return value > now + CLOCK_SKEW

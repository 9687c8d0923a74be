"""Time in one place: the `Clock` every loop and service is handed, and RFC 3339 in and out.

The rule for times given by users (`verdict analyze --start/--end`, the web provider's `start`):
an RFC 3339 time **with a zone** (`Z` or an offset such as `+01:00`). A time without a zone is
refused with a clear error, never guessed: a machine's local zone and UTC differ by hours, and a
window off by hours judges the wrong traffic.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
# an unencoded `+` in a query string arrives as a space: `...T10:00:00 01:00`
_SPACE_OFFSET = re.compile(r"(T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}:\d{2})$", re.IGNORECASE)

EXAMPLE_TIME = "2026-11-26T10:00:00Z"
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
"""Times outside [EARLIEST, LATEST) are refused: no data lies there, and some overflow in UTC."""
CLOCK_SKEW = timedelta(seconds=30)
"""A user's time may lie this far in the future (clocks differ a little), no further."""


class Clock(Protocol):
    """Where a loop or a service reads the time (and waits): real, or set by a test."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait `seconds` (a simulated clock just moves on)."""
        ...


class SystemClock:
    """The real time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def parse_time(value: str) -> datetime:
    """An RFC 3339 time with a zone (`Z` or an offset), in UTC. Raises ValueError otherwise.

    A time without a zone is refused (see the module docstring).
    """
    text = value.strip()
    if not _RFC3339_START.match(text):
        raise ValueError(f"expected an RFC 3339 time such as {EXAMPLE_TIME}, got {value[:64]!r}")
    if text[-1] in "zZ":
        text = text[:-1] + "+00:00"
    text = _SPACE_OFFSET.sub(r"\1+\2", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"expected an RFC 3339 time such as {EXAMPLE_TIME}, got {value[:64]!r}"
        ) from None
    if parsed.tzinfo is None:
        raise ValueError(
            f"{value[:64]!r} has no zone: end it with Z (UTC) or an offset such as +01:00"
        )
    try:
        utc = parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST <= utc < LATEST:
        raise ValueError(f"{value[:64]!r} is not a time between 1970 and 2999")
    return utc


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as answers, the store and the CLI show times."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

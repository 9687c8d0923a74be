"""Durations as users write them: `30s`, `500ms`, `1m30s`, `2h`, or a bare number of seconds."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SECONDS = 366 * 86400.0
"""No duration Verdict reads (interval, timeout, TTL, latency) is longer than a year."""


def parse_seconds(value: object) -> float:
    """Seconds in `value`; raises ValueError with a readable message on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s or 500ms, got {value!r}")
    if isinstance(value, int) and abs(value) > MAX_SECONDS:
        # an integer past what a float holds (10**400) raises OverflowError in float()
        sign = "not be negative" if value < 0 else "be at most 366 days"
        digits = value.bit_length() * 0.30103
        raise ValueError(f"a duration must {sign}, got a number of about 10^{digits:.0f}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise ValueError(f"expected a duration such as 30s, 500ms or 1m30s, got {value!r}")
    else:
        raise ValueError(f"expected a duration such as 30s or 500ms, got {value!r}")
    if seconds != seconds or seconds < 0:
        raise ValueError(f"a duration must not be negative, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ValueError(f"a duration must be at most 366 days, got {value!r}")
    return seconds


def format_seconds(seconds: float) -> str:
    """A short human form: `450ms`, `30s`, `2m30s`."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest}s" if rest else f"{minutes}m"

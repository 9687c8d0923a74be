"""Bounds on the work one request may ask for, with errors that say how to stay inside them."""

from __future__ import annotations

import math
from datetime import timedelta

MAX_INTERVALS = 2000
"""Intervals (looks) per analysis: a day of 1-minute intervals fits, ten years of 30 s does not."""
MAX_ANALYSIS_FILE_BYTES = 1024 * 1024
"""An analysis file is a few hundred bytes; anything past 1 MiB is a mistake."""


def window_error(window: timedelta, interval_seconds: float) -> str | None:
    """Why a window of this length and interval asks for too many looks, or None."""
    intervals = window.total_seconds() / interval_seconds
    if intervals <= MAX_INTERVALS:
        return None
    return (
        f"the window holds {intervals:.0f} intervals of {interval_seconds:g}s; an analysis "
        f"looks at most {MAX_INTERVALS} times: widen `interval` to at least "
        f"{_round_up(window.total_seconds() / MAX_INTERVALS)} or shorten the window"
    )


def _round_up(seconds: float) -> str:
    if seconds > 7200:
        return f"{math.ceil(seconds / 3600)}h"
    if seconds > 120:
        return f"{math.ceil(seconds / 60)}m"
    return f"{math.ceil(seconds)}s"


MIN_ROLLOUT_INTERVAL = 1.0
"""Seconds between looks of a rollout that moves traffic (`verdict canary run`) at the least."""


def rollout_looks_error(interval_seconds: float, periods: dict[str, float]) -> str | None:
    """Why a rollout's `interval` would mean an absurd number of looks, or None: below
    `MIN_ROLLOUT_INTERVAL`, or more than `MAX_INTERVALS` looks in one of `periods` (the key
    that names a period, such as `rollout.stepDuration`, to its seconds)."""
    if interval_seconds < MIN_ROLLOUT_INTERVAL:
        return (
            f"interval: a rollout looks at most once a second, got {interval_seconds:g}s: "
            f"give at least {MIN_ROLLOUT_INTERVAL:g}s"
        )
    for key, seconds in periods.items():
        looks = seconds / interval_seconds
        if looks > MAX_INTERVALS:
            return (
                f"{key} of {seconds:g}s holds {looks:.0f} intervals of {interval_seconds:g}s; "
                f"a step looks at most {MAX_INTERVALS} times: widen `interval` to at least "
                f"{_round_up(seconds / MAX_INTERVALS)} or shorten {key}"
            )
    return None

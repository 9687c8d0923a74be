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

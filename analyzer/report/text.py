"""Shared wording of the HTML and Markdown reports."""

from __future__ import annotations

import math
from datetime import datetime

from analyzer.notify.events import format_time
from analyzer.notify.events import show_value as _show_value

__all__ = ["headline", "requests_shown", "show", "step_name", "when"]


def when(value: datetime | None) -> str:
    return "-" if value is None else format_time(value)


def headline(outcome: str) -> str:
    return outcome.upper().replace("-", " ")


def step_name(step: int | None) -> str:
    return "whole run" if step is None else f"step {step}"


def show(value: float | None, unit: str) -> str:
    """A figure as people read it (`5.1 %`, `250 ms`); `n/a` when there is none or it is not a
    finite number."""
    return _show_value(value if value is not None and math.isfinite(value) else None, unit)


def requests_shown(count: object) -> str:
    """A request count with thousands separators; `n/a` when it is not a finite number."""
    if isinstance(count, bool) or not isinstance(count, int | float):
        return "n/a"
    try:
        number = float(count)
    except OverflowError:
        return "n/a"
    return f"{number:,.0f}" if math.isfinite(number) else "n/a"

"""Shared wording of the HTML and Markdown reports."""

from __future__ import annotations

from datetime import datetime

from analyzer.notify.events import format_time


def show(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "seconds":
        return f"{value * 1000:.0f} ms"
    return f"{value * 100:.3g} %"


def when(value: datetime | None) -> str:
    return "-" if value is None else format_time(value)


def headline(outcome: str) -> str:
    return outcome.upper().replace("-", " ")


def step_name(step: int | None) -> str:
    return "whole run" if step is None else f"step {step}"

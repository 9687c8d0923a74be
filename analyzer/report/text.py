"""Shared wording of the HTML and Markdown reports."""

from __future__ import annotations

from datetime import datetime

from analyzer.notify.events import format_time
from analyzer.notify.events import show_value as show

__all__ = ["headline", "show", "step_name", "when"]


def when(value: datetime | None) -> str:
    return "-" if value is None else format_time(value)


def headline(outcome: str) -> str:
    return outcome.upper().replace("-", " ")


def step_name(step: int | None) -> str:
    return "whole run" if step is None else f"step {step}"

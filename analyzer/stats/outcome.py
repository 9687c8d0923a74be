"""The three answers a check can give."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"

"""The answers a check can give: a breach of an SLO (a promotion criterion) holds."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"
    HOLD = "hold"

"""How an analysis spends its false-abort budget `alpha` across its metrics (written once).

`alpha` covers the whole analysis: 60 % goes to the critical metrics and 40 % to the rest, each
share split equally within its group (all of it to one group when the other is empty). Within a
metric, the checks are not split: their FAIL e-values are averaged with weights
(`analyzer.looks.CHECK_WEIGHTS`), so a check used `weight × metric alpha` when it alone decides.
`beta`, the false-promote rate of each check at its pass bound, is not split at all: a pass needs
every check to pass (an intersection-union test).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

CRITICAL_SHARE = 0.6


class Budgeted(Protocol):
    """A metric as the budget sees it: critical or not."""

    @property
    def critical(self) -> bool: ...


def metric_alphas(metrics: Sequence[Budgeted], alpha: float) -> list[float]:
    """Each metric's share of `alpha`, in the order given; the shares sum to `alpha`."""
    critical = sum(1 for m in metrics if m.critical)
    rest = len(metrics) - critical
    if critical and rest:
        per_critical, per_rest = CRITICAL_SHARE * alpha / critical, (1 - CRITICAL_SHARE) * alpha / rest
    else:
        per_critical = per_rest = alpha / max(len(metrics), 1)
    return [per_critical if m.critical else per_rest for m in metrics]

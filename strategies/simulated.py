"""A simulated traffic router and clock: weights change in simulated time, nothing is sent anywhere.

The demo and the benchmarks use them; the weight history feeds the simulated metric source.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timedelta


class SimulatedClock:
    def __init__(self, start: datetime) -> None:
        self._now = start

    def now(self) -> datetime:
        return self._now

    def sleep(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class SimulatedRouter:
    """Records every weight change with the clock's time; `weight_at(t)` replays the history."""

    def __init__(self, clock: SimulatedClock, initial_percent: int = 0) -> None:
        self._clock = clock
        self._times: list[datetime] = [datetime.min.replace(tzinfo=clock.now().tzinfo)]
        self._weights: list[int] = [initial_percent]

    def set_weight(self, canary_percent: int) -> None:
        if not 0 <= canary_percent <= 100:
            raise ValueError("canary weight must lie between 0 and 100")
        self._times.append(self._clock.now())
        self._weights.append(canary_percent)

    def weight(self) -> int:
        return self._weights[-1]

    def weight_at(self, t: datetime) -> float:
        index = bisect.bisect_right(self._times, t) - 1
        return float(self._weights[max(index, 0)])

"""The traffic router protocol: set and read the canary's share of traffic."""

from __future__ import annotations

from typing import Protocol


class TrafficRouter(Protocol):
    def set_weight(self, canary_percent: int) -> None:
        """Send `canary_percent` % of traffic to the canary and the rest to the stable version."""
        ...

    def weight(self) -> int:
        """The canary's current share in percent."""
        ...

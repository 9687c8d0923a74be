"""How `verdict serve` behaves: the run service's settings plus the API's bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.runs import RunSettings


@dataclass(frozen=True)
class ServeSettings(RunSettings):
    """The run settings (look budget, run TTL, cleanup, start limits) and the API's token."""

    token: str | None = None
    """Bearer token required on the API (None: no authentication)."""

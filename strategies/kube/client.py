"""What every part that talks to the Kubernetes API shares: the errors of an API that cannot be
reached, and the clock the strategies wait on (the client itself: `strategies.kube.api`)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import urllib3.exceptions

from strategies.kube.errors import KubeUnreachable

__all__ = ["NETWORK_ERRORS", "Clock", "KubeUnreachable"]


NETWORK_ERRORS: tuple[type[BaseException], ...] = (OSError, urllib3.exceptions.HTTPError)
"""What the official client raises when the API server cannot be reached."""


class Clock(Protocol):
    """Where the strategies read the time and wait (the same shape as Verdict's clocks)."""

    def now(self) -> datetime: ...
    def sleep(self, seconds: float) -> None: ...

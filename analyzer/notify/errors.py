"""Named errors of the notifiers."""

from __future__ import annotations


class NotifyError(Exception):
    """A notification could not be delivered (unreachable, timed out, or answered an error).

    `retry` says whether sending it again may help (5xx, 429, network) or not (4xx).
    """

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class NotifyConfigError(ValueError):
    """A notification setting that cannot be used (no URL, unreadable token file, ...)."""

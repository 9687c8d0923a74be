"""Named errors of the reports."""

from __future__ import annotations


class ReportError(Exception):
    """A report that cannot be made."""


class RunNotInStore(ReportError, KeyError):
    """No run with this id in the store (never stored, or expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "no such run"

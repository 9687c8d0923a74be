"""Named errors of the run store; callers match on these."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every run-store error."""


class StoreUnavailable(StoreError):
    """The store cannot be used right now: unreachable, read-only, full, locked, or broken.

    The web provider answers HTTP 503 (Argo records an Error and asks again); the look does not
    count.
    """


class StoreConfigError(StoreError, ValueError):
    """A store URL that names no usable store (unknown scheme, missing path, bad option)."""


class RunNotFound(StoreError, KeyError):
    """No run with this id (never started, or expired)."""

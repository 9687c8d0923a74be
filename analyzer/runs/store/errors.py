"""Named errors of the run store; callers match on these."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every run-store error."""


class StoreUnavailable(StoreError):
    """The store cannot be used right now: unreachable, read-only, full, locked, or broken.

    The web provider answers HTTP 503 (Argo records an Error and asks again); the look does not
    count.
    """


class RunUnreadable(StoreUnavailable):
    """A stored run that cannot be read back (a column that is not the JSON Verdict wrote, or
    not of its shape): the store was changed by hand or damaged. Its looks answer 503 with this
    message and `verdict runs show` exits 5; lists leave it out (and log it).

    A look on its key is refused rather than started afresh: the row may hold a sticky
    failure, and a fresh run would forget it (a later pass could then promote a canary that
    failed). Argo counts the 503s as errors and stops the analysis after its error limit."""

    def __init__(self, run_id: str, problem: str) -> None:
        super().__init__(
            f"run {run_id} in the run store cannot be read ({problem}): repair or delete its "
            "row; its looks are refused until then"
        )
        self.run_id = run_id


class StoreConfigError(StoreError, ValueError):
    """A store URL that names no usable store (unknown scheme, missing path, bad option)."""


class RunNotFound(StoreError, KeyError):
    """No run with this id (never started, or expired)."""

"""Named errors of the run service; every way in (HTTP, controller, CLI) maps them itself.

Each error has a stable `code` (the same word in logs, JSON errors and metrics) and, for bad
input, the `field` at fault. The classes say who must act:

* `UnknownAnalysis`, `BadInput`: the caller asked wrongly (HTTP 404 / 422);
* `CannotJudge` and its kinds: Verdict cannot judge right now, ask again (HTTP 503);
* `QueryRejected`: the analysis' query is wrong (HTTP 500: fix the analysis file).
"""

from __future__ import annotations


class RunError(Exception):
    """Base class of the run service's errors."""

    code = "run_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field


class UnknownAnalysis(RunError):
    """No analysis with this name was loaded."""

    code = "unknown_analysis"


class BadInput(RunError):
    """A request value is missing or invalid (`code` says which rule, `field` which value)."""

    code = "invalid_field"


class CannotJudge(RunError):
    """Verdict cannot judge right now; the look does not count. Ask again later."""

    code = "cannot_judge"


class RunBusy(CannotJudge):
    """Another look of the same run held it for the whole look budget."""

    code = "run_busy"


class OverBudget(CannotJudge):
    """The look's deadline passed before the metrics were fetched and judged."""

    code = "look_budget_exceeded"


class RunExpired(CannotJudge):
    """The run was deleted (expired) while it was being looked at."""

    code = "run_expired"


class SourceDown(CannotJudge):
    """Prometheus could not be reached or gave an answer Verdict cannot use."""

    code = "prometheus_unavailable"


class StoreDown(CannotJudge):
    """The run store cannot be used right now."""

    code = "store_unavailable"


class QueryRejected(RunError):
    """Prometheus rejected the analysis' query (a mistake in the analysis file)."""

    code = "query_rejected"

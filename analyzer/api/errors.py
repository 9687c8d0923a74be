"""The run service's domain errors as HTTP answers: one table, status by kind of error."""

from __future__ import annotations

from analyzer.api.models import ApiError
from analyzer.runs.errors import BadInput, CannotJudge, QueryRejected, RunError, UnknownAnalysis
from analyzer.runs.requests import NotActionable, RunEnded, UnknownRun

STATUS: tuple[tuple[type[RunError], int], ...] = (
    (UnknownAnalysis, 404),
    (UnknownRun, 404),
    (RunEnded, 409),  # a person's request to a run no loop drives any more
    (NotActionable, 409),
    (BadInput, 422),
    (CannotJudge, 503),  # Argo records an Error and asks again in 10 s
    (QueryRejected, 500),  # the analysis file is wrong: fix it
)


def http_error(error: RunError) -> ApiError:
    """The JSON error answer of a domain error (500 for a kind this table does not know)."""
    status = next((code for kind, code in STATUS if isinstance(error, kind)), 500)
    return ApiError(status, error.code, error.message, field=error.field)

"""`POST /api/v1/runs/{id}/actions`: a person's promote, abort, pause or resume of a running
canary, for tools (chat bots, incident tooling): the same request `verdict canary abort` writes
(`analyzer.runs.requests`), behind the API token.

Answers 202 with the recorded request (the running canary acts on it at its next look), 404 for
an unknown run, 409 for a run that has ended or is not a standalone canary, 422 for a bad body,
503 when the run store cannot be used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Path
from fastapi.params import Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from analyzer.api.errors import http_error
from analyzer.api.limits import has_lone_surrogate
from analyzer.api.models import ApiError, ErrorBody
from analyzer.clock import Clock
from analyzer.runs.errors import RunError
from analyzer.runs.requests import MAX_BY, MAX_REASON, request_action
from analyzer.runs.store import RunStore, StoreUnavailable


class ActionBody(BaseModel):
    """A person's request to a running canary."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["promote", "abort", "pause", "resume"] = Field(
        description="promote: 100 % to the canary now (a manual promotion, recorded as such); "
        "abort: all traffic back on stable; pause: hold the canary at its weight; resume: go on."
    )
    by: str = Field(min_length=1, max_length=MAX_BY, description="Who asks (a person's name).")
    reason: str = Field(default="", max_length=MAX_REASON, description="Why, in a few words.")

    @field_validator("by", "reason")
    @classmethod
    def _text(cls, value: str) -> str:
        if has_lone_surrogate(value):
            raise ValueError("holds a lone UTF-16 surrogate, which is not text")
        return value

    @field_validator("by")
    @classmethod
    def _someone(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("say who asks (a name)")
        return value


class RecordedRequest(BaseModel):
    id: str
    action: str
    by: str
    reason: str
    at: str = Field(description="When it was recorded (RFC 3339, UTC).")


class ActionAccepted(BaseModel):
    """HTTP 202: recorded; the running canary acts on it at its next look."""

    run: str
    request: RecordedRequest


_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "The body is not JSON."),
        (401, "Missing or wrong bearer token."),
        (404, "No run with this id."),
        (409, "The run has ended, or is not a standalone canary run."),
        (422, "A field is missing or invalid; `error.field` names it."),
        (503, "The run store cannot be used right now; ask again."),
    )
}


def add_action_routes(
    app: FastAPI, store: RunStore, clock: Clock, dependencies: Sequence[Depends]
) -> None:
    """The actions endpoint on `app`; `dependencies`: the app's own (its bearer token)."""

    @app.post(
        "/api/v1/runs/{run_id}/actions",
        status_code=202,
        response_model=ActionAccepted,
        responses=_RESPONSES,
        dependencies=list(dependencies),
        tags=["runs"],
        summary="Ask a running canary to promote, abort, pause or resume",
    )
    def run_action(run_id: Annotated[str, Path(max_length=64)], body: ActionBody) -> JSONResponse:
        try:
            request = request_action(
                store, run_id, body.action, body.by, body.reason, now=clock.now()
            )
        except RunError as error:
            raise http_error(error) from None
        except StoreUnavailable as error:
            raise ApiError(503, "store_unavailable", str(error)) from None
        return JSONResponse({"run": run_id, "request": request.as_dict()}, status_code=202)

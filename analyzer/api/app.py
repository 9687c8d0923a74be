"""The web provider's HTTP app: Argo Rollouts asks `/api/v1/verdict`, Verdict answers JSON.

HTTP only: parse the request, call the run service (`analyzer.runs.RunService`), map its domain
errors to status codes (`analyzer.api.errors`), render. Every answer is JSON, errors included
(`{"error": {"code", "message", "field"}}`): 4xx for bad input, 503 when Verdict cannot judge
right now (Argo records an Error and asks again in 10 s), 200 with the verdict otherwise.
"""

from __future__ import annotations

import functools
import hmac
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, Protocol

import anyio
import anyio.to_thread
import structlog
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from analyzer.api.actions import add_action_routes
from analyzer.api.errors import http_error
from analyzer.api.limits import (
    MAX_BODY_BYTES,
    MAX_EXTRAS,
    BodyLimit,
    StampArrival,
    arrival,
    has_lone_surrogate,
)
from analyzer.api.models import (
    ANALYSIS_DOC,
    CANARY_DOC,
    DNS_LABEL,
    DNS_SUBDOMAIN,
    LABEL_VALUE,
    NAMESPACE_DOC,
    ROLLOUT_DOC,
    STABLE_DOC,
    START_DOC,
    ApiError,
    ErrorBody,
    VerdictAnswer,
    VerdictRequest,
)
from analyzer.api.settings import ServeSettings
from analyzer.clock import Clock, SystemClock
from analyzer.notify import Notifier
from analyzer.redaction import Redactor
from analyzer.runs import (
    Look,
    LookRequest,
    RunError,
    RunService,
    SourceFactory,
    Telemetry,
    run_json,
)
from analyzer.runs.service import MAX_VALUE_LENGTH
from analyzer.runs.store import RunStore, StoreUnavailable
from analyzer.spec import AnalysisSpec

_log = structlog.get_logger()
LOOK_THREADS = 64
"""Looks computed at once by one process (the run service bounds Prometheus fetches further)."""
PROBE_THREADS = 4
_KNOWN_QUERY_KEYS = {"analysis", "namespace", "rollout", "canaryHash", "stableHash", "start"}
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "Malformed request (e.g. a body that is not JSON)."),
        (401, "Missing or wrong bearer token."),
        (404, "No analysis with this name."),
        (413, f"The body is larger than {MAX_BODY_BYTES} bytes."),
        (422, "A field is missing or invalid; `error.field` names it."),
        (503, "Verdict cannot judge right now (Prometheus or the run store); ask again."),
    )
}


_NOT_JSON: dict[str, Any] = {
    "model": ErrorBody,
    "description": "The body is not sent as JSON (`Content-Type: application/json`).",
}


class CompactJSON(JSONResponse):
    """JSON without spaces: Argo stores the answer in every measurement."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, separators=(",", ":"), ensure_ascii=False)
        # a lone surrogate cannot be UTF-8: `\\udXXX` keeps the document valid JSON
        return text.encode("utf-8", "backslashreplace")


def _error(error: ApiError, redactor: Redactor) -> CompactJSON:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return CompactJSON(redactor.value(error.body()), status_code=error.status, headers=headers)


def _extras(items: Mapping[str, Any]) -> dict[str, str]:
    """The placeholder values of a call: at most `MAX_EXTRAS`, text only (422 otherwise)."""
    if len(items) > MAX_EXTRAS:
        raise ApiError(
            422,
            "too_many_fields",
            f"{len(items)} extra fields; a call carries at most {MAX_EXTRAS} placeholder values",
        )
    for name, value in items.items():
        if has_lone_surrogate(name) or has_lone_surrogate(str(value)):
            field = name.encode("utf-8", "backslashreplace").decode("utf-8")[:80]
            raise ApiError(
                422,
                "invalid_field",
                f"{field}: holds a lone UTF-16 surrogate, which is not text",
                field=field,
            )
    return {name: str(value) for name, value in items.items()}


def create_app(
    *,
    analyses: Mapping[str, AnalysisSpec],
    store: RunStore,
    sources: SourceFactory,
    clock: Clock | None = None,
    settings: ServeSettings | None = None,
    notifiers: Mapping[str, Notifier] | None = None,
    redactor: Redactor | None = None,
) -> FastAPI:
    """The HTTP app over a run service built from the given parts (nothing global: tests hand
    in real ones). `notifiers`: per analysis name.

    `redactor` masks secrets (Prometheus URL user-info, credential headers) in every error
    answer and in `/readyz`; by default it masks URL user-info and the API token.
    """
    settings = settings or ServeSettings()
    service = RunService(
        analyses=analyses,
        store=store,
        sources=sources,
        clock=clock or SystemClock(),
        settings=settings,
        telemetry=Telemetry(store.count),
        notifiers=notifiers,
    )
    return web_app(service, token=settings.token, redactor=redactor)


ReadinessCheck = Callable[[], dict[str, str]]
"""More readiness checks for `/readyz` (name -> `ok` or what is wrong), e.g. the controller's
watch."""


class Companion(Protocol):
    """Something that runs while the app serves (the controller): started after the app starts,
    stopped before the run service closes."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


def web_app(
    service: RunService,
    *,
    token: str | None = None,
    readiness: Sequence[ReadinessCheck] = (),
    companions: Sequence[Companion] = (),
    redactor: Redactor | None = None,
) -> FastAPI:
    """The HTTP app over `service` (shared with the controller when it runs in this process).
    `token`: the bearer token the API requires (None: none). `companions` run while the app
    serves. `redactor` masks secrets in error answers and `/readyz` (default: URL user-info and
    the token). The app closes the service when it stops."""
    redactor = redactor or Redactor.with_secrets([token])
    store = service.store
    telemetry = service.telemetry

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for companion in companions:
            companion.start()
        try:
            yield
        finally:
            for companion in reversed(companions):
                companion.stop()
            service.close()

    app = FastAPI(
        lifespan=lifespan,
        title="Verdict",
        summary="Always-valid canary verdicts for Argo Rollouts (web metric provider).",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    bearer = HTTPBearer(auto_error=False, description="`--token-file` / VERDICT_API_TOKEN")

    async def authenticated(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> None:
        if token is None:
            return
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
            raise ApiError(
                401, "unauthorized", "missing or wrong bearer token (Authorization: Bearer ...)"
            )

    protected = [Depends(authenticated)]

    # Looks run in threads of their own (at most LOOK_THREADS at once; more wait, within their
    # budget, which starts when the call arrived); readiness probes never wait behind them.
    looks = anyio.CapacityLimiter(LOOK_THREADS)
    probes = anyio.CapacityLimiter(PROBE_THREADS)
    budget = service.settings.look_budget

    async def answer(http: Request, request: LookRequest) -> CompactJSON:
        deadline = arrival(http) + budget
        try:
            look: Look = await anyio.to_thread.run_sync(
                functools.partial(service.look, request, deadline=deadline), limiter=looks
            )
        except RunError as error:
            raise http_error(error) from None
        assert look.run.answer is not None
        return CompactJSON({"result": look.run.answer}, headers={"Cache-Control": "no-store"})

    @app.post(
        "/api/v1/verdict",
        response_model=VerdictAnswer,
        responses={**_ERRORS, 415: _NOT_JSON},
        dependencies=protected,
        tags=["verdict"],
        summary="Look once more at a run and answer its verdict (JSON body)",
    )
    async def verdict_post(request: Request, body: VerdictRequest) -> Response:
        extras = _extras(body.model_extra or {})
        return await answer(
            request,
            LookRequest(
                analysis=body.analysis,
                namespace=body.namespace,
                rollout=body.rollout,
                canary_hash=body.canary_hash,
                stable_hash=body.stable_hash,
                start=body.start,
                extras=extras,
            )
        )

    @app.get(
        "/api/v1/verdict",
        response_model=VerdictAnswer,
        responses=_ERRORS,
        dependencies=protected,
        tags=["verdict"],
        summary="Look once more at a run and answer its verdict (query string)",
    )
    async def verdict_get(
        request: Request,
        analysis: Annotated[
            str, Query(min_length=1, max_length=MAX_VALUE_LENGTH, description=ANALYSIS_DOC)
        ],
        namespace: Annotated[
            str, Query(max_length=63, pattern=DNS_LABEL, description=NAMESPACE_DOC)
        ],
        rollout: Annotated[
            str, Query(max_length=253, pattern=DNS_SUBDOMAIN, description=ROLLOUT_DOC)
        ],
        canary_hash: Annotated[
            str,
            Query(alias="canaryHash", max_length=63, pattern=LABEL_VALUE, description=CANARY_DOC),
        ],
        stable_hash: Annotated[
            str,
            Query(alias="stableHash", max_length=63, pattern=LABEL_VALUE, description=STABLE_DOC),
        ],
        start: Annotated[str | None, Query(max_length=64, description=START_DOC)] = None,
    ) -> Response:
        extras = _extras(
            {k: v for k, v in request.query_params.items() if k not in _KNOWN_QUERY_KEYS}
        )
        return await answer(
            request,
            LookRequest(
                analysis=analysis,
                namespace=namespace,
                rollout=rollout,
                canary_hash=canary_hash,
                stable_hash=stable_hash,
                start=start,
                extras=extras,
            )
        )

    @app.get(
        "/api/v1/runs",
        dependencies=protected,
        responses=_ERRORS,
        tags=["runs"],
        summary="The most recently looked-at runs",
    )
    def list_runs(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        try:
            runs = store.runs(limit=limit)
        except StoreUnavailable as error:
            raise ApiError(503, "store_unavailable", str(error)) from None
        return CompactJSON({"runs": [run_json(r, full=False) for r in runs]})

    @app.get(
        "/api/v1/runs/{run_id}",
        dependencies=protected,
        responses=_ERRORS,
        tags=["runs"],
        summary="One run: its identity, looks, sticky failures and last answer",
    )
    def show_run(run_id: Annotated[str, Path(max_length=64)]) -> Response:
        try:
            run = store.get(run_id)
        except StoreUnavailable as error:
            raise ApiError(503, "store_unavailable", str(error)) from None
        if run is None:
            raise ApiError(404, "unknown_run", f"no run with id {run_id!r}", field="run_id")
        return CompactJSON(run_json(run, full=True))

    @app.get(
        "/api/v1/runs/{run_id}/report",
        dependencies=protected,
        responses=_ERRORS,
        tags=["runs"],
        summary="One run's report: steps, looks, each metric over time with its bounds",
        description="`format`: html (a self-contained page with one plot per metric), json, md.",
    )
    def run_report(
        run_id: Annotated[str, Path(max_length=64)],
        format: Annotated[Literal["html", "json", "md"], Query()] = "html",
    ) -> Response:
        from analyzer.report import (
            MEDIA_TYPES,
            ReportFormat,
            RunNotInStore,
            load_report,
            render_report,
        )

        fmt = ReportFormat(format)
        try:
            text = render_report(load_report(store, run_id), fmt)
        except StoreUnavailable as error:
            raise ApiError(503, "store_unavailable", str(error)) from None
        except RunNotInStore:
            raise ApiError(
                404, "unknown_run", f"no run with id {run_id!r}", field="run_id"
            ) from None
        return Response(text, media_type=MEDIA_TYPES[fmt])

    @app.get("/healthz", tags=["operations"], summary="Alive (no dependencies checked)")
    def healthz() -> Response:
        return CompactJSON({"status": "ok"})

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="Ready: the run store and every Prometheus answer",
        responses={503: {"model": ErrorBody, "description": "A dependency is not reachable."}},
    )
    async def readyz() -> Response:
        def ready_checks() -> dict[str, str]:
            checks = service.readiness()
            for check in readiness:
                checks.update(check())
            return checks

        checks = await anyio.to_thread.run_sync(ready_checks, limiter=probes)
        checks = redactor.value(checks)
        broken = {name: state for name, state in checks.items() if state != "ok"}
        if not broken:
            return CompactJSON({"status": "ready", "checks": checks})
        message = "not ready: " + "; ".join(f"{name}: {state}" for name, state in broken.items())
        return CompactJSON(
            {"error": {"code": "not_ready", "message": message}, "checks": checks},
            status_code=503,
        )

    @app.get(
        "/metrics",
        dependencies=protected,
        tags=["operations"],
        summary="Verdict's own metrics, Prometheus text format",
        response_class=PlainTextResponse,
        responses={401: _ERRORS[401]},
    )
    def metrics() -> Response:
        return Response(
            telemetry.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    add_action_routes(app, store, service.clock, protected)
    _install_error_handlers(app, redactor)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(StampArrival)
    _document_analyses(app, sorted(service.analyses))
    return app


def _field_of(location: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    return ".".join(parts) if parts else None


def _install_error_handlers(app: FastAPI, redactor: Redactor) -> None:
    """Every error answer is JSON with `error.code` and `error.message` (FastAPI's default
    handlers answer `{"detail": ...}`)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return _error(error, redactor)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        problems = list(error.errors())
        first = problems[0] if problems else {"loc": (), "msg": "invalid request", "type": ""}
        field = _field_of(tuple(first.get("loc", ())))
        kind = str(first.get("type", ""))
        message = str(first.get("msg", "invalid"))
        media = request.headers.get("content-type", "")[:100]
        if request.method == "POST" and kind != "missing" and "json" not in media.lower():
            # FastAPI reads a body of any other type as bytes: say what is wrong with it
            problem = ApiError(
                415,
                "unsupported_media_type",
                "the body must be JSON sent with `Content-Type: application/json`, got "
                + (f"`Content-Type: {media}`" if media else "no Content-Type"),
            )
        elif kind == "json_invalid":
            problem = ApiError(400, "bad_json", f"the body is not valid JSON: {message}")
        elif kind == "missing" and field is None:
            problem = ApiError(422, "missing_body", "a JSON object body is required")
        elif kind == "missing":
            problem = ApiError(422, "missing_field", f"{field}: required", field=field)
        elif field is None:
            problem = ApiError(422, "invalid_body", f"the body: {message}")
        else:
            problem = ApiError(422, "invalid_field", f"{field}: {message}", field=field)
        return _error(problem, redactor)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed"}
        code = codes.get(error.status_code, f"http_{error.status_code}")
        message = str(error.detail) if error.detail else "error"
        if error.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}"
        return CompactJSON(
            {"error": {"code": code, "message": message}},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> Response:
        _log.exception("unexpected error", path=request.url.path)
        return CompactJSON(
            {"error": {"code": "internal", "message": "internal error; see Verdict's log"}},
            status_code=500,
        )


def _document_analyses(app: FastAPI, names: list[str]) -> None:
    """List the loaded analyses as the `analysis` field's values in the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        if names:
            body = schema.get("components", {}).get("schemas", {}).get("VerdictRequest", {})
            prop = body.get("properties", {}).get("analysis")
            if isinstance(prop, dict):
                prop["enum"] = names
            get = schema.get("paths", {}).get("/api/v1/verdict", {}).get("get", {})
            for parameter in get.get("parameters", []):
                if parameter.get("name") == "analysis":
                    parameter.setdefault("schema", {})["enum"] = names
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

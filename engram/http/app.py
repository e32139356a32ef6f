"""The HTTP API as one ASGI application: the routes derived from the event types and the verb
catalogue, the pattern stream, problem details for every error, API keys in front of all of it
(``/mcp`` included).

Layers, outermost first: ``Authentication`` (no key, no entry: 401) → ``BodyLimit`` (413,
415) → FastAPI (routes; its validation errors and engram's errors become problem details).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route
from starlette.types import ASGIApp

from engine.errors import EngramError
from engram.http.authentication import Authentication
from engram.http.event_routes import add_event_routes
from engram.http.gateway import Gateway
from engram.http.keys import KeyRing
from engram.http.limits import DEFAULT_MAX_BODY_BYTES, BodyLimit
from engram.http.problems import (
    MEDIA_TYPE,
    Problem,
    ProblemError,
    field_errors,
    problem_body,
    problem_for,
)
from engram.http.query_routes import add_query_routes, json_response
from engram.http.seed_routes import add_seed_routes
from engram.http.sse import add_sse_routes

__all__ = ["McpMount", "create_app"]

log = structlog.get_logger(__name__)

_STATUS_KINDS = {
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


@dataclass(frozen=True, slots=True)
class McpMount:
    """An ASGI app served at ``/mcp`` (the MCP server's streamable HTTP transport), and the
    context it must run within (its session manager), entered in the gateway's lifespan."""

    app: ASGIApp
    lifespan: Callable[[], contextlib.AbstractAsyncContextManager[Any]] | None = None


def _problem_response(problem: ProblemError, request: Request) -> Response:
    return Response(
        problem_body(problem, request.url.path),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=problem.headers,
    )


def _validation_problem(request: Request, exc: RequestValidationError) -> ProblemError:
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        where = next(e for e in errors if e.get("type") == "json_invalid")
        ctx = where.get("ctx") or {}
        detail = f"the body is not JSON: {ctx.get('error', 'decode error')}"
        return ProblemError(400, "malformed_json", detail)
    route = request.scope.get("route")
    kind = "invalid_event" if getattr(route, "name", "").startswith("event") else "usage"
    items = []
    for error in errors:
        loc = list(error.get("loc", ()))
        path = loc[1:] if loc[:1] == ["body"] else loc
        items.append((path, str(error.get("msg", "invalid"))))
    fields = field_errors(items)
    detail = "; ".join(f"{f['field'] or 'body'}: {f['detail']}" for f in fields)
    return ProblemError(422, kind, detail, errors=fields)


def _documented_problems(app: FastAPI) -> None:
    """The OpenAPI document says what refusals are: every 4XX and 5XX a Problem in
    application/problem+json (instead of FastAPI's own 422 shape, which is never sent)."""
    default = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = default()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                if path.startswith("/v1/"):
                    responses["4XX"] = {"description": "refused (RFC 9457)", "content": content}
                responses["5XX"] = {"description": "failed (RFC 9457)", "content": content}
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _install_handlers(app: FastAPI) -> None:
    async def on_engram(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EngramError)
        problem = problem_for(exc)
        if problem.status >= 500:
            log.warning("request failed", path=request.url.path, kind=problem.kind, error=str(exc))
        return _problem_response(problem, request)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _problem_response(_validation_problem(request, exc), request)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        kind = _STATUS_KINDS.get(exc.status_code, "http_error")
        problem = ProblemError(exc.status_code, kind, str(exc.detail), headers=exc.headers)
        return _problem_response(problem, request)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.error("unexpected failure", path=request.url.path, error=repr(exc))
        problem = ProblemError(500, "failure", "the gateway failed unexpectedly (logged)")
        return _problem_response(problem, request)

    app.add_exception_handler(EngramError, on_engram)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


def create_app(
    gateway: Gateway,
    keys: KeyRing,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    mcp: McpMount | None = None,
) -> FastAPI:
    """The HTTP API over ``gateway``, for the keys of ``keys``; ``mcp`` mounted at ``/mcp``
    behind the same keys when given."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:  # warm the connection; a NATS that is away now is a 503 until it is back
            await gateway.client()
        except EngramError as exc:
            log.warning("gateway started without NATS (503 until it is reachable)", error=str(exc))
        async with contextlib.AsyncExitStack() as stack:
            if mcp is not None and mcp.lifespan is not None:
                await stack.enter_async_context(mcp.lifespan())
            try:
                yield
            finally:
                app.state.closing.set()
                await gateway.close()

    app = FastAPI(
        title="engram",
        summary="event-sourced memory for AI agents: write events, ask the verb catalogue",
        version="1",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.gateway = gateway
    app.state.closing = asyncio.Event()
    """Set when the gateway stops: open event streams end (engram.http.server sets it first)."""
    _install_handlers(app)
    _documented_problems(app)
    add_query_routes(app.router)  # first: queries are the most frequent requests
    add_event_routes(app.router)
    add_seed_routes(app.router)
    add_sse_routes(app.router)

    @app.get("/healthz", tags=["health"], summary="the gateway reaches NATS and the stream")
    async def healthz() -> Response:
        # Unauthenticated: says whether, never why (the reason can name the server's paths).
        try:
            await gateway.client()
        except EngramError:
            log.info("healthz: the gateway cannot reach NATS or the stream")
            raise ProblemError(
                503, "nats_unavailable", "the gateway cannot reach NATS or the stream"
            ) from None
        return json_response({"status": "ok"})

    # MCP (streamable HTTP) at /mcp: engram.mcp.http's app, built by engram.http.server's
    # mcp_mount. A route, not a mount: /mcp itself, no redirect to /mcp/. The Authentication
    # middleware below covers it like every /v1 route (it reads request.state.engram_key).
    if mcp is not None:
        app.router.routes.append(Route("/mcp", mcp.app, include_in_schema=False))

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(Authentication, keys=keys)
    return app

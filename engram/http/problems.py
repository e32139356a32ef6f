"""Errors as RFC 9457 problem details (``application/problem+json``) carrying engram's kind.

Every refusal of the gateway is one JSON object: ``type`` (a tag URI naming the kind),
``title``, ``status``, ``detail``, ``instance`` (the request's path), ``kind`` (engram's error
kind, e.g. ``usage``, ``invalid_event``, ``engine_unavailable``) and, for bad input, ``errors``:
one entry per offending field with its ``pointer`` (a JSON Pointer into the body, RFC 6901) and
its dotted ``field``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from starlette.types import Send

from engine.errors import (
    ConcurrencyConflictError,
    ConfigurationError,
    ConnectionFailedError,
    EngineUnavailableError,
    EngramError,
    ForbiddenError,
    ForbiddenEventTypeError,
    InvalidEventError,
    NamespaceMismatchError,
    PayloadTooLargeError,
    PermissionDeniedError,
    PublishFailedError,
    QueryError,
    StreamNotFoundError,
    UnknownEventTypeError,
    UsageError,
)

__all__ = [
    "MEDIA_TYPE",
    "RETRY_AFTER_S",
    "FieldProblem",
    "Problem",
    "ProblemError",
    "field_errors",
    "problem_body",
    "problem_for",
    "send_problem",
    "type_uri",
]

MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_S = 2
"""What ``Retry-After`` says when the engine or NATS is away (seconds)."""

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}

# Most specific first: the first class an error is an instance of decides.
_BY_CLASS: tuple[tuple[type[EngramError], int, str], ...] = (
    (ForbiddenEventTypeError, 403, "forbidden_event_type"),
    (UnknownEventTypeError, 404, "unknown_event_type"),
    (NamespaceMismatchError, 422, "namespace_mismatch"),
    (InvalidEventError, 422, "invalid_event"),
    (UsageError, 422, "usage"),
    (PermissionDeniedError, 403, "permission_denied"),
    (EngineUnavailableError, 503, "engine_unavailable"),
    (ForbiddenError, 403, "forbidden"),
    (QueryError, 502, "failure"),
    (StreamNotFoundError, 503, "stream_not_found"),
    (ConnectionFailedError, 503, "nats_unavailable"),
    (PayloadTooLargeError, 413, "payload_too_large"),
    (ConcurrencyConflictError, 409, "conflict"),
    (PublishFailedError, 503, "publish_failed"),
    (ConfigurationError, 500, "configuration"),
)
_RETRY = {503}


class FieldProblem(BaseModel):
    """One offending field of a request."""

    pointer: str
    """A JSON Pointer (RFC 6901) into the body, as a URI fragment: ``#/data/success``."""
    field: str
    """The same, dotted: ``data.success`` (``query.min_sequence`` for a query parameter)."""
    detail: str


class Problem(BaseModel):
    """Problem details (RFC 9457), as every refusal of the API answers them
    (``application/problem+json``; documentation only)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    kind: str
    """engram's error kind: ``usage``, ``invalid_event``, ``unauthorized``,
    ``namespace_forbidden``, ``operator_only``, ``forbidden_event_type``, ``payload_too_large``,
    ``engine_unavailable``, ``nats_unavailable``, ..."""
    errors: list[FieldProblem] | None = None


def type_uri(kind: str) -> str:
    """The problem ``type`` of an engram kind: a tag URI (RFC 4151), not meant to be fetched."""
    return f"tag:engram,2026:problem:{kind}"


class ProblemError(EngramError):
    """A refusal the gateway answers as problem details (raised by routes and middleware)."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.errors = tuple(errors)
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        if status in _RETRY:
            self.headers.setdefault("Retry-After", str(RETRY_AFTER_S))


def problem_body(problem: ProblemError, instance: str) -> bytes:
    """The JSON body of ``problem`` for a request to ``instance`` (its path)."""
    body: dict[str, Any] = {
        "type": type_uri(problem.kind),
        "title": _TITLES.get(problem.status, "Error"),
        "status": problem.status,
        "detail": problem.detail,
        "instance": instance,
        "kind": problem.kind,
    }
    if problem.errors:
        body["errors"] = list(problem.errors)
    body.update(problem.extra)
    return json.dumps(body, ensure_ascii=False).encode()


def _pointer(path: Sequence[str | int]) -> str:
    escaped = (str(p).replace("~", "~0").replace("/", "~1") for p in path)
    return "#/" + "/".join(escaped)


def field_errors(items: Iterable[tuple[Sequence[str | int], str]]) -> list[dict[str, str]]:
    """``errors`` entries from (location within the body, message) pairs."""
    return [
        {"pointer": _pointer(path), "field": ".".join(str(p) for p in path), "detail": message}
        for path, message in items
    ]


def _problem_lines(problems: Sequence[str]) -> list[dict[str, str]]:
    # InvalidEventError.problems reads "data.success: Input should be a valid boolean".
    out: list[dict[str, str]] = []
    for line in problems:
        field, sep, message = line.partition(": ")
        path = field.split(".") if sep else []
        out.extend(field_errors([(path, message if sep else line)]))
    return out


def problem_for(error: EngramError) -> ProblemError:
    """The problem an engram error is: its status and kind by its class (most specific first);
    an InvalidEventError's problems become ``errors``."""
    if isinstance(error, ProblemError):
        return error
    status, kind = next(
        ((status, kind) for cls, status, kind in _BY_CLASS if isinstance(error, cls)),
        (500, "failure"),
    )
    errors = _problem_lines(error.problems) if isinstance(error, InvalidEventError) else []
    return ProblemError(status, kind, str(error), errors=errors)


async def send_problem(send: Send, problem: ProblemError, instance: str) -> None:
    """Answer an ASGI request with ``problem`` (for middleware, below the routes)."""
    body = problem_body(problem, instance)
    headers = [
        (b"content-type", MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode()) for k, v in problem.headers.items()),
    ]
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

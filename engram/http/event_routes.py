"""Writes: one route per event type agents publish, and friendly routes named like the SDK's
verbs.

- ``POST /v1/namespaces/{namespace}/events/<type>`` for every type of
  ``engine.events.registry.AGENT_TYPES``: the body is the envelope without what the route fixes
  (``type``, ``namespace``, ``schema_version``): ``{"data": {...}, "id"?, "agent_id"?,
  "session_id"?, "occurred_at"?}``. Any other type is refused: a type only the engine
  publishes (``pattern.learned``, ...) with 403 ``forbidden_event_type``, an unknown one 404.
- friendly routes (``FRIENDLY``): the payload's fields flat in the body, with the envelope's
  ``agent_id``, ``session_id``, ``event_id`` and ``occurred_at`` beside them, an id the path
  names (``/decisions/{decision_id}/outcome``) taken from the path.

- ``POST /v1/namespaces/{namespace}/events``: a batch, ``{"events": [{"type", "data", "id"?,
  "agent_id"?, "session_id"?, "occurred_at"?}, ...]}`` (at most ``MAX_BATCH``), every event
  validated before any is sent (422 naming ``events.<i>...``), then appended with the SDK's
  bounded window of acks in flight (``publish_many``): 201 ``{"stored": [...]}`` when every one
  was acknowledged; otherwise 503 ``publish_failed`` with each event's outcome in ``results``
  (the ones not stored are retried with their event ids: stored once).

Every write answers once JetStream acknowledged the append: 201 ``{"sequence", "event_id",
"type", "namespace", "duplicate": false}``, or 200 with ``duplicate: true`` when the stream
already held that event id (a retry: stored once). The event id is the body's, else the
``Idempotency-Key`` header, else a new UUIDv7; retrying with the same one is always safe.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Path, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, create_model

from engine.errors import (
    ConcurrencyConflictError,
    ForbiddenEventTypeError,
    PayloadTooLargeError,
    PublishFailedError,
    UnknownEventTypeError,
)
from engine.events import EVENT_TYPES, Event, EventData, make_event
from engine.events.codec import explain_validation_error
from engine.events.registry import AGENT_TYPES, require_agent_type
from engine.stream import AppendResult
from engram.http.access import Tenant, gateway_of
from engram.http.problems import ProblemError, field_errors
from engram.http.query_routes import json_response

__all__ = ["FRIENDLY", "MAX_BATCH", "Friendly", "Stored", "add_event_routes"]

MAX_BATCH = 1_000
"""The most events one batch write holds."""

EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")]
Label = Annotated[str, Field(min_length=1, max_length=256)]
IDEMPOTENCY_HEADER = "Idempotency-Key"
Endpoint = Callable[..., Awaitable[Response]]


class Stored(BaseModel):
    """Where a write landed: it is in the stream (JetStream acknowledged it)."""

    sequence: int
    """The stream sequence: pass it as ``min_sequence`` to a query to read this write."""
    event_id: str
    type: str
    namespace: str
    duplicate: bool
    """True when the stream already held this event id (the write was a retry)."""


class BatchEvent(BaseModel):
    """One event of a batch: its type (one agents publish) and the envelope the route does not
    fix."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, Field(min_length=1, max_length=64)]
    data: dict[str, Any]
    id: EventId | None = Field(None, description="the event id (default: a new UUIDv7)")
    agent_id: Label | None = None
    session_id: Label | None = None
    occurred_at: AwareDatetime | None = Field(None, description="default: now")


class EventBatch(BaseModel):
    """Events to append in one request (validated whole before any is sent)."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[BatchEvent], Field(min_length=1, max_length=MAX_BATCH)]


class StoredBatch(BaseModel):
    """Where each event of a batch landed, in order: all in the stream."""

    stored: list[Stored]


@dataclass(frozen=True, slots=True)
class Friendly:
    """A write route named like an SDK verb: ``path`` under ``/v1/namespaces/{namespace}``."""

    event_type: str
    path: str
    summary: str
    path_field: str | None = None
    """The payload field the path holds (``{decision_id}``), absent from the body."""


FRIENDLY: tuple[Friendly, ...] = (
    Friendly("workflow.executed", "/workflows", "record a workflow run (SDK store_workflow)"),
    Friendly("task.executed", "/executions", "record an executed task (SDK store_execution)"),
    Friendly("task.executed", "/memory/store", "store a task execution (seed 001's store)"),
    Friendly("decision.logged", "/decisions", "log a decision (SDK log_decision)"),
    Friendly(
        "decision.outcome",
        "/decisions/{decision_id}/outcome",
        "how a decision turned out (SDK record_outcome)",
        "decision_id",
    ),
    Friendly(
        "pattern.feedback",
        "/patterns/{pattern_id}/feedback",
        "judge a learned pattern (SDK give_feedback)",
        "pattern_id",
    ),
    Friendly(
        "pattern.feedback",
        "/memory/patterns/{pattern_id}/feedback",
        "judge a learned pattern (seed 001's feedback)",
        "pattern_id",
    ),
    Friendly("session.started", "/sessions", "open a session (SDK start_session)"),
    Friendly(
        "session.ended",
        "/sessions/{session_id}/end",
        "close a session (SDK end_session)",
        "session_id",
    ),
    Friendly("knowledge.added", "/knowledge", "add a long-term document (SDK add_knowledge)"),
)

_ENVELOPE_FIELDS: dict[str, Any] = {
    "agent_id": (Label | None, None),
    "event_id": (EventId | None, Field(None, description="default: a new UUIDv7")),
    "occurred_at": (AwareDatetime | None, Field(None, description="default: now")),
}


@cache
def envelope_model(event_type: str) -> type[BaseModel]:
    """The body of ``/events/<type>``: the envelope without what the route fixes."""
    data_model = EVENT_TYPES[event_type].model
    return create_model(
        data_model.__name__ + "Envelope",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"A {event_type} event to append: {data_model.__doc__}",
        data=(data_model, ...),
        id=(EventId | None, Field(None, description="the event id (default: a new UUIDv7)")),
        agent_id=(Label | None, None),
        session_id=(Label | None, None),
        occurred_at=(AwareDatetime | None, Field(None, description="default: now")),
    )


@cache
def flat_model(event_type: str, path_field: str | None) -> type[BaseModel]:
    """The body of a friendly route: the payload's fields (but the path's) and the envelope's
    options, flat. The payload is validated again by its own model (its validators too)."""
    data_model = EVENT_TYPES[event_type].model
    fields: dict[str, Any] = {
        name: (info.annotation, info)
        for name, info in data_model.model_fields.items()
        if name != path_field
    }
    fields.update(_ENVELOPE_FIELDS)
    if "session_id" not in data_model.model_fields:
        fields["session_id"] = (Label | None, None)
    suffix = "" if path_field is None else "Of" + "".join(p.title() for p in path_field.split("_"))
    return create_model(
        data_model.__name__ + "Body" + suffix,
        __config__=ConfigDict(extra="forbid"),
        __doc__=data_model.__doc__,
        **fields,
    )


def _payload(event_type: str, values: Mapping[str, Any], prefix: str) -> EventData:
    model = EVENT_TYPES[event_type].model
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        problems = explain_validation_error(exc)
        items = []
        for line in problems:
            field, _, message = line.partition(": ")
            path = [p for p in f"{prefix}{field}".split(".") if p]
            items.append((path, message))
        raise ProblemError(
            422,
            "invalid_event",
            f"invalid {event_type}: " + "; ".join(problems),
            errors=field_errors(items),
        ) from None


def _event_id(body_id: str | None, header: str | None) -> str | None:
    if body_id is not None and header is not None and body_id != header:
        detail = f"the body's event id {body_id!r} and {IDEMPOTENCY_HEADER} {header!r} differ"
        raise ProblemError(422, "invalid_event", detail)
    return body_id if body_id is not None else header


async def _store(
    request: Request,
    event_type: str,
    namespace: str,
    data: EventData,
    *,
    event_id: str | None,
    agent_id: str | None,
    session_id: str | None,
    occurred_at: datetime | None,
) -> Response:
    event = make_event(
        data,
        namespace=namespace,
        agent_id=agent_id,
        session_id=session_id,
        occurred_at=occurred_at,
        event_id=event_id,
    )
    try:
        result = await gateway_of(request).append(event)
    except PublishFailedError as exc:
        if isinstance(exc, ConcurrencyConflictError | PayloadTooLargeError):
            raise
        # Not acknowledged: maybe stored, maybe not. The same event id again is stored once.
        raise ProblemError(
            503,
            "publish_failed",
            f"{exc}; retry with event_id {event.id!r} (stored once)",
            extra={"event_id": event.id},
        ) from exc
    stored = Stored(
        sequence=result.sequence,
        event_id=result.event_id,
        type=event_type,
        namespace=namespace,
        duplicate=result.duplicate,
    )
    return json_response(stored.model_dump(), 200 if result.duplicate else 201)


def _idempotency_param() -> inspect.Parameter:
    return inspect.Parameter(
        "idempotency_key",
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            str | None,
            Header(
                alias=IDEMPOTENCY_HEADER,
                description="the event id, when the body gives none: a retry with the same "
                "key is stored once",
            ),
        ],
    )


def _common(model: type[BaseModel], extra_path: str | None = None) -> list[inspect.Parameter]:
    params = [
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter("namespace", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Tenant),
    ]
    if extra_path is not None:
        params.append(
            inspect.Parameter(
                extra_path,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[str, Path()],
            )
        )
    params.append(
        inspect.Parameter(
            "body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[model, Body()]
        )
    )
    params.append(_idempotency_param())
    return params


def _typed_endpoint(event_type: str) -> Endpoint:
    async def endpoint(
        request: Request, namespace: str, body: Any, idempotency_key: str | None = None
    ) -> Response:
        ns = namespace  # checked against the key (Tenant) before the body was validated
        values = body.model_dump(exclude_unset=True)
        data = body.data  # validated by the payload's own model (the body's ``data`` field)
        return await _store(
            request,
            event_type,
            ns,
            data,
            event_id=_event_id(values.get("id"), idempotency_key),
            agent_id=values.get("agent_id"),
            session_id=values.get("session_id"),
            occurred_at=values.get("occurred_at"),
        )

    endpoint.__signature__ = inspect.Signature(_common(envelope_model(event_type)))  # type: ignore[attr-defined]
    return endpoint


def _friendly_endpoint(route: Friendly) -> Endpoint:
    model = flat_model(route.event_type, route.path_field)
    data_fields = set(EVENT_TYPES[route.event_type].model.model_fields)

    async def endpoint(
        request: Request, namespace: str, body: Any, idempotency_key: str | None = None, **path: str
    ) -> Response:
        ns = namespace  # checked against the key (Tenant) before the body was validated
        values = body.model_dump(exclude_unset=True)
        payload = {k: v for k, v in values.items() if k in data_fields}
        payload.update(path)
        data = _payload(route.event_type, payload, "")
        session_id = values.get("session_id")
        if "session_id" in data_fields:  # the session verbs: the envelope's is the session's
            session_id = getattr(data, "session_id", session_id)
        return await _store(
            request,
            route.event_type,
            ns,
            data,
            event_id=_event_id(values.get("event_id"), idempotency_key),
            agent_id=values.get("agent_id"),
            session_id=session_id,
            occurred_at=values.get("occurred_at"),
        )

    endpoint.__signature__ = inspect.Signature(_common(model, route.path_field))  # type: ignore[attr-defined]
    return endpoint


def _batch_event(index: int, item: BatchEvent, namespace: str) -> Event:
    """``item`` as an event of ``namespace``; raises the problem naming ``events.<index>``."""
    if item.type not in EVENT_TYPES:
        detail = (
            f"events.{index}.type: unknown event type {item.type!r}; agents publish "
            f"{', '.join(sorted(AGENT_TYPES))}"
        )
        raise ProblemError(
            422,
            "invalid_event",
            detail,
            errors=field_errors([(["events", str(index), "type"], detail)]),
        )
    try:
        require_agent_type(item.type)
    except ForbiddenEventTypeError as exc:
        raise ProblemError(403, "forbidden_event_type", f"events.{index}: {exc}") from None
    data = _payload(item.type, item.data, f"events.{index}.data.")
    return make_event(
        data,
        namespace=namespace,
        agent_id=item.agent_id,
        session_id=item.session_id,
        occurred_at=item.occurred_at,
        event_id=item.id,
    )


async def _store_batch(request: Request, namespace: Tenant, body: EventBatch) -> Response:
    ns = namespace  # checked against the key (Tenant) before the body was validated
    events = [_batch_event(i, item, ns) for i, item in enumerate(body.events)]
    results = await gateway_of(request).append_many(events)
    outcomes: list[dict[str, Any]] = []
    for event, result in zip(events, results, strict=True):
        if isinstance(result, AppendResult):
            outcomes.append(
                Stored(
                    sequence=result.sequence,
                    event_id=result.event_id,
                    type=event.type,
                    namespace=ns,
                    duplicate=result.duplicate,
                ).model_dump()
            )
        else:
            outcomes.append({"event_id": event.id, "type": event.type, "error": str(result)})
    failed = [o for o in outcomes if "error" in o]
    if failed:
        raise ProblemError(
            503,
            "publish_failed",
            f"{len(failed)} of {len(events)} events were not acknowledged (maybe stored, maybe "
            "not): send those again with their event ids (stored once); the others are stored",
            extra={"results": outcomes},
        )
    return json_response({"stored": outcomes}, 201)


async def _refuse_type(namespace: Tenant, event_type: str) -> Response:
    if event_type not in EVENT_TYPES:
        raise UnknownEventTypeError(
            f"unknown event type {event_type!r}; agents publish {', '.join(sorted(AGENT_TYPES))}",
            (f"type: unknown event type {event_type!r}",),
        )
    require_agent_type(event_type)  # raises ForbiddenEventTypeError for a derived type
    raise ForbiddenEventTypeError(f"{event_type} has no write route")  # pragma: no cover


def add_event_routes(router: APIRouter) -> None:
    created: dict[int | str, dict[str, Any]] = {
        201: {"model": Stored, "description": "stored (JetStream acknowledged it)"}
    }
    for event_type in sorted(AGENT_TYPES):
        router.add_api_route(
            f"/v1/namespaces/{{namespace}}/events/{event_type}",
            _typed_endpoint(event_type),
            methods=["POST"],
            status_code=201,
            name=f"event:{event_type}",
            summary=f"append a {event_type} event",
            tags=["events"],
            responses=created,
            response_class=Response,
        )
    for route in FRIENDLY:
        router.add_api_route(
            f"/v1/namespaces/{{namespace}}{route.path}",
            _friendly_endpoint(route),
            methods=["POST"],
            status_code=201,
            name=f"event:{route.event_type}:{route.path}",
            summary=route.summary,
            tags=["seed 001" if route.path.startswith("/memory/") else "events"],
            responses=created,
            response_class=Response,
        )
    router.add_api_route(
        "/v1/namespaces/{namespace}/events",
        _store_batch,
        methods=["POST"],
        status_code=201,
        name="events:batch",
        summary=f"append up to {MAX_BATCH:,} events of any agent types in one request",
        tags=["events"],
        responses={201: {"model": StoredBatch, "description": "every event stored"}},
        response_class=Response,
    )
    router.add_api_route(
        "/v1/namespaces/{namespace}/events/{event_type}",
        _refuse_type,
        methods=["POST"],
        name="event:refused",
        include_in_schema=False,
    )

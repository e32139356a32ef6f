"""``GET /v1/namespaces/{namespace}/patterns/stream``: a tenant's ``pattern.learned`` events as
Server-Sent Events.

Each event is ``id: <stream sequence>``, ``event: pattern.learned``, ``data: <the stored event
envelope, one line of JSON>``. A client that reconnects with ``Last-Event-ID: <sequence>`` (or
``?after=<sequence>``) gets every announcement stored after it, then the new ones; without it,
only new ones. The stream reads ``memory.pattern.learned.<namespace>`` only (an ordered
JetStream consumer on that one subject), for a namespace the key holds; what is not a
``pattern.learned`` of that namespace is not passed on. A comment line every 15 s keeps idle
connections open through proxies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from engram.http.access import Tenant, gateway_of
from engram.http.gateway import PATTERN_LEARNED, Announcement, Announcements
from engram.http.problems import ProblemError, field_errors

__all__ = ["PING_S", "add_sse_routes"]

PING_S = 15.0
"""Seconds between keep-alive comments on an idle stream."""
_POLL_S = 1.0
"""How often an idle stream looks whether the gateway is shutting down."""
RETRY_MS = 2_000
MAX_SEQUENCE = 2**63 - 1
"""The largest stream sequence JetStream can be asked to start after."""


def _resume_after(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is None:
        return after
    text = last_event_id.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > 20 or int(text) > MAX_SEQUENCE:
        detail = f"Last-Event-ID must be a stream sequence (a whole number), not {text!r}"
        raise ProblemError(422, "usage", detail, errors=field_errors([(["Last-Event-ID"], detail)]))
    return max(int(text), after or 0)


def _frame(item: Announcement, namespace: str) -> bytes | None:
    """The SSE frame of one stored message, or None when it is not a pattern.learned event of
    ``namespace`` (nothing else is passed on)."""
    try:
        event: Any = json.loads(item.body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if (
        not isinstance(event, dict)
        or event.get("type") != PATTERN_LEARNED
        or event.get("namespace") != namespace
    ):
        return None
    data = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
    return f"id: {item.sequence}\nevent: {PATTERN_LEARNED}\ndata: {data}\n\n".encode()


async def _frames(
    subscription: Announcements, namespace: str, closing: asyncio.Event
) -> AsyncIterator[bytes]:
    try:
        yield f"retry: {RETRY_MS}\n: {PATTERN_LEARNED} of {namespace}\n\n".encode()
        idle = 0.0
        while not closing.is_set():
            item = await subscription.next(_POLL_S)
            if item is None:
                idle += _POLL_S
                if idle >= PING_S:
                    idle = 0.0
                    yield b": ping\n\n"
                continue
            idle = 0.0
            frame = _frame(item, namespace)
            if frame is not None:
                yield frame
    finally:
        await subscription.close()


async def pattern_stream(
    request: Request,
    namespace: Tenant,
    last_event_id: Annotated[
        str | None,
        Header(alias="Last-Event-ID", description="resume after this stream sequence"),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, le=MAX_SEQUENCE, description="resume after this stream sequence")
    ] = None,
) -> StreamingResponse:
    ns = namespace
    start = _resume_after(last_event_id, after)
    subscription = await gateway_of(request).announcements(ns, start)
    closing: asyncio.Event = request.app.state.closing
    return StreamingResponse(
        _frames(subscription, ns, closing),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def add_sse_routes(router: APIRouter) -> None:
    router.add_api_route(
        "/v1/namespaces/{namespace}/patterns/stream",
        pattern_stream,
        methods=["GET"],
        name="stream:pattern.learned",
        summary="the namespace's pattern.learned events as Server-Sent Events",
        tags=["stream"],
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "id: stream sequence; event: pattern.learned; data: the event",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )

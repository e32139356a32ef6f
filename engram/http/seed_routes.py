"""Seed 001's memory endpoints, under a tenant: ``/v1/namespaces/{namespace}/memory/...``.

The seed's functions on the seed's paths, with engram's models (the catalogue's request and
reply models, not the seed's field names): ``search`` (similar past tasks), ``context`` (task
context with recommendations), ``patterns`` (``GET``, list the learned patterns),
``patterns/extract`` (one pattern pooled over matching task types). ``store`` and
``patterns/{pattern_id}/feedback`` are writes (``engram.http.event_routes.FRIENDLY``). The
seed's ``GET /memory/tasks/{task_id}/context`` is ``POST /memory/context`` with the task's
description: engram finds context by what a task is about, not by an id it may never have seen.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from engine.verbs import verb
from engram.http.access import Tenant
from engram.http.query_routes import (
    MIN_SEQUENCE_HEADER,
    answer_model,
    ask_verb,
    tenant_endpoint,
)

__all__ = ["SEED_QUERIES", "add_seed_routes"]

SEED_QUERIES: dict[str, str] = {
    "/memory/search": "search",
    "/memory/context": "task_context",
    "/memory/patterns/extract": "extract_pattern",
}
"""Seed path (POST) -> catalogued verb."""


async def _list_patterns(
    request: Request,
    namespace: Tenant,
    pattern_type: Annotated[str | None, Query(description="workflow, success or failure")] = None,
    limit: Annotated[int, Query(ge=1)] = 50,
    min_sequence: Annotated[int | None, Query(ge=1)] = None,
    min_sequence_header: Annotated[int | None, Header(alias=MIN_SEQUENCE_HEADER, ge=1)] = None,
) -> Response:
    fields: dict[str, object] = {"limit": limit}
    if pattern_type is not None:
        fields["pattern_type"] = pattern_type
    return await ask_verb(
        request, verb("list_patterns"), fields, namespace, (min_sequence, min_sequence_header)
    )


def add_seed_routes(router: APIRouter) -> None:
    for path, name in SEED_QUERIES.items():
        spec = verb(name)
        router.add_api_route(
            f"/v1/namespaces/{{namespace}}{path}",
            tenant_endpoint(spec),
            methods=["POST"],
            name=f"query:seed:{name}",
            summary=f"{spec.summary} (seed 001; the same as query/{name})",
            tags=["seed 001"],
            responses={200: {"model": answer_model(spec.reply)}},
            response_class=Response,
        )
    router.add_api_route(
        "/v1/namespaces/{namespace}/memory/patterns",
        _list_patterns,
        methods=["GET"],
        name="query:seed:list_patterns",
        summary="every learned pattern of the namespace, newest version of each (seed 001)",
        tags=["seed 001"],
        responses={200: {"model": answer_model(verb("list_patterns").reply)}},
        response_class=Response,
    )

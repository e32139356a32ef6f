"""One route per catalogued query verb, derived from ``engine.verbs.CATALOGUE``.

- a tenant's verb (scope ``tenant`` or ``either``): ``POST /v1/namespaces/{namespace}/query/
  <verb>``, asked on ``engram.query.<namespace>.<verb>``;
- an operator's verb (scope ``operator`` or ``either``): ``POST /v1/operator/query/<verb>``,
  operator keys only, asked on ``engram.query.<verb>`` (every namespace), or on the tenant's
  subject with ``?namespace=`` (a namespace the key holds).

The body is the verb's request model (the same pydantic model the engine validates with), the
answer its reply model plus ``consistency`` (``{sequence, stale}``) when the engine gives one.
``min_sequence`` (read your writes: the ``sequence`` a write answered) is a field of every
request, and may also come as a ``min_sequence`` query parameter or an ``Engram-Min-Sequence``
header; the highest given wins.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable
from functools import cache
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from pydantic import BaseModel, create_model

from engine.verbs import CATALOGUE, VerbSpec
from engine.verbs.replies import Consistency
from engram.http.access import (
    OperatorNamespace,
    Tenant,
    body_namespace,
    gateway_of,
    operator_only,
    tenant,
)
from engram.http.keys import ApiKey

__all__ = [
    "MIN_SEQUENCE_HEADER",
    "add_query_routes",
    "answer_model",
    "ask_verb",
    "json_response",
    "min_sequence_params",
    "tenant_endpoint",
]

MIN_SEQUENCE_HEADER = "Engram-Min-Sequence"
_MIN_SEQ_DOC = (
    "read your writes: answer once the projections this verb reads hold this stream sequence "
    "(the sequence a write answered); the highest of the body's, this and the other wins"
)
Endpoint = Callable[..., Awaitable[Response]]


@cache
def answer_model(reply: type[BaseModel]) -> type[BaseModel]:
    """The verb's reply model with ``consistency`` beside its fields (documentation only)."""
    return create_model(
        reply.__name__ + "Answer",
        __base__=reply,
        __doc__=(reply.__doc__ or reply.__name__) + " With the consistency the answer reflects.",
        consistency=(Consistency | None, None),
    )


def json_response(value: Any, status: int = 200) -> Response:
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(body, status_code=status, media_type="application/json")


def min_sequence_params() -> list[inspect.Parameter]:
    """The ``min_sequence`` query parameter and ``Engram-Min-Sequence`` header."""
    return [
        inspect.Parameter(
            "min_sequence_query",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                int | None, Query(alias="min_sequence", ge=1, description=_MIN_SEQ_DOC)
            ],
        ),
        inspect.Parameter(
            "min_sequence_header",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                int | None, Header(alias=MIN_SEQUENCE_HEADER, ge=1, description=_MIN_SEQ_DOC)
            ],
        ),
    ]


def _highest(values: Iterable[int | None]) -> int | None:
    given = [v for v in values if v is not None]
    return max(given) if given else None


async def ask_verb(
    request: Request,
    spec: VerbSpec,
    fields: dict[str, Any],
    namespace: str | None,
    min_sequences: Iterable[int | None] = (),
) -> Response:
    """Ask ``spec`` with ``fields`` about ``namespace`` (None: the operator's subject) and
    answer its reply as JSON. ``fields`` must not name another namespace (checked here)."""
    if namespace is not None:
        body_namespace(request, fields.pop("namespace", None), namespace)
    floor = _highest([fields.get("min_sequence"), *min_sequences])
    if floor is not None:
        fields["min_sequence"] = floor
    reply = await gateway_of(request).ask(spec.name, fields, namespace)
    return json_response(reply)


def _body_param(spec: VerbSpec) -> inspect.Parameter:
    model = spec.request
    optional = not any(field.is_required() for field in model.model_fields.values())
    if optional:  # a verb with no required parameter may be asked with no body at all
        return inspect.Parameter(
            "body",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[model | None, Body()],
        )
    return inspect.Parameter(
        "body", inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[model, Body()]
    )


def _fields(body: BaseModel | None) -> dict[str, Any]:
    return {} if body is None else body.model_dump(mode="json", exclude_unset=True)


def tenant_endpoint(spec: VerbSpec) -> Endpoint:
    """The endpoint asking a tenant's verb about the path's namespace."""

    async def endpoint(
        request: Request,
        namespace: str,
        body: BaseModel | None = None,
        min_sequence_query: int | None = None,
        min_sequence_header: int | None = None,
    ) -> Response:
        return await ask_verb(
            request, spec, _fields(body), namespace, (min_sequence_query, min_sequence_header)
        )

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            inspect.Parameter(
                "namespace", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Tenant
            ),
            _body_param(spec),
            *min_sequence_params(),
        ]
    )
    return endpoint


def _operator_endpoint(spec: VerbSpec) -> Endpoint:
    async def endpoint(
        request: Request,
        key: ApiKey,
        body: BaseModel | None = None,
        namespace: str | None = None,
        min_sequence_query: int | None = None,
        min_sequence_header: int | None = None,
    ) -> Response:
        fields = _fields(body)
        ns = namespace
        if ns is None and fields.get("namespace") is not None:  # metrics/workflows of one
            ns = tenant(request, fields["namespace"])
        return await ask_verb(request, spec, fields, ns, (min_sequence_query, min_sequence_header))

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            inspect.Parameter(
                "key",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=Annotated[ApiKey, Depends(operator_only(spec.name))],
            ),
            _body_param(spec),
            inspect.Parameter(
                "namespace",
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=OperatorNamespace,
            ),
            *min_sequence_params(),
        ]
    )
    return endpoint


def _responses(spec: VerbSpec) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": answer_model(spec.reply), "description": spec.summary}}


def add_query_routes(router: APIRouter) -> None:
    """The routes of every catalogued verb (a test checks that none is missing)."""
    for spec in CATALOGUE.values():
        if spec.scope in ("tenant", "either"):
            router.add_api_route(
                f"/v1/namespaces/{{namespace}}/query/{spec.name}",
                tenant_endpoint(spec),
                methods=["POST"],
                name=f"query:{spec.name}",
                summary=spec.summary,
                tags=["query"],
                responses=_responses(spec),
                response_class=Response,
            )
        if spec.scope in ("operator", "either"):
            router.add_api_route(
                f"/v1/operator/query/{spec.name}",
                _operator_endpoint(spec),
                methods=["POST"],
                name=f"query:operator:{spec.name}",
                summary=spec.summary + " (operator keys)",
                tags=["operator"],
                responses=_responses(spec),
                response_class=Response,
            )

"""What an authenticated key may touch: the namespaces it holds, and operator verbs only when
it is an operator key. Every route asks here before anything is sent to NATS.

The namespace of a request is the one in its path, compared as given (after the URL decoding
every router does) with the key's list: ``beta`` spelled ``%62eta``, ``*``, ``>``,
``alpha.beta`` or ``alpha,beta`` are not ``alpha``, so a key for alpha gets 403 for all of
them; no pattern or prefix ever matches. A body naming another namespace than its path is
refused too (the namespace never comes from an argument).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request

from engram.http.authentication import STATE_KEY
from engram.http.gateway import Gateway
from engram.http.keys import ApiKey
from engram.http.problems import ProblemError, field_errors

__all__ = [
    "OperatorNamespace",
    "Tenant",
    "body_namespace",
    "gateway_of",
    "key_of",
    "operator_key",
    "operator_only",
    "tenant",
]


def key_of(request: Request) -> ApiKey:
    """The key the Authentication middleware checked (401 if there is none: a route mounted
    outside it would be a bug, and must fail closed)."""
    key = getattr(request.state, STATE_KEY, None)
    if not isinstance(key, ApiKey):
        raise ProblemError(401, "unauthorized", "no API key was checked for this request")
    return key


def tenant(request: Request, namespace: str) -> str:
    """``namespace`` when the request's key holds it; 403 ``namespace_forbidden`` otherwise."""
    key = key_of(request)
    if not key.allows(namespace):
        raise ProblemError(
            403,
            "namespace_forbidden",
            f"API key {key.name!r} may not use namespace {namespace!r}",
        )
    return namespace


def operator_key(request: Request, verb: str) -> ApiKey:
    """The request's key when it is an operator key; 403 ``operator_only`` otherwise."""
    key = key_of(request)
    if not key.operator:
        raise ProblemError(
            403,
            "operator_only",
            f"{verb} is an operator verb: API key {key.name!r} is not an operator key "
            "(engram http keys add NAME --operator)",
        )
    return key


def body_namespace(request: Request, given: Any, namespace: str) -> None:
    """Refuse a body whose ``namespace`` differs from the path's: 403 when the key does not
    hold it, else 422 naming the field (a contradiction, not a choice)."""
    if given is None or given == namespace:
        return
    key = key_of(request)
    if not isinstance(given, str) or not key.allows(given):
        raise ProblemError(
            403,
            "namespace_forbidden",
            f"API key {key.name!r} may not use namespace {given!r} (the body's namespace)",
        )
    detail = f"the body names namespace {given!r}, the path {namespace!r}: omit it or agree"
    raise ProblemError(422, "usage", detail, errors=field_errors([(["namespace"], detail)]))


def gateway_of(request: Request) -> Gateway:
    gateway = request.app.state.gateway
    assert isinstance(gateway, Gateway)
    return gateway


def _allowed_namespace(
    request: Request,
    namespace: Annotated[
        str, Path(description="a namespace the API key holds (one NATS subject token)")
    ],
) -> str:
    return tenant(request, namespace)


Tenant = Annotated[str, Depends(_allowed_namespace)]
"""The path's ``{namespace}``, checked against the key before the body is validated (a key
for alpha gets 403 for beta whatever it sends)."""


def _operator_namespace(
    request: Request,
    namespace: Annotated[
        str | None,
        Query(
            description="ask the engine owning this namespace (one the key holds) instead of "
            "the operator's subject"
        ),
    ] = None,
) -> str | None:
    return None if namespace is None else tenant(request, namespace)


OperatorNamespace = Annotated[str | None, Depends(_operator_namespace)]


def operator_only(verb: str) -> Callable[[Request], ApiKey]:
    """A dependency refusing (403) a key that is not an operator's, before the body is read
    into the verb's model."""

    def dependency(request: Request) -> ApiKey:
        return operator_key(request, verb)

    return dependency

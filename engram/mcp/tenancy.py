"""Whose memory a tool call touches: the namespace comes from the server's configuration
(stdio) or from the caller's API key (streamable HTTP), never from the model's arguments.

Over HTTP the API layer authenticates the request and leaves the key on
``request.state.engram_key`` (``.name``, ``.namespaces``, ``.operator``). A key holding one
namespace uses it; a key holding several must name one in the ``Engram-Namespace`` header. The
operator flag widens nothing here: the tools are a tenant's, about the namespaces its key holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine.errors import PermissionDeniedError, UsageError
from engine.events.envelope import check_namespace

__all__ = ["NAMESPACE_HEADER", "NamespaceOf", "fixed_namespace", "namespace_from_key"]

NAMESPACE_HEADER = "Engram-Namespace"
"""The HTTP header naming which of its key's namespaces a request is about."""

NamespaceOf = Callable[[Any], str]
"""The namespace of one call, given its HTTP request (None over stdio); raises UsageError or
PermissionDeniedError when there is none the caller may use."""


def fixed_namespace(namespace: str) -> NamespaceOf:
    """Every call is about ``namespace`` (checked now: a bad one never starts a server)."""
    checked = check_namespace(namespace)

    def of(_request: Any) -> str:
        return checked

    return of


def namespace_from_key(request: Any) -> str:
    """The namespace of an HTTP call: the key's only namespace, or the one its
    ``Engram-Namespace`` header names among the key's."""
    state = getattr(request, "state", None)
    key = getattr(state, "engram_key", None) if state is not None else None
    if key is None:
        raise PermissionDeniedError("this MCP endpoint needs an engram API key (none was checked)")
    held = tuple(str(ns) for ns in key.namespaces)
    asked = request.headers.get(NAMESPACE_HEADER)
    if asked is None:
        if len(held) == 1:
            return check_namespace(held[0])
        if not held:
            raise PermissionDeniedError(f"API key {key.name!r} holds no namespace")
        raise UsageError(
            f"API key {key.name!r} holds several namespaces ({', '.join(held)}): name one in "
            f"the {NAMESPACE_HEADER} header"
        )
    if asked not in held:
        raise PermissionDeniedError(
            f"API key {key.name!r} may not use namespace {asked!r} ({NAMESPACE_HEADER} header)"
        )
    return check_namespace(asked)

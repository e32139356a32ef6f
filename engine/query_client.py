"""Asking a running engine over NATS request-reply on ``engram.query.<namespace>.<verb>`` or
``engram.query.<verb>`` (``engram``: the stream settings' ``service_prefix``; which of them a
verb is asked on: ``VerbSpec.subject``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from engine.errors import EngineUnavailableError, ForbiddenError, QueryError, UsageError
from engine.permissions import refused_or
from engine.verbs import QUERY_PREFIX

__all__ = ["QUERY_PREFIX", "query_remote"]


def _raise_for(reply: Mapping[str, Any]) -> dict[str, Any]:
    if "error" in reply:
        if reply.get("kind") == "usage":
            raise UsageError(str(reply["error"]))
        if reply.get("kind") == "forbidden":  # an operator verb that is off (sql, export)
            raise ForbiddenError(str(reply["error"]))
        raise QueryError(str(reply["error"]))
    return dict(reply)


async def query_remote(
    nc: NatsClient,
    verb: str,
    payload: Mapping[str, Any],
    timeout_s: float = 5.0,
    *,
    prefix: str = QUERY_PREFIX,
    subject: str | None = None,
) -> dict[str, Any]:
    """Request ``verb`` from a running engine on ``subject`` (by default ``prefix`` + verb: the
    operator's subject under ``QUERY_PREFIX`` or ``settings.stream.service.query_prefix``);
    raises EngineUnavailableError if none answers. ``payload`` is sent as given: the engine
    validates it (``MemoryClient`` validates it first, with the same models)."""
    subject = prefix + verb if subject is None else subject
    try:
        # a subject (or an inbox) the broker refuses this user is a PermissionDeniedError at
        # once, never the timeout the request would otherwise end in
        msg = await refused_or(
            nc,
            nc.request(subject, json.dumps(dict(payload)).encode(), timeout=timeout_s),
            publishes=subject,
            what=f"asking {verb}",
        )
    except NoRespondersError:
        raise EngineUnavailableError(
            f"no engine answers {subject} on this NATS server (start engram serve; an engine "
            "started with --namespaces answers its own namespaces only)"
        ) from None
    except NatsTimeoutError:
        raise EngineUnavailableError(
            f"the engine did not answer {verb} within {timeout_s}s"
        ) from None
    try:
        reply = json.loads(msg.data)
    except json.JSONDecodeError:
        raise QueryError(f"the engine answered {verb} with something that is not JSON") from None
    if not isinstance(reply, dict):
        raise QueryError(f"the engine answered {verb} with a {type(reply).__name__}")
    return _raise_for(reply)

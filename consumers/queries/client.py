"""Asking the engine: over NATS request-reply when it runs, else straight from a data dir."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from consumers.queries.dispatch import QUERY_PREFIX, QueryDispatcher
from consumers.queries.learning_verbs import register_learning_verbs
from engine.errors import QueryError, UsageError
from projections.learning import LearnerProjection
from projections.tables import DATABASE_FILE, connect_database

__all__ = ["EngineUnavailableError", "query_local", "query_remote"]


class EngineUnavailableError(QueryError):
    """No engine answered on ``engram.query.*``."""


def _raise_for(reply: Mapping[str, Any]) -> dict[str, Any]:
    if "error" in reply:
        if reply.get("kind") == "usage":
            raise UsageError(str(reply["error"]))
        raise QueryError(str(reply["error"]))
    return dict(reply)


async def query_remote(
    nc: NatsClient, verb: str, payload: Mapping[str, Any], timeout_s: float = 5.0
) -> dict[str, Any]:
    """Request ``verb`` from a running engine; raises EngineUnavailableError if none answers."""
    try:
        msg = await nc.request(
            QUERY_PREFIX + verb, json.dumps(dict(payload)).encode(), timeout=timeout_s
        )
    except NoRespondersError:
        raise EngineUnavailableError(
            "no engine is serving queries on this NATS server (start engram serve)"
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


async def query_local(data_dir: Path, verb: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``verb`` from ``data_dir``'s database opened read-only (no engine needed).

    Raises StoreLockedError when an engine holds the database (ask it over NATS instead).
    """
    connection = connect_database(data_dir / DATABASE_FILE, read_only=True)
    try:
        dispatcher = QueryDispatcher(connection.cursor)
        # Loaded read-only: never saved back (close() is not called).
        register_learning_verbs(dispatcher, LearnerProjection(data_dir / "patterns"))
        return await dispatcher.handle(verb, payload)
    finally:
        connection.close()

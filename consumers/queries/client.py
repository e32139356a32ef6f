"""Asking the engine: over NATS request-reply when it runs, else straight from a data dir."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consumers.queries.dispatch import QueryDispatcher
from consumers.queries.learning_verbs import register_learning_verbs
from engine.errors import EngineUnavailableError
from engine.query_client import query_remote
from projections.learning import LearnerProjection
from projections.tables import DATABASE_FILE, connect_database

__all__ = ["EngineUnavailableError", "query_local", "query_remote"]


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

"""Answering query verbs straight from a data directory, without an engine (``--data-dir``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consumers.queries.dispatch import OperatorAccess, QueryDispatcher
from consumers.queries.learning_verbs import register_learning_verbs
from consumers.queries.memory_verbs import MemoryVerbs
from consumers.queries.session_verbs import register_session_verbs
from engine.settings import Settings
from projections.context import HeuristicTokenCounter, RecentEvents
from projections.learning import LearnerProjection
from projections.projection_set import active_embedder, vector_projection
from projections.sessions import SessionCompactor
from projections.tables import DATABASE_FILE, connect_database

__all__ = ["query_local"]


async def query_local(data_dir: Path, verb: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``verb`` from ``data_dir``'s database opened read-only (no engine needed).

    Raises StoreLockedError when an engine holds the database (ask it over NATS instead).
    """
    connection = connect_database(data_dir / DATABASE_FILE, read_only=True)
    try:
        # This process reads a directory on its own machine, with its user's rights.
        dispatcher = QueryDispatcher(connection.cursor, access=OperatorAccess(local=True))
        # Loaded read-only: never saved back (close() is not called). Usage events are not
        # recorded either: nothing is published from a directory read.
        learner = LearnerProjection(data_dir / "patterns")
        register_learning_verbs(dispatcher, learner)
        if verb == "sessions":  # loaded read-only: never saved back
            register_session_verbs(dispatcher, SessionCompactor(data_dir / "sessions"))
        if verb in {"search", "task_context", "assemble_context"}:
            settings = Settings(data_dir=data_dir)
            vectors = vector_projection(settings, active_embedder(settings))
            MemoryVerbs(
                vectors, learner, RecentEvents(1), HeuristicTokenCounter(), publish=None
            ).register(dispatcher)
        return await dispatcher.handle(verb, payload)
    finally:
        connection.close()

"""Answering query verbs straight from a data directory, without an engine (``--data-dir``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from consumers.queries.cache_verbs import CacheVerbs
from consumers.queries.dispatch import OperatorAccess, QueryDispatcher
from consumers.queries.item_verbs import ItemVerbs
from consumers.queries.learning_verbs import register_learning_verbs
from consumers.queries.memory_verbs import MemoryVerbs
from consumers.queries.session_verbs import register_session_verbs
from engine.errors import UsageError
from engine.settings import Settings
from engine.verbs import verb as spec
from projections.cache import SemanticCache
from projections.context import HeuristicTokenCounter, RecentEvents
from projections.embedders import get_embedder
from projections.learning import LearnerProjection
from projections.projection_set import active_embedder, vector_projection
from projections.sessions import SessionCompactor
from projections.tables import DATABASE_FILE, connect_database

__all__ = ["query_local"]


async def query_local(data_dir: Path, verb: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer ``verb`` from ``data_dir``'s database opened read-only (no engine needed).

    Raises StoreLockedError when an engine holds the database (ask it over NATS instead), and
    UsageError for ``min_sequence``: a directory is read as it was last saved, nothing applies
    events to it meanwhile, so there is nothing to wait for.
    """
    if payload.get("min_sequence") is not None:
        raise UsageError(
            "--after-seq (min_sequence) waits for a running engine's projections; a data "
            "directory is read as it was last saved (see engram checkpoints --data-dir DIR)"
        )
    connection = connect_database(data_dir / DATABASE_FILE, read_only=True)
    try:
        # This process reads a directory on its own machine, with its user's rights.
        dispatcher = QueryDispatcher(connection.cursor, access=OperatorAccess(local=True))
        # Only the projections the verb reads (the catalogue says which) are loaded, read-only:
        # never saved back (close() is not called). Usage events are not recorded either:
        # nothing is published from a directory read.
        reads = set(spec(verb).reads)
        if reads & {"patterns", "vectors"}:
            learner = LearnerProjection(data_dir / LearnerProjection.name)
            register_learning_verbs(dispatcher, learner)
        if "sessions" in reads:
            register_session_verbs(dispatcher, SessionCompactor(data_dir / SessionCompactor.name))
        if "vectors" in reads:  # the memory verbs also read the learner (loaded above)
            settings = Settings(data_dir=data_dir)
            vectors = vector_projection(settings, active_embedder(settings))
            MemoryVerbs(
                vectors, learner, RecentEvents(1), HeuristicTokenCounter(), publish=None
            ).register(dispatcher)
        if verb.startswith("items_"):  # ranked with the active embedder, built when asked
            local = Settings(data_dir=data_dir)
            ItemVerbs(
                connection.cursor,
                functools.cache(lambda: get_embedder(active_embedder(local))),
                lexical_weight=local.search_lexical_weight,
            ).register(dispatcher)
        if "cache" in reads:  # the prompts embedded with the active embedder
            local = Settings(data_dir=data_dir)
            embedder = get_embedder(active_embedder(local))
            cache = SemanticCache(data_dir / SemanticCache.name, embedder)
            CacheVerbs(cache, local.cache_similarity).register(dispatcher)
        return await dispatcher.handle(verb, payload)
    finally:
        connection.close()

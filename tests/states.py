"""Comparing an engine's projections with a clean replay of the same stream."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.js import JetStreamContext

from consumers.replay import replay
from engine.settings import Settings
from projections.cache import state_digest as cache_digest
from projections.learning.persistence import dump_state
from projections.projection_set import ProjectionSet, open_projections
from projections.sessions import state_digest
from projections.tables import table_digests

__all__ = ["QUERIES", "clean_replay_state", "saved_state", "state_of"]

QUERIES = ("did thing 7", "did thing 1234", "go")


def state_of(projections: ProjectionSet) -> dict[str, Any]:
    """Everything a replay must reproduce: table hashes, learner and session state, memories,
    the lexical index (its saved bytes), search answers with their scores in every mode and the
    semantic cache's state."""
    vectors = projections.vectors
    return {
        "tables": table_digests(projections.store.reader()),
        "learner": dump_state(projections.learner.state),
        "sessions": state_digest(projections.sessions.state),
        "cache": projections.cache.read(cache_digest),
        "memories": {k: m.to_json() for k, m in vectors.memories.items()},
        "lexical": vectors.lexical.encoded(),
        "answers": [
            [
                (h["id"], h["similarity_score"], h["duplicates"])
                for h in vectors.search(namespace=ns, text=q, top_k=5, mode=mode)
            ]
            for q in QUERIES
            for ns in ("default", "team-a")
            for mode in ("hybrid", "vector", "lexical")
        ],
    }


def saved_state(settings: Settings) -> dict[str, Any]:
    """The state an engine left on disk under ``settings.data_dir`` (opened again, as a
    restart would)."""
    projections = open_projections(settings)
    try:
        return state_of(projections)
    finally:
        projections.close()


async def clean_replay_state(
    js: JetStreamContext, settings: Settings, directory: Path
) -> dict[str, Any]:
    """The state of every projection rebuilt from scratch in ``directory`` from the stream."""
    target = settings.model_copy(update={"data_dir": directory})
    projections = open_projections(target)
    try:
        await replay(js, settings.stream.name, projections.persistent)
        return state_of(projections)
    finally:
        projections.close()

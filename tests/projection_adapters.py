"""Every projection implementation as the Projection contract suite sees it: how to open one
(in memory, or over a directory it is reopened from) and a fingerprint of its state.

A fingerprint is a canonical dump of everything the events decide (table hashes, the learner's
and the sessions' state, memory records, vector and lexical indexes, search answers with their
scores, the ring buffer, the semantic cache's entries, clocks, counters and lookup answers), the
repeats ignored and the announcements pending; it leaves out the
checkpoint, which the suite compares on its own (an in-memory whole-state projection never
saves, so its checkpoint stays 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from projections.base import Announcer, Projection
from projections.cache import CacheState, SemanticCache
from projections.context import RecentEvents
from projections.embedders import HashingEmbedder
from projections.identity import duplicates_seen
from projections.learning import LearnerProjection
from projections.learning.persistence import dump_state
from projections.save_policy import SavePolicy
from projections.sessions import SessionCompactor, SessionConfig, state_digest
from projections.tables import TablesProjection, TableStore, table_digests
from projections.vectors.projection import VectorProjection, VectorState
from tests.strategies.events import BASE_TIME

__all__ = ["ADAPTERS", "PERSISTENT", "ProjectionAdapter", "fingerprint"]

NAMESPACES = ("default", "team-a", "team-b")
QUERIES = ("abc", "xyz gh", "plan code")


def _saving() -> SavePolicy:
    """Saves every few events (with no pause between saves), so a crash loses some and keeps
    some; each projection needs a policy of its own."""
    return SavePolicy(every_events=4, max_share=1.0, min_interval_s=0)


@dataclass(frozen=True)
class ProjectionAdapter:
    """One implementation of the projection port, as the contract suite drives it."""

    name: str
    open: Callable[[Path | None], Any]
    """A projection in memory (None) or over a directory, opened as a restart opens it."""
    state: Callable[[Any], Any]
    """The projection's own part of the fingerprint."""
    persistent: bool = True
    """Whether it is reopened from a directory (the recent tier is rebuilt from the stream)."""

    def crash(self, projection: Any) -> None:
        """Drop ``projection`` as a crash would. A transactional projection has committed
        every batch, so closing its store loses nothing a crash would keep."""
        if isinstance(projection, TablesProjection):
            projection.close()


def fingerprint(adapter: ProjectionAdapter, projection: Projection) -> dict[str, Any]:
    """Everything the events decide in ``projection``, checkpoint aside."""
    pending = (
        [e.id for e in projection.take_pending()] if isinstance(projection, Announcer) else None
    )
    return {
        "state": adapter.state(projection),
        "duplicates": duplicates_seen(projection),
        "pending": pending,
    }


# -- the implementations ------------------------------------------------------------------------


def _tables(directory: Path | None) -> TablesProjection:
    store = TableStore.in_memory() if directory is None else TableStore.open(directory)
    return TablesProjection(store)


def _tables_state(projection: TablesProjection) -> dict[str, str]:
    cursor = projection.store.reader()
    try:
        return table_digests(cursor)
    finally:
        cursor.close()


def _learner(directory: Path | None) -> LearnerProjection:
    return LearnerProjection(directory, save_policy=_saving())


def _learner_state(projection: LearnerProjection) -> Any:
    return projection.read(dump_state)


# An idle timeout of 3 s over histories of 1 s steps and at most 3 open sessions: sessions are
# compacted as ended, idle and evicted within a short history.
SESSIONS = SessionConfig(idle_timeout_s=3.0, max_open_sessions=3)


def _sessions(directory: Path | None) -> SessionCompactor:
    return SessionCompactor(directory, config=SESSIONS, save_policy=_saving())


def _sessions_state(projection: SessionCompactor) -> Any:
    return projection.read(state_digest)


def _vectors(directory: Path | None) -> VectorProjection:
    return VectorProjection(directory, HashingEmbedder(dimension=32), save_policy=_saving())


def _vector_records(state: VectorState) -> dict[str, Any]:
    return {
        "watermark": state.applied,
        "memories": {label: m.to_json() for label, m in state.registry.memories.items()},
        "seen": state.seen.to_bytes().hex(),
        "vectors": {
            key: len(state.indexes.get(*key) or ()) for key in sorted(state.indexes.keys())
        },
        "lexical": state.lexical.encoded(),
    }


def _vectors_state(projection: VectorProjection) -> dict[str, Any]:
    return {
        **projection.read(_vector_records),
        "answers": [
            [
                (h["id"], h["similarity_score"], h["duplicates"])
                for h in projection.search(namespace=ns, text=text, top_k=5, mode=mode)
            ]
            for ns in NAMESPACES
            for text in QUERIES
            for mode in ("hybrid", "vector", "lexical")
        ],
    }


def _recent(directory: Path | None) -> RecentEvents:
    return RecentEvents(8)  # smaller than the histories: the ring buffer wraps


def _recent_state(projection: RecentEvents) -> dict[str, Any]:
    return {
        ns: (
            [(e.sequence, e.event.id) for e in projection.recent(ns)],
            sorted(e.sequence for e in projection.active_sessions(ns)),
        )
        for ns in NAMESPACES
    }


def _cache(directory: Path | None) -> SemanticCache:
    return SemanticCache(directory, HashingEmbedder(dimension=32), save_policy=_saving())


def _cache_records(state: CacheState) -> dict[str, Any]:
    return {
        "watermark": state.applied,
        "clocks": dict(sorted(state.clocks.items())),
        "namespaces": {
            ns: {
                "entries": sorted((e.sequence, repr(e.to_json())) for e in cache.entries.values()),
                "counters": cache.stats(),
                "vectors": None if cache.index is None else cache.index.live,
            }
            for ns, cache in sorted(state.namespaces.items())
        },
        "seen": state.seen.to_bytes().hex(),
        "owners": {ns: state.seen.owned(ns).tobytes().hex() for ns in state.seen.owners()},
    }


def _cache_state(projection: SemanticCache) -> dict[str, Any]:
    # Lookups at three moments of the histories' time (they step 1 s from BASE_TIME).
    moments = [(BASE_TIME.timestamp() + s) for s in (0, 10, 40)]
    return {
        **projection.read(_cache_records),
        "answers": [
            projection.lookup(ns, prompt, at=at, threshold=0.5, model=model)
            for ns in NAMESPACES
            for prompt in ("plan code", "abc xyz")
            for at in moments
            for model in (None, "m1")
        ],
    }


ADAPTERS = [
    ProjectionAdapter("tables", _tables, _tables_state),
    ProjectionAdapter("patterns", _learner, _learner_state),
    ProjectionAdapter("sessions", _sessions, _sessions_state),
    ProjectionAdapter("vectors", _vectors, _vectors_state),
    ProjectionAdapter("recent", _recent, _recent_state, persistent=False),
    ProjectionAdapter("cache", _cache, _cache_state),
]
PERSISTENT = [a for a in ADAPTERS if a.persistent]

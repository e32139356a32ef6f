"""Every projection of an engine over one data directory, opened the same way for the live
engine, a replay, a snapshot and a restore."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from engine.settings import Settings
from projections.base import Projection
from projections.cache import IndexParams, SemanticCache
from projections.context import RecentEvents
from projections.embedders import get_embedder
from projections.learning import LearnerProjection
from projections.sessions import SessionCompactor
from projections.tables import TablesProjection, TableStore
from projections.vectors.active import read_active
from projections.vectors.index import IndexConfig
from projections.vectors.projection import VectorProjection
from projections.vectors.retrieval import SearchConfig

__all__ = [
    "ProjectionSet",
    "active_embedder",
    "open_projections",
    "vector_projection",
]

log = structlog.get_logger(__name__)


@dataclass
class ProjectionSet:
    """Every projection of an engine over one data directory."""

    store: TableStore
    tables: TablesProjection
    learner: LearnerProjection
    vectors: VectorProjection
    recent: RecentEvents
    sessions: SessionCompactor
    cache: SemanticCache

    @property
    def persistent(self) -> list[Projection]:
        """The projections kept on disk (what a replay rebuilds and a snapshot holds); the
        operational tier (``recent``) lives in memory only."""
        return [self.tables, self.learner, self.vectors, self.sessions, self.cache]

    @property
    def live(self) -> list[Projection]:
        """Everything a running engine feeds, the in-memory operational tier included."""
        return [*self.persistent, self.recent]

    def close(self) -> None:
        """Close (and so save) every projection, even when one of them fails; then raise the
        first failure."""
        failures: list[Exception] = []
        for projection in self.live:
            try:
                projection.close()
            except Exception as exc:  # the others must still save
                log.error("projection close failed", projection=projection.name, error=repr(exc))
                failures.append(exc)
        if failures:
            raise failures[0]


def active_embedder(settings: Settings) -> str:
    """The embedder serving searches: the last completed reindex, else the setting."""
    return read_active(settings.vectors_dir, settings.embedder)


def vector_projection(settings: Settings, embedder_name: str) -> VectorProjection:
    embedder = get_embedder(embedder_name)
    config = IndexConfig(
        m=settings.index_m,
        ef_construction=settings.index_ef_construction,
        ef=settings.index_ef,
        num_threads=1,
    )
    search = SearchConfig(
        lexical_weight=settings.search_lexical_weight,
        duplicate_similarity=settings.search_duplicate_similarity,
    )
    return VectorProjection(
        settings.vectors_dir / embedder.name, embedder, config=config, search=search
    )


def open_projections(settings: Settings, stream_last_sequence: int = 0) -> ProjectionSet:
    """Every projection of the engine over the data directory (the replay uses the same)."""
    store = TableStore.open(settings.data_dir)
    try:
        tables = TablesProjection(store)
        vectors = vector_projection(settings, active_embedder(settings))
        return ProjectionSet(
            store=store,
            tables=tables,
            learner=LearnerProjection(settings.data_dir / "patterns"),
            vectors=vectors,
            recent=RecentEvents(
                settings.recent_capacity,
                stream_last_sequence=stream_last_sequence,
                history=tables,  # the ids first seen before the tail it starts from
            ),
            sessions=SessionCompactor(settings.data_dir / "sessions"),
            # The prompts are embedded by the embedder searches use (one model loaded, not two);
            # the graph is built as the vectors' are, and walked wider (IndexParams.ef).
            cache=SemanticCache(
                settings.data_dir / "cache",
                vectors.embedder,
                params=IndexParams(
                    m=settings.index_m, ef_construction=settings.index_ef_construction
                ),
            ),
        )
    except BaseException:
        store.close()
        raise

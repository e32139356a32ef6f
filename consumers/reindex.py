"""Reindex (blue/green): build a vector index with another embedder beside the live one.

The new index is one more projection replayed from the stream into its own directory
(``vectors/<embedder>``); the live engine keeps serving from the old index meanwhile. Only when
the new one has caught up is it made active (the ``ACTIVE`` marker, replaced atomically); a
running engine notices, tails the new index to the stream's end and then switches searches over.
Vectors of two models never meet in one index: each index refuses another embedder.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nats.js import JetStreamContext

from consumers.replay import ReplayReport, replay
from engine.settings import Settings
from engine.stream.engine_key import verifying_key
from projections.vectors.active import write_active

__all__ = ["activate", "reindex"]


def activate(settings: Settings, embedder_name: str) -> Path:
    """Make ``embedder_name`` the active index (atomic: temp file, then rename)."""
    return write_active(settings.vectors_dir, embedder_name)


async def reindex(
    js: JetStreamContext,
    stream: str,
    settings: Settings,
    embedder_name: str,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Replay the stream into the index of ``embedder_name`` (resuming a partial build), then
    activate it. Raises UnknownEmbedderError / EmbedderUnavailableError before any work."""
    from projections.projection_set import vector_projection

    projection = vector_projection(settings, embedder_name)
    try:
        verifier = await verifying_key(js, settings)
        report = await replay(
            js,
            stream,
            [projection],
            on_batch=on_batch,
            verifier=verifier,
            subjects=settings.stream.events,
            namespaces=settings.namespaces,  # an engine owning some tenants indexes those only
        )
    finally:
        projection.close()
    activate(settings, projection.embedder.name)
    return report

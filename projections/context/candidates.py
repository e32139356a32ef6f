"""The candidates for an assembled context, gathered from the three tiers.

- operational: what agents did lately (the recent-events ring) and the sessions still open,
  ranked by how close their description is to the task's;
- working and long-term: similar memories from the vector projection (hybrid: the task's words
  and its vector), long-term when older than the recent window or knowledge;
- working also: the learner's best workflow for the task's inferred type.

``assemble`` then picks from them within the token budget.
"""

from __future__ import annotations

from engine.events import EVENT_TYPES
from engine.events.cache import CACHE_TYPES
from engine.events.items import ITEM_TYPES
from projections.context.assembly import Candidate
from projections.context.describe import describe_event
from projections.context.recent import RecentEvents
from projections.context.recommendations import recommendations
from projections.context.text_vectors import TextVectorCache
from projections.learning import LearnerProjection
from projections.learning import queries as q
from projections.vectors.projection import VectorProjection

__all__ = ["gather_candidates"]

_NOT_CONTEXT = ITEM_TYPES | CACHE_TYPES
"""Agent events that are stores of their own (items, cached answers), not what agents did."""

RECENT_SCANNED = 200
"""Recent events looked at (the engine's own events among them are skipped)."""
RECENT_KEPT = 50
"""Agents' recent events offered as operational candidates."""


def gather_candidates(
    description: str,
    namespace: str,
    tiers: set[str],
    budget: int,
    *,
    vectors: VectorProjection,
    learner: LearnerProjection,
    recent: RecentEvents,
    described: TextVectorCache,
) -> list[Candidate]:
    """Every candidate of ``tiers`` for ``description`` in ``namespace``. Blocking (it embeds
    and takes the projections' read locks): call it off the event loop. ``vectors`` is read as
    one index for the whole request, even across a reindex switch."""
    found: list[Candidate] = []
    window_start = recent.checkpoint() - recent.capacity
    # Embedded once for both the operational tier and the vector search.
    query = vectors.embedder.embed([description])[0]
    if "operational" in tiers:
        # What agents did; the engine's own events (announcements, usage) are not context, nor
        # the key-value items agents keep (a LangGraph store's puts: items_search reads them),
        # nor the semantic cache's puts (cache_lookup reads them).
        latest = [
            e
            for e in recent.recent(namespace, limit=RECENT_SCANNED)
            if EVENT_TYPES[e.event.type].publisher == "agent" and e.event.type not in _NOT_CONTEXT
        ][:RECENT_KEPT]
        sessions = recent.active_sessions(namespace)
        texts = [describe_event(e.event) for e in latest]
        texts += [describe_event(s.event, active=True) for s in sessions]
        sources = [(e, "recent_events") for e in latest] + [
            (s, "active_sessions") for s in sessions
        ]
        if texts:
            relevance = described.embed(vectors.embedder, texts) @ query
            for (item, source), text, score in zip(sources, texts, relevance, strict=True):
                found.append(
                    Candidate(
                        "operational",
                        source,
                        text,
                        float(max(0.0, score)),
                        item.event.id,
                        item.sequence,
                    )
                )
    k = max(5, min(50, budget // 40))
    if tiers & {"working", "longterm"}:
        # Hybrid: the words of the description and its vector (embedded once, above).
        hits = vectors.search(namespace=namespace, text=description, vector=query.tolist(), top_k=k)
        for hit in hits:
            older = hit["sequence"] <= window_start or hit["collection"] == "knowledge"
            tier = "longterm" if older else "working"
            if tier in tiers:
                found.append(
                    Candidate(
                        tier,
                        hit["collection"],
                        hit["text"],
                        hit["similarity_score"],
                        hit["id"],
                        hit["sequence"],
                    )
                )
    if "working" in tiers:
        task_type = vectors.classifier.classify(description)
        best = learner.read(lambda s: q.best_workflow(s, namespace, task_type))
        if best is not None:
            text = recommendations(best, [], [])[0]
            found.append(Candidate("working", "patterns", text, best["confidence"], None, None))
    return found

"""Hybrid retrieval: lexical (BM25) and vector candidates fused by a weighted sum (pure).

Modes: ``vector`` (the hnswlib indexes), ``lexical`` (the BM25 index) and ``hybrid`` (default):
each retriever gives its best ``depth`` candidates that pass the filters (filters run inside
both, never after truncation), both similarities are computed exactly for every candidate of
the union, and they are ranked by

    similarity = w * lexical similarity + (1 - w) * vector similarity       (w = 0.6 by default)

``similarity_score`` means the same in every mode: how similar the memory is to the query on a
0..1 scale, 1 for the query's own text and 0 for nothing in common. The vector similarity is
1 - cosine distance (clipped at 0), the lexical one the memory's BM25 score over the one the
query's own text would get (``projections.lexical.bm25``), and hybrid their weighted mean: each
is exactly 1 for a memory that is the query's text, so ``similarity_threshold`` keeps one
meaning, and hits are always ordered by the score they show.

Why a weighted sum and not reciprocal rank fusion: both similarities are already calibrated to
0..1 against the query itself (not to the other candidates), so their sum keeps the distances
RRF throws away; on the LoCoMo dev half it finds more of the evidence with either embedder (the
README's Recall section has the figures), and it yields a score with a meaning, where RRF's
1 / (60 + rank) would not honour ``similarity_threshold``.

A query with no lexical terms (only stopwords or punctuation: ``tokenise`` keeps nothing) has
no lexical similarity: hybrid then ranks by the vector similarity alone (weight 1 on it, so the
query's own text still scores exactly 1) and lexical mode returns nothing. A hit with nothing in
common with the query (a score of 0 as shown) is never returned, whatever the threshold.

A search returns ``top_k`` hits whenever that many memories pass the filters and the threshold
(and share something with the query): when near-duplicate grouping leaves fewer groups, the
candidate depth grows (x4) until the groups fill ``top_k``, the retrievers run out, or it reaches
``max(MAX_DEPTH_FACTOR * top_k, MAX_DEPTH_FLOOR)`` candidates (4 * top_k, at least 2,000): then
the groups found so far are returned, fewer than ``top_k``. The bound keeps a grouped search
over a corpus of near-duplicates from walking every memory (1-1.6 s at top_k 1,000 over 20,000
such memories before it; see ``_max_depth``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import numpy as np
import numpy.typing as npt

from engine.verbs.requests import SearchMode
from projections.lexical.bm25 import ScoredQuery
from projections.lexical.store import LexicalSet
from projections.lexical.tokens import tokenise
from projections.vectors.duplicates import DEFAULT_DUPLICATE_SIMILARITY, NearDuplicates
from projections.vectors.index_set import IndexSet
from projections.vectors.memories import Memory
from projections.vectors.registry import MemoryRegistry

__all__ = [
    "DEFAULT_LEXICAL_WEIGHT",
    "MAX_DEPTH_FACTOR",
    "MAX_DEPTH_FLOOR",
    "MODES",
    "Mode",
    "Query",
    "SearchConfig",
    "retrieve",
]

Mode = SearchMode
MODES: tuple[Mode, ...] = get_args(SearchMode)
DEFAULT_LEXICAL_WEIGHT = 0.6
MAX_DEPTH_FACTOR = 4
MAX_DEPTH_FLOOR = 2000


@dataclass(frozen=True, slots=True)
class SearchConfig:
    """The projection's search defaults (``engine.settings``: ``search_*``).

    ``lexical_weight`` is w above (tuned on the LoCoMo dev half: 0.6 to 0.7 are within 0.005
    of the best with either embedder); ``duplicate_similarity`` the term cosine at which two
    memories are grouped; ``min_depth`` the fewest candidates each retriever gives in hybrid mode.
    """

    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT
    duplicate_similarity: float = DEFAULT_DUPLICATE_SIMILARITY
    min_depth: int = 50

    def __post_init__(self) -> None:
        if not 0.0 <= self.lexical_weight <= 1.0:
            raise ValueError(f"lexical_weight must be in [0, 1], got {self.lexical_weight}")
        if not 0.0 < self.duplicate_similarity <= 1.0:
            raise ValueError(
                f"duplicate_similarity must be in (0, 1], got {self.duplicate_similarity}"
            )
        if self.min_depth < 1:
            raise ValueError(f"min_depth must be at least 1, got {self.min_depth}")


@dataclass(frozen=True, slots=True)
class Query:
    """One search, its filters folded into ``accept`` (a label's memory passes them; None:
    every memory of the namespace does)."""

    namespace: str
    mode: Mode
    top_k: int
    threshold: float
    accept: Callable[[int], bool] | None
    collections: Sequence[str] | None
    text: str | None = None
    vector: npt.NDArray[np.float32] | None = None
    group_duplicates: bool = True
    duplicate_similarity: float = DEFAULT_DUPLICATE_SIMILARITY


@dataclass(frozen=True, slots=True)
class _Scored:
    label: int
    similarity: float
    memory: Memory


def retrieve(
    query: Query,
    registry: MemoryRegistry,
    indexes: IndexSet,
    lexical: LexicalSet,
    config: SearchConfig,
) -> list[dict[str, Any]]:
    """The hits of ``query`` as SearchHit dicts, most similar first (ties: older first).

    The caller holds the projection's read lock. ``query.mode`` must be usable: ``vector`` and
    ``hybrid`` need ``query.vector``, ``lexical`` and ``hybrid`` need ``query.text`` (a hybrid
    query without text is a vector query)."""
    mode = query.mode
    if mode == "hybrid" and query.text is None:
        mode = "vector"
    use_vector, use_lexical = mode != "lexical", mode != "vector"
    wanted = None if query.collections is None else frozenset(query.collections)

    def accept_lexical(label: int) -> bool:
        memory = registry.get(label)
        return (
            memory is not None
            and (wanted is None or memory.collection in wanted)
            and (query.accept is None or query.accept(label))
        )

    scored: ScoredQuery | None = None
    terms = tokenise(query.text or "") if use_lexical else []
    if use_lexical and terms:
        index = lexical.get(query.namespace)
        scored = None if index is None else index.query(terms)
    if mode == "lexical" and not terms:
        return []  # nothing to match lexically: no memory shares a term with the query
    if mode == "hybrid" and not terms:
        weight = 0.0  # no lexical similarity to weigh: the vector one alone
    else:
        weight = config.lexical_weight if mode == "hybrid" else (1.0 if mode == "lexical" else 0.0)
    grouping = query.group_duplicates
    if mode == "hybrid":
        depth = max(config.min_depth, 2 * query.top_k)
    else:  # one retriever: its own order is the answer, grouping aside
        depth = 2 * query.top_k if grouping else query.top_k
    max_depth = max(_max_depth(query.top_k), depth)
    while True:
        candidates: dict[int, float] = {}  # label -> vector similarity (hnswlib's)
        exhausted = True
        if use_vector and query.vector is not None:
            vector_hits = indexes.search(
                query.vector,
                depth,
                namespace=query.namespace,
                collections=query.collections,
                filter=query.accept,
            )
            exhausted = len(vector_hits) < depth
            candidates.update((h.label, h.similarity) for h in vector_hits)
        lexical_sims: dict[int, float] = {}
        if scored is not None:
            lexical_hits = scored.top(
                depth, accept_lexical if wanted is not None or query.accept else None
            )
            exhausted = exhausted and len(lexical_hits) < depth
            lexical_sims = {h.label: h.similarity for h in lexical_hits}
        ranked = _rank(query, registry, indexes, scored, candidates, lexical_sims, weight, mode)
        if not grouping:
            return [s.memory.hit(s.similarity) for s in ranked[: query.top_k]]
        groups: NearDuplicates[_Scored] = NearDuplicates(
            query.duplicate_similarity,
            text=lambda s: s.memory.text,
            scope=lambda s: s.memory.collection,
        )
        groups.extend(ranked, query.top_k, tail=query.top_k)
        if len(groups.groups) >= query.top_k or exhausted or depth >= max_depth:
            return [
                {
                    **g.head.memory.hit(g.head.similarity),
                    "duplicates": len(g.members),
                    "duplicate_ids": [m.memory.latest_id for m in g.members],
                }
                for g in groups.groups[: query.top_k]
            ]
        depth = min(depth * 4, max_depth)


def _max_depth(top_k: int) -> int:
    """The most candidates each retriever gives while grouping deepens the search:
    ``max(MAX_DEPTH_FACTOR * top_k, MAX_DEPTH_FLOOR)``. Past it the groups found are returned even
    when fewer than ``top_k``: when 4 * top_k ranked candidates (at least 2,000) hold fewer than
    top_k groups, what is left are near-duplicates of hits already shown, or far weaker matches,
    and walking on costs time proportional to the whole namespace."""
    return max(MAX_DEPTH_FACTOR * top_k, MAX_DEPTH_FLOOR)


def _rank(
    query: Query,
    registry: MemoryRegistry,
    indexes: IndexSet,
    scored: ScoredQuery | None,
    vector_sims: dict[int, float],
    lexical_sims: dict[int, float],
    weight: float,
    mode: Mode,
) -> list[_Scored]:
    labels = sorted(set(vector_sims) | set(lexical_sims))
    memories = [registry.memories[label] for label in labels]
    if mode == "vector":
        similarity = [vector_sims[label] for label in labels]
    elif mode == "lexical":
        similarity = [lexical_sims[label] for label in labels]
    else:
        # The vector similarity of a lexical-only candidate, read from its stored vector.
        missing = [m for m in memories if m.sequence not in vector_sims]
        if query.vector is not None and missing:
            exact = indexes.similarities(
                query.vector, query.namespace, [(m.collection, m.sequence) for m in missing]
            )
            vector_sims = dict(vector_sims)
            vector_sims.update(zip([m.sequence for m in missing], exact, strict=True))
        similarity = [
            weight * (0.0 if scored is None else scored.similarity(label))
            + (1.0 - weight) * vector_sims.get(label, 0.0)
            for label in labels
        ]
    ranked = [
        _Scored(label, sim, memory)
        for label, sim, memory in zip(labels, similarity, memories, strict=True)
        if sim >= query.threshold and round(sim, 6) > 0.0  # 0: nothing in common
    ]
    ranked.sort(key=lambda s: (-round(s.similarity, 6), s.label))
    return ranked

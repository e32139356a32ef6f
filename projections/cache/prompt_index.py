"""The vectors of one namespace's cached prompts: an hnswlib index (cosine) labelled by the
puts' stream sequences.

Why hnswlib and not an exact scan: at 100,000 cached prompts of 384 dimensions in one namespace
an exact cosine over a numpy matrix reads 150 MB per lookup, 2.3 ms p50 and 6.6 ms p99 on the
2-core test machine (with both cores), and grows with the cache; the graph walk (ef 400) takes
about 1 ms and grows with its logarithm (``bench/bench_semantic_cache.py`` measures both). The
hits it returns carry their exact cosine, so the threshold is applied to exact similarities; what
approximation costs is a cached prompt the walk did not reach: a miss where a hit was due (about
1 paraphrase in 100 on the benchmark's random-word prompts at ef 400; see ``IndexParams``), never
a wrong hit. The same prompt is found without the walk (``lookup``).

Removing an entry marks its label deleted (hnswlib keeps the node in the graph and never returns
it); once deleted nodes outnumber the live ones (and ``COMPACT_AT`` at least) the index is
rebuilt from the live vectors in label order, so memory follows the live entries. Every change
happens in stream order, one thread adding (``num_threads=1``: hnswlib's parallel insertion
order varies), so the same events build the same graph; the caller serialises changes with
searches (hnswlib is not safe with a search during an add).
"""

from __future__ import annotations

import contextlib
import heapq
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import hnswlib
import numpy as np
import numpy.typing as npt

from engine.errors import IndexCorruptError

__all__ = ["CANDIDATES", "COMPACT_AT", "IndexParams", "PromptIndex"]

CANDIDATES = 10
"""Neighbours a lookup asks the graph for (the best live, unexpired one is the answer)."""
COMPACT_AT = 1_024
"""Deleted nodes kept before the index may be rebuilt (then: when they outnumber live ones)."""
_EXACT_CHUNK = 8_192

Vectors = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class IndexParams:
    """hnswlib's parameters: M and ef_construction as the vector memories' (``Settings.index_m``,
    ``index_ef_construction``); ``ef``, the breadth of a lookup's walk, wider than a search's
    (a missed paraphrase costs a model call): at 100,000 synthetic prompts a paraphrase found
    its cached prompt 97.4% of the time at ef 200 (0.54 ms p50), 99.1% at 400 (1.0 ms), 99.6%
    at 800 (1.8 ms), where an exact scan takes 2.3 ms."""

    m: int = 16
    ef_construction: int = 200
    ef: int = 400
    initial_capacity: int = 1_024


class PromptIndex:
    """Cosine hnswlib index of ``dimension``-d prompt vectors with live and deleted labels."""

    def __init__(self, dimension: int, params: IndexParams, capacity: int | None = None) -> None:
        self.dimension = dimension
        self.params = params
        self._hnsw = hnswlib.Index(space="cosine", dim=dimension)
        self._hnsw.init_index(
            max_elements=max(capacity or 0, params.initial_capacity),
            ef_construction=params.ef_construction,
            M=params.m,
        )
        self._hnsw.set_ef(params.ef)
        self.deleted = 0
        """Labels marked deleted (still nodes of the graph)."""

    @property
    def count(self) -> int:
        """Nodes in the graph, deleted ones included."""
        return int(self._hnsw.get_current_count())

    @property
    def live(self) -> int:
        return self.count - self.deleted

    def add(self, labels: Sequence[int], vectors: Vectors) -> None:
        """Add new labels (never present before) with their vectors, in order."""
        if not labels:
            return
        needed = self.count + len(labels)
        capacity = int(self._hnsw.get_max_elements())
        if needed > capacity:
            self._hnsw.resize_index(max(needed, capacity * 2))
        ids = np.asarray(labels, dtype=np.uint64)
        self._hnsw.add_items(np.ascontiguousarray(vectors, dtype=np.float32), ids, num_threads=1)

    def delete(self, label: int) -> None:
        """Mark ``label`` deleted (it is never returned again)."""
        self._hnsw.mark_deleted(label)
        self.deleted += 1

    def needs_compaction(self) -> bool:
        return self.deleted >= COMPACT_AT and self.deleted > self.live

    def compacted(self, live: Sequence[int]) -> PromptIndex:
        """A new index of the ``live`` labels (sorted) and their vectors, without the deleted."""
        labels = sorted(live)
        fresh = PromptIndex(self.dimension, self.params, capacity=len(labels))
        for start in range(0, len(labels), _EXACT_CHUNK):
            chunk = labels[start : start + _EXACT_CHUNK]
            fresh.add(chunk, self.vectors(chunk))
        return fresh

    def vectors(self, labels: Sequence[int]) -> Vectors:
        """The stored (normalised) vectors of ``labels``."""
        return np.asarray(self._hnsw.get_items(list(labels), return_type="numpy"), np.float32)

    def nearest(
        self,
        vector: Vectors,
        k: int,
        live: Collection[int],
        accept: Callable[[int], bool] | None = None,
    ) -> list[tuple[int, float]]:
        """Up to ``k`` labels nearest to ``vector`` that ``accept`` takes, as ``(label,
        similarity)`` (1 - cosine distance, clipped to [0, 1]), most similar first. ``live``:
        the labels not deleted (the exact fallback scans those ``accept`` takes)."""
        k = min(k, self.live)
        if k < 1:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        try:
            labels, distances = self._hnsw.knn_query(query, k=k, num_threads=1, filter=accept)
            found = list(zip(labels[0].tolist(), distances[0].tolist(), strict=True))
        except RuntimeError:
            # Fewer than k reachable (a selective filter): exact over what it accepts.
            chosen = sorted(x for x in live if accept is None or accept(x))
            found = self._exact(query[0], k, chosen)
        return [(int(label), min(1.0, max(0.0, 1.0 - float(d)))) for label, d in found]

    def _exact(self, query: Vectors, k: int, labels: list[int]) -> list[tuple[int, float]]:
        norm = max(float(np.linalg.norm(query)), 1e-30)
        best: list[tuple[float, int]] = []
        for start in range(0, len(labels), _EXACT_CHUNK):
            chunk = labels[start : start + _EXACT_CHUNK]
            stored = self.vectors(chunk)
            norms = np.maximum(np.linalg.norm(stored, axis=1) * norm, 1e-30)
            distances = 1.0 - (stored @ query) / norms
            best = heapq.nsmallest(k, [*best, *zip(distances.tolist(), chunk, strict=True)])
        return [(label, distance) for distance, label in best]

    # -- files ----------------------------------------------------------------------------------

    def save(self, path: Path) -> None:
        """Write the graph to ``path`` (via a temporary file, fsynced, renamed)."""
        temp = path.with_name(path.name + ".tmp")
        try:
            self._hnsw.save_index(str(temp))
            with temp.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(temp, path)
        finally:
            with contextlib.suppress(OSError):
                temp.unlink()

    @classmethod
    def load(
        cls, path: Path, dimension: int, params: IndexParams, count: int, deleted: int
    ) -> PromptIndex:
        """The index saved at ``path``, which held ``count`` nodes of which ``deleted`` were
        deleted. Raises IndexCorruptError when hnswlib cannot read it or the counts differ."""
        index = cls(dimension, params, capacity=1)
        loaded = hnswlib.Index(space="cosine", dim=dimension)
        try:
            loaded.load_index(str(path), max_elements=max(count, params.initial_capacity))
        except RuntimeError as exc:
            raise IndexCorruptError(f"hnswlib could not read {path}: {exc}") from exc
        loaded.set_ef(params.ef)
        index._hnsw, index.deleted = loaded, deleted
        if index.count != count:
            raise IndexCorruptError(
                f"{path} holds {index.count} prompts, its manifest says {count}"
            )
        return index

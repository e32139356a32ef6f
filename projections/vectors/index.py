"""One hnswlib index (cosine space) with caller-assigned integer labels, growth and a lock.

A ``VectorIndex`` holds the vectors of one (namespace, collection); ``IndexSet`` in
``index_set.py`` keeps one per pair. Searching is similarity = 1 - cosine distance, clipped to
[0, 1]. Adding a label that is already present replaces its vector, so re-applying a batch after
a crash changes nothing. ``add`` and ``resize`` take the lock exclusively, ``search`` and ``save``
share it: hnswlib is safe with concurrent queries, not with a query during an add.
"""

from __future__ import annotations

import contextlib
import dataclasses
import heapq
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np
import numpy.typing as npt
import structlog

from engine.errors import DimensionMismatchError, IndexCorruptError, VectorIndexError
from projections.vectors import persistence
from projections.vectors._rwlock import ReadWriteLock
from projections.vectors.hnsw_file import check_complete

__all__ = ["IndexConfig", "LoadedIndex", "VectorIndex"]

LabelFilter = Callable[[int], bool]
_EXACT_CHUNK = 8192  # vectors read at once by the exact fallback (bounded memory)
log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class IndexConfig:
    """hnswlib parameters (M, ef_construction, ef: see BENCHMARKS.md, bench/bench_vectors.py).

    At 100,000 x 384 the defaults reach recall@10 0.986 on vectors of low intrinsic dimension
    (as real embeddings are) and 1.0 on hashing-embedded task summaries, at about 1.3 ms p50.
    On uniform random unit vectors no setting reaches 0.95 within milliseconds (0.21 here):
    without structure, the nearest neighbours are barely nearer than any other vector.

    ``num_threads`` applies to ``add`` only (-1: all cores); searches use one thread each.
    ``initial_capacity`` is where a new index starts; it grows by ``growth`` before it is full.
    """

    m: int = 16
    ef_construction: int = 200
    ef: int = 200
    initial_capacity: int = 1024
    growth: float = 2.0
    num_threads: int = -1

    def __post_init__(self) -> None:
        if self.m < 2 or self.ef_construction < 1 or self.ef < 1 or self.initial_capacity < 1:
            raise ValueError(f"invalid index configuration: {self}")
        if self.growth <= 1.0:
            raise ValueError(f"growth must be greater than 1, got {self.growth}")


@dataclass(frozen=True, slots=True)
class LoadedIndex:
    """An index read back from disk and the metadata it was saved with."""

    index: VectorIndex
    metadata: persistence.IndexMetadata

    @property
    def watermark(self) -> int:
        """The last stream sequence the saved index had applied."""
        return self.metadata.watermark


class VectorIndex:
    """Cosine hnswlib index of ``dimension``-d vectors built by the embedder named ``embedder``."""

    def __init__(self, dimension: int, embedder: str, config: IndexConfig | None = None) -> None:
        if dimension < 1:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.dimension = dimension
        self.embedder = embedder
        self.config = config or IndexConfig()
        self._lock = ReadWriteLock()
        self._hnsw = hnswlib.Index(space="cosine", dim=dimension)
        self._hnsw.init_index(
            max_elements=self.config.initial_capacity,
            ef_construction=self.config.ef_construction,
            M=self.config.m,
        )
        self._hnsw.set_ef(self.config.ef)
        self.mutations = 0  # bumped by every add; IndexSet saves an index only when it moved

    def __len__(self) -> int:
        return int(self._hnsw.get_current_count())

    @property
    def capacity(self) -> int:
        """Number of vectors the index holds before the next resize."""
        return int(self._hnsw.get_max_elements())

    def add(self, labels: Sequence[int] | npt.ArrayLike, vectors: npt.ArrayLike) -> None:
        """Insert or replace the vectors of ``labels`` (non-negative ints below 2**63).

        ``vectors`` has shape ``(len(labels), dimension)``; when a label repeats in one call the
        last vector wins. Raises DimensionMismatchError on a wrong width and VectorIndexError on
        non-finite values or mismatched lengths; nothing is added when it raises.
        """
        ids, matrix = self._validate_batch(labels, vectors)
        if ids.size == 0:
            return
        with self._lock.write():
            needed = len(self) + ids.size
            if needed > self.capacity:
                self._grow(needed)
            self._hnsw.add_items(matrix, ids, num_threads=self.config.num_threads)
            self.mutations += 1

    def resize(self, capacity: int) -> None:
        """Grow the index to hold ``capacity`` vectors (shrinking below the count is refused)."""
        with self._lock.write():
            if capacity < len(self):
                raise VectorIndexError(f"cannot resize to {capacity}: {len(self)} vectors held")
            self._hnsw.resize_index(capacity)

    def set_ef(self, ef: int) -> None:
        """Change the search breadth (higher: better recall, slower); waits for searches."""
        with self._lock.write():
            self.config = dataclasses.replace(self.config, ef=ef)
            self._hnsw.set_ef(ef)

    def search(
        self, vector: npt.ArrayLike, k: int, filter: LabelFilter | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest labels to ``vector`` as ``(label, similarity)``, most similar first.

        ``filter(label) -> bool`` restricts the candidates inside the graph walk (exceptions it
        raises propagate). Returns fewer than ``k`` hits when fewer vectors (or fewer accepted
        by the filter) exist, and ``[]`` on an empty index. Raises DimensionMismatchError.
        """
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        query = self._as_matrix(vector)
        if query.shape[0] != 1:
            raise VectorIndexError(f"search takes one vector, got {query.shape[0]}")
        with self._lock.read():
            count = len(self)
            if count == 0:
                return []
            try:
                labels, distances = self._hnsw.knn_query(
                    query, k=min(k, count), num_threads=1, filter=filter
                )
                found = list(zip(labels[0].tolist(), distances[0].tolist(), strict=True))
            except RuntimeError:
                # hnswlib raises when the walk finds fewer than k candidates, typically when a
                # selective filter leaves fewer than k: answer exactly over what passes instead.
                found = self._exact(query[0], k, filter)
        return [(int(label), min(1.0, max(0.0, 1.0 - float(d)))) for label, d in found]

    def similarities(self, vector: npt.ArrayLike, labels: Sequence[int]) -> list[float]:
        """Exact similarity (1 - cosine distance, clipped to [0, 1]) of ``vector`` to the
        stored vector of each of ``labels``; 0.0 for a label not in the index."""
        query = self._as_matrix(vector)[0]
        rows: dict[int, npt.NDArray[np.float32]] = {}
        with self._lock.read():
            try:
                stored = self._hnsw.get_items(list(labels), return_type="numpy")
                rows = dict(zip(labels, np.asarray(stored, np.float32), strict=True))
            except RuntimeError:  # a label that is not here: read them one by one
                for label in labels:
                    with contextlib.suppress(RuntimeError):
                        item = self._hnsw.get_items([label], return_type="numpy")
                        rows[label] = np.asarray(item, np.float32)[0]
        query_norm = max(float(np.linalg.norm(query)), 1e-30)
        out: list[float] = []
        for label in labels:
            row = rows.get(label)
            if row is None:
                out.append(0.0)
                continue
            cosine = float(row @ query) / max(float(np.linalg.norm(row)) * query_norm, 1e-30)
            out.append(min(1.0, max(0.0, cosine)))
        return out

    def save(
        self, path: Path | str, watermark: int, extra_meta: dict[str, Any] | None = None
    ) -> persistence.IndexMetadata:
        """Save into the directory ``path`` (created if needed); see ``persistence`` for the
        commit order. Returns the metadata written. One saver per directory at a time.
        """
        directory = Path(path)
        if watermark < 0:
            raise ValueError(f"watermark must be non-negative, got {watermark}")
        extra = dict(extra_meta or {})
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise VectorIndexError(f"extra_meta is not JSON-serialisable: {exc}") from exc
        directory.mkdir(parents=True, exist_ok=True)
        token = persistence.new_token()
        temp, final = directory / f".tmp-{token}.hnsw", directory / f"{token}.hnsw"
        try:
            with self._lock.read():
                self._hnsw.save_index(str(temp))
                count = len(self)
            check_complete(temp, count)  # hnswlib does not report a failed write (a full disk)
            persistence.fsync_file(temp)
            digest, size = persistence.file_digest(temp), temp.stat().st_size
            os.replace(temp, final)
        finally:
            temp.unlink(missing_ok=True)
        meta = persistence.IndexMetadata(
            embedder=self.embedder,
            dimension=self.dimension,
            m=self.config.m,
            ef_construction=self.config.ef_construction,
            count=count,
            watermark=watermark,
            index_file=final.name,
            index_bytes=size,
            index_blake2b=digest,
            extra=extra,
        )
        persistence.write_json_atomic(directory / persistence.METADATA_NAME, meta.to_json())
        persistence.remove_stale_files(directory, keep=final.name)
        log.debug("vectors.saved", path=str(directory), count=count, watermark=watermark)
        return meta

    @classmethod
    def load(
        cls,
        path: Path | str,
        expected_embedder: str,
        expected_dim: int,
        config: IndexConfig | None = None,
        *,
        verify: bool = True,
    ) -> LoadedIndex:
        """Open the index saved in directory ``path`` for the expected embedder and dimension.

        M and ef_construction come from the file; ``ef``, ``growth``, ``num_threads`` from
        ``config`` (hnswlib does not save ef). Raises FileNotFoundError when nothing was saved
        there, IndexMismatchError when another embedder or dimension built it, and
        IndexCorruptError on a torn or damaged save (``verify`` also checks the digest).
        """
        directory = Path(path)
        meta = persistence.read_metadata(directory, verify=verify)
        persistence.check_compatible(meta.embedder, meta.dimension, expected_embedder, expected_dim)
        base = config or IndexConfig()
        capacity = max(base.initial_capacity, meta.count)
        merged = dataclasses.replace(
            base, m=meta.m, ef_construction=meta.ef_construction, initial_capacity=capacity
        )
        loaded = hnswlib.Index(space="cosine", dim=meta.dimension)
        try:
            loaded.load_index(str(directory / meta.index_file), max_elements=capacity)
        except RuntimeError as exc:
            raise IndexCorruptError(f"hnswlib could not read {path}: {exc}") from exc
        loaded.set_ef(merged.ef)  # ef is not part of hnswlib's file
        # Built with a one-slot graph that is dropped at once, to reuse __init__'s set-up.
        index = cls(meta.dimension, meta.embedder, dataclasses.replace(merged, initial_capacity=1))
        index.config, index._hnsw = merged, loaded
        if len(index) != meta.count:
            raise IndexCorruptError(
                f"{path} holds {len(index)} vectors, its metadata says {meta.count}"
            )
        return LoadedIndex(index=index, metadata=meta)

    def _grow(self, needed: int) -> None:
        target = max(needed, int(self.capacity * self.config.growth))
        log.debug("vectors.resize", old=self.capacity, new=target)
        self._hnsw.resize_index(target)

    def _as_matrix(self, vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        matrix = np.asarray(vectors, dtype=np.float32)
        if matrix.ndim == 1:
            matrix = matrix.reshape(1, -1)
        if matrix.ndim != 2 or matrix.shape[1] != self.dimension:
            raise DimensionMismatchError(
                f"vectors of shape {np.shape(vectors)} do not fit this index of dimension "
                f"{self.dimension} (embedder {self.embedder!r})"
            )
        return np.ascontiguousarray(matrix)

    def _validate_batch(
        self, labels: Sequence[int] | npt.ArrayLike, vectors: npt.ArrayLike
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float32]]:
        raw = np.asarray(labels)
        matrix = self._as_matrix(vectors)
        if raw.ndim != 1 or raw.shape[0] != matrix.shape[0]:
            raise VectorIndexError(f"{raw.size} labels for {matrix.shape[0]} vectors")
        if raw.size and (raw.dtype.kind not in "iu" or raw.min() < 0 or raw.max() >= 2**63):
            raise VectorIndexError("labels must be integers in [0, 2**63)")
        if not np.isfinite(matrix).all():
            raise VectorIndexError("vectors contain NaN or infinite values")
        ids = raw.astype(np.uint64)
        if np.unique(ids).size != ids.size:
            # Keep the last occurrence of each label, in first-seen order of the survivors.
            _, last_from_end = np.unique(ids[::-1], return_index=True)
            keep = np.sort(ids.size - 1 - last_from_end)
            ids, matrix = ids[keep], matrix[keep]
        return ids, matrix

    def _exact(
        self, query: npt.NDArray[np.float32], k: int, filter: LabelFilter | None
    ) -> list[tuple[int, float]]:
        """Brute-force top-k over the labels ``filter`` accepts, read in bounded chunks."""
        labels = [int(x) for x in self._hnsw.get_ids_list()]
        if filter is not None:
            labels = [label for label in labels if filter(label)]
        query_norm = max(float(np.linalg.norm(query)), 1e-30)
        best: list[tuple[float, int]] = []  # (distance, label), at most k kept
        for start in range(0, len(labels), _EXACT_CHUNK):
            chunk = labels[start : start + _EXACT_CHUNK]
            stored = np.asarray(self._hnsw.get_items(chunk, return_type="numpy"), np.float32)
            norms = np.maximum(np.linalg.norm(stored, axis=1) * query_norm, 1e-30)
            distances = 1.0 - (stored @ query) / norms
            best = heapq.nsmallest(k, [*best, *zip(distances.tolist(), chunk, strict=True)])
        return [(label, distance) for distance, label in best]

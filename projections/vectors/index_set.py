"""One VectorIndex per (namespace, collection): namespaces cannot leak because they never meet.

Why separate indexes rather than one index with a namespace filter:

- Isolation by construction. A search names exactly one namespace and only that namespace's
  graphs are walked; no filter callback has to be right on every call for B's memories to stay
  out of A's results.
- Recall and speed do not depend on the mix. With one shared graph, a small namespace inside a
  big one is a highly selective filter: hnswlib has to visit many rejected nodes (slower) and can
  still miss neighbours unless ef grows with the selectivity. Per-namespace graphs keep recall
  and latency those of an unfiltered search of that namespace's size.
- Lifecycle per namespace: dropping or rebuilding one touches one directory.

The cost: a query over several collections searches each and merges (few, small, in-process),
and each index has a small fixed overhead. Labels are assigned by the caller (the stream sequence
of the source event is the natural choice) and should be unique across collections so merged hits
stay unambiguous. The filter argument of ``search`` remains for attribute filters (success only,
task type), never for scoping.

Saving a set: each index that changed since the last save is saved into its own directory (see
``persistence``), then ``indexset.json`` (embedder, dimension, watermark, the indexes) is replaced
atomically as the commit point. After a crash part-way, the old manifest's watermark is still the
resume point: indexes saved further along simply receive the same vectors again, which ``add``
makes a no-op (same label, same vector). This needs the projection to add by stable labels.
"""

from __future__ import annotations

import heapq
import json
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy.typing as npt

from engine.errors import IndexCorruptError, VectorIndexError
from projections.file_names import directory_name
from projections.vectors import persistence
from projections.vectors.index import IndexConfig, LabelFilter, VectorIndex

__all__ = ["MANIFEST_NAME", "IndexSet", "SetHit"]

MANIFEST_NAME = "indexset.json"


@dataclass(frozen=True, slots=True)
class SetHit:
    """One search result: the collection it came from, its label and its similarity (0..1)."""

    collection: str
    label: int
    similarity: float


class IndexSet:
    """The vector indexes of one projection, all built by one embedder and dimension."""

    def __init__(self, embedder: str, dimension: int, config: IndexConfig | None = None) -> None:
        self.embedder = embedder
        self.dimension = dimension
        self.config = config or IndexConfig()
        self._indexes: dict[tuple[str, str], VectorIndex] = {}
        self._saved_at: dict[tuple[str, str], int] = {}  # key -> index.mutations at last save
        self._sweep = True
        """Look for index directories no manifest lists at the next save (after a drop, and
        once per process: a crash may have left a dropped one)."""

    def keys(self) -> list[tuple[str, str]]:
        """The (namespace, collection) pairs that have an index, sorted."""
        return sorted(self._indexes)

    def get(self, namespace: str, collection: str) -> VectorIndex | None:
        """The index of this pair, or None when nothing was ever added to it."""
        return self._indexes.get((namespace, collection))

    def get_or_create(self, namespace: str, collection: str) -> VectorIndex:
        """The index of this pair, created empty on first use."""
        key = (namespace, collection)
        index = self._indexes.get(key)
        if index is None:
            index = VectorIndex(self.dimension, self.embedder, self.config)
            self._indexes[key] = index
        return index

    def drop(self, namespace: str) -> None:
        """Forget every index of ``namespace`` (a purged tenant); their directories, which the
        next save's manifest no longer lists, are deleted after that save commits."""
        for key in [k for k in self._indexes if k[0] == namespace]:
            del self._indexes[key]
            self._saved_at.pop(key, None)
        self._sweep = True

    def add(
        self, namespace: str, collection: str, labels: npt.ArrayLike, vectors: npt.ArrayLike
    ) -> None:
        """Insert or replace vectors in the (namespace, collection) index; see VectorIndex.add."""
        self.get_or_create(namespace, collection).add(labels, vectors)

    def search(
        self,
        vector: npt.ArrayLike,
        k: int,
        *,
        namespace: str,
        collections: Iterable[str] | None = None,
        filter: LabelFilter | None = None,
    ) -> list[SetHit]:
        """The ``k`` most similar hits of ``namespace`` only, over ``collections`` (default: all
        of that namespace), most similar first; ``[]`` when the namespace has no index.
        Ties are broken by collection, then label, so results are deterministic.
        """
        wanted = None if collections is None else set(collections)
        hits: list[SetHit] = []
        for (ns, collection), index in sorted(self._indexes.items()):
            if ns != namespace or (wanted is not None and collection not in wanted):
                continue
            hits.extend(
                SetHit(collection, label, similarity)
                for label, similarity in index.search(vector, k, filter=filter)
            )
        return heapq.nsmallest(k, hits, key=lambda h: (-h.similarity, h.collection, h.label))

    def similarities(
        self, vector: npt.ArrayLike, namespace: str, items: Sequence[tuple[str, int]]
    ) -> list[float]:
        """Exact similarity (0..1) of ``vector`` to each ``(collection, label)`` of
        ``namespace`` (0.0 for one that has no vector)."""
        wanted: dict[str, list[int]] = {}
        for collection, label in items:
            wanted.setdefault(collection, []).append(label)
        found: dict[tuple[str, int], float] = {}
        for collection, labels in wanted.items():
            index = self._indexes.get((namespace, collection))
            if index is not None:
                scores = index.similarities(vector, labels)
                found.update(((collection, lb), sc) for lb, sc in zip(labels, scores, strict=True))
        return [found.get(item, 0.0) for item in items]

    def save(
        self, root: Path | str, watermark: int, extra_meta: dict[str, Any] | None = None
    ) -> None:
        """Save changed indexes under ``root``, then commit the manifest (see the module doc)."""
        base = Path(root)
        extra = dict(extra_meta or {})
        try:
            json.dumps(extra)
        except (TypeError, ValueError) as exc:
            raise VectorIndexError(f"extra_meta is not JSON-serialisable: {exc}") from exc
        entries = []
        for key in self.keys():
            namespace, collection = key
            directory = base / directory_name(namespace) / directory_name(collection)
            index = self._indexes[key]
            mutations = index.mutations
            if self._saved_at.get(key) != mutations or not directory.is_dir():
                index.save(directory, watermark, {"namespace": namespace, "collection": collection})
                self._saved_at[key] = mutations
            relative = str(directory.relative_to(base))
            entries.append(
                {"namespace": namespace, "collection": collection, "directory": relative}
            )
        base.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": persistence.FORMAT_VERSION,
            "embedder": self.embedder,
            "dimension": self.dimension,
            "watermark": watermark,
            "indexes": entries,
            "extra": extra,
        }
        persistence.write_json_atomic(base / MANIFEST_NAME, manifest)
        if self._sweep:
            _remove_unlisted(base, {str(e["directory"]) for e in entries})
            self._sweep = False

    @classmethod
    def load(
        cls,
        root: Path | str,
        expected_embedder: str,
        expected_dim: int,
        config: IndexConfig | None = None,
    ) -> tuple[IndexSet, int]:
        """Open the set saved under ``root``; returns it and the watermark to resume after.

        Raises FileNotFoundError when no set was ever committed there, IndexMismatchError when
        another embedder or dimension built it, IndexCorruptError when an index it lists is
        missing or damaged.
        """
        base = Path(root)
        try:
            manifest = json.loads((base / MANIFEST_NAME).read_text(encoding="utf-8"))
            watermark = int(manifest["watermark"])
            built_by = (str(manifest["embedder"]), int(manifest["dimension"]))
            listed = [
                (e["namespace"], e["collection"], e["directory"]) for e in manifest["indexes"]
            ]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise IndexCorruptError(f"{base / MANIFEST_NAME} is not an index set manifest") from exc
        persistence.check_compatible(*built_by, expected_embedder, expected_dim)
        index_set = cls(expected_embedder, expected_dim, config)
        for namespace, collection, directory in listed:
            try:
                loaded = VectorIndex.load(base / directory, expected_embedder, expected_dim, config)
            except FileNotFoundError as exc:
                raise IndexCorruptError(
                    f"the index set lists {directory}, which is missing"
                ) from exc
            index_set._indexes[(namespace, collection)] = loaded.index
            index_set._saved_at[(namespace, collection)] = loaded.index.mutations
        return index_set, watermark


def _remove_unlisted(base: Path, listed: set[str]) -> None:
    """Delete the index directories under ``base`` that the manifest just committed does not
    list (a dropped namespace's), and namespace directories left empty: run after the commit,
    so a crash leaves them to the next save."""
    for namespace_dir in [p for p in base.iterdir() if p.is_dir()]:
        for index_dir in [p for p in namespace_dir.iterdir() if p.is_dir()]:
            relative = str(index_dir.relative_to(base))
            if relative not in listed and (index_dir / persistence.METADATA_NAME).exists():
                shutil.rmtree(index_dir, ignore_errors=True)
        if not any(namespace_dir.iterdir()):
            namespace_dir.rmdir()

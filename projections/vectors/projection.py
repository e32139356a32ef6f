"""The vector projection: task summaries, decisions and knowledge as searchable vectors.

One more projection of the log, under the same rules: labels are stream sequences; the index set and
the memory records are saved together with one watermark (records file first, named by its
watermark, then the index manifest that names it: a crash leaves the previous pair). Like the
learner it saves by a SavePolicy (``save_every`` events, a bounded share of the time); after a crash
the runner resumes at the saved watermark and re-adds the tail (re-adding a label is a no-op). The
index records the embedder and dimension that built it and refuses to open with another (changing
model is a reindex).

Locking: searches must not wait for a save (seconds on a large index set). The projection's lock
is a readers-writer lock: a batch's changes to the records and indexes hold it alone
(milliseconds); searches and the save hold it shared. The save lock serialises writers with
saves (the thread that applied a batch saves it), so nothing changes while a save reads, and the
watermark written is the one of exactly the records and vectors written.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DimensionMismatchError, IndexCorruptError, UsageError
from engine.events import DecisionOutcome, MemoryRecalled, TaskExecuted
from projections._rwlock import ReadWriteLock
from projections.atomic_files import write_atomic
from projections.embedders import Embedder
from projections.identity import SeenIds, event_key
from projections.records import DeadLetter, SequencedEvent
from projections.save_policy import SavePolicy, policy_for
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier
from projections.vectors.index import IndexConfig
from projections.vectors.index_set import MANIFEST_NAME, IndexSet
from projections.vectors.memories import COLLECTIONS, Memory, memory_of
from projections.vectors.persistence import (
    read_seen,
    remove_stale_seen,
    write_seen,
)

__all__ = ["VectorProjection"]

# One thread per add: hnswlib's multi-threaded insertion order varies, and the same events must
# build the same graph (identical neighbours after a replay).
DETERMINISTIC = IndexConfig(num_threads=1)


class VectorProjection:
    """Embeds memories into per-(namespace, collection) hnswlib indexes; serves searches."""

    name = "vectors"

    def __init__(
        self,
        directory: Path | None,
        embedder: Embedder,
        *,
        config: IndexConfig = DETERMINISTIC,
        classifier: TaskTypeClassifier | None = None,
        save_every: int | None = None,
        save_policy: SavePolicy | None = None,
    ) -> None:
        self.directory = directory
        self.embedder = embedder
        self.config = config
        self.classifier = classifier or KeywordTaskTypeClassifier()
        self.save_policy = policy_for(save_every, save_policy)
        self._lock = ReadWriteLock()  # records and indexes: changes alone, reads shared
        self._save_lock = threading.Lock()  # writers and saves, one at a time
        self.memories: dict[int, Memory] = {}
        self._by_id: dict[str, int] = {}
        self._by_key: dict[tuple[str, str, str], int] = {}
        self._seen = SeenIds()
        self._unsaved = 0
        self.indexes = IndexSet(embedder.name, embedder.dimension, config)
        self._saved = 0
        self._applied = 0
        if directory is not None and (directory / MANIFEST_NAME).exists():
            self._load(directory)

    # -- the projection port --------------------------------------------------------------------

    def checkpoint(self) -> int:
        return self._saved

    def duplicates_seen(self) -> int:
        """Events ignored because their envelope id was applied before (no lock: one int)."""
        return self._seen.duplicates

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None:
        """Validate everything first (a bad precomputed vector raises before any change), then
        embed the batch's texts in one call and add per (namespace, collection)."""
        fresh = [e for e in events if e.sequence > self._applied]
        # The first occurrence of an envelope id wins; a repeat changes nothing (and is counted).
        keys = [event_key(e.event.id) for e in fresh]
        firsts = self._seen.fresh(keys)
        fresh = [e for e, first in zip(fresh, firsts, strict=True) if first]
        planned: list[tuple[Memory, list[float] | None]] = []
        for item in fresh:
            data = item.event.data
            task_type = None
            if isinstance(data, TaskExecuted):
                task_type = data.task_type or self.classifier.classify(data.execution_summary)
                if data.embedding is not None and len(data.embedding) != self.embedder.dimension:
                    raise DimensionMismatchError(
                        f"task.executed {item.event.id} carries a {len(data.embedding)}-d "
                        f"embedding; the index holds {self.embedder.dimension}-d vectors "
                        f"({self.embedder.name})"
                    )
            memory = memory_of(item.event, item.sequence, task_type)
            if memory is not None:
                embedding = data.embedding if isinstance(data, TaskExecuted) else None
                planned.append((memory, embedding))
        to_embed = [m.text for m, vector in planned if vector is None]
        embedded = iter(self.embedder.embed(to_embed)) if to_embed else iter(())
        vectors = [
            np.asarray(v, dtype=np.float32) if v is not None else next(embedded) for _, v in planned
        ]
        by_sequence = {memory.sequence: position for position, (memory, _) in enumerate(planned)}
        with self._save_lock:
            with self._lock.write():
                # Records change strictly in stream order (an outcome that comes before its
                # decision must not reach it), whatever the batching; vectors are added after,
                # grouped, in the same order.
                for item in fresh:
                    position = by_sequence.get(item.sequence)
                    if position is not None:
                        self._register(planned[position][0])
                    self._update(item)
                self._index(planned, vectors)
                self._seen.extend(k for k, first in zip(keys, firsts, strict=True) if first)
                self._seen.duplicates += firsts.count(False)
                self._applied = max(self._applied, last_sequence)
            self._unsaved += len(events) + len(dead_letters)
            if self.save_policy.due(self._unsaved):
                self.save_policy.timed(self._save)

    def _register(self, memory: Memory) -> None:
        if memory.key is not None:
            previous = self._by_key.get((memory.namespace, memory.collection, memory.key))
            if previous is not None:
                self.memories[previous].superseded = True
                memory.reused_count = self.memories[previous].reused_count
                memory.success = self.memories[previous].success
            self._by_key[(memory.namespace, memory.collection, memory.key)] = memory.sequence
        self.memories[memory.sequence] = memory
        self._by_id[memory.id] = memory.sequence

    def _index(self, planned: list[tuple[Memory, list[float] | None]], vectors: list[Any]) -> None:
        groups: dict[tuple[str, str], list[int]] = {}
        for position, (memory, _) in enumerate(planned):
            groups.setdefault((memory.namespace, memory.collection), []).append(position)
        for (namespace, collection), positions in groups.items():
            self.indexes.add(
                namespace,
                collection,
                np.asarray([planned[p][0].sequence for p in positions], dtype=np.int64),
                np.vstack([vectors[p] for p in positions]),
            )

    def _update(self, item: SequencedEvent) -> None:
        data, namespace = item.event.data, item.event.namespace
        if isinstance(data, MemoryRecalled):
            for memory_id in data.memory_ids:
                label = self._by_id.get(memory_id)
                if label is not None and self.memories[label].namespace == namespace:
                    self.memories[label].reused_count += 1
        elif isinstance(data, DecisionOutcome):
            label = self._by_key.get((namespace, "decisions", data.decision_id))
            if label is not None:
                self.memories[label].success = data.success

    def close(self) -> None:
        self.flush()

    def flush(self) -> None:
        with self._save_lock:
            self._save()

    # -- persistence ----------------------------------------------------------------------------

    def _save(self) -> None:
        """Write records, indexes and watermark; the caller holds the save lock, so no batch
        changes them meanwhile, and searches go on beside the save."""
        self._unsaved = 0
        if self.directory is None or self._applied <= self._saved:
            return
        with self._lock.read():
            applied = self._applied
            self._write(self.directory, applied)
        self._saved = applied

    def _write(self, directory: Path, applied: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        records = f"memories-{applied}.json.gz"
        body = json.dumps(
            [m.to_json() for m in self.memories.values()], separators=(",", ":")
        ).encode()
        write_atomic(directory / records, gzip.compress(body, 5))  # no temp file left on failure
        seen = write_seen(directory, applied, self._seen)
        self.indexes.save(directory, applied, {"memories": records, **seen})
        for stale in directory.glob("memories-*.json.gz"):
            if stale.name != records:
                stale.unlink(missing_ok=True)
        remove_stale_seen(directory, seen)

    def _load(self, directory: Path) -> None:
        indexes, watermark = IndexSet.load(
            directory, self.embedder.name, self.embedder.dimension, self.config
        )
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
        records = directory / str(manifest.get("extra", {}).get("memories", ""))
        try:
            raw = json.loads(gzip.decompress(records.read_bytes()))
        except (OSError, ValueError, EOFError) as exc:
            raise IndexCorruptError(f"memory records {records} unreadable: {exc}") from None
        self.indexes = indexes
        self._seen = read_seen(directory, manifest.get("extra", {}))
        for entry in raw:
            memory = Memory(**entry)
            self.memories[memory.sequence] = memory
            self._by_id[memory.id] = memory.sequence
            if memory.key is not None and not memory.superseded:
                self._by_key[(memory.namespace, memory.collection, memory.key)] = memory.sequence
        self._saved = self._applied = watermark

    # -- reading --------------------------------------------------------------------------------

    def search(
        self,
        *,
        namespace: str,
        text: str | None = None,
        vector: Sequence[float] | None = None,
        top_k: int = 5,
        similarity_threshold: float = 0.0,
        success_only: bool = False,
        collections: Sequence[str] | None = None,
        task_type: str | None = None,
    ) -> list[dict[str, Any]]:
        """Most similar memories of ``namespace`` (never another's), as SearchHit dicts."""
        if (text is None) == (vector is None):
            raise UsageError("search needs exactly one of text or vector")
        if top_k < 1 or top_k > 1_000:
            raise UsageError("top_k must be between 1 and 1000")
        unknown = set(collections or ()) - set(COLLECTIONS)
        if unknown:
            raise UsageError(f"unknown collections {sorted(unknown)}; known: {list(COLLECTIONS)}")
        query = (
            self.embedder.embed([text])[0]
            if text is not None
            else np.asarray(vector, dtype=np.float32)
        )
        if query.shape != (self.embedder.dimension,):
            raise DimensionMismatchError(
                f"query vector has {query.shape[-1] if query.ndim else 0} dimensions; the index "
                f"holds {self.embedder.dimension}-d vectors ({self.embedder.name})"
            )

        def accept(label: int) -> bool:
            memory = self.memories.get(label)
            return (
                memory is not None
                and not memory.superseded
                and (not success_only or memory.success is True)
                and (task_type is None or memory.task_type == task_type)
            )

        with self._lock.read():
            hits = self.indexes.search(
                query, top_k, namespace=namespace, collections=collections, filter=accept
            )
            return [
                self.memories[h.label].hit(h.similarity)
                for h in hits
                if h.similarity >= similarity_threshold
            ]

    def memory(self, memory_id: str) -> Memory | None:
        with self._lock.read():
            label = self._by_id.get(memory_id)
            return None if label is None else self.memories[label]

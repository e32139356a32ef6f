"""The memory projection: task summaries, decisions and knowledge, searchable by vector and by
words (hybrid retrieval: ``retrieval``).

One more projection of the log, under the same rules: labels are stream sequences; the memory
records, the vector index set and the lexical (BM25) indexes are saved together with one
watermark (records and lexical files first, named by their watermark, then the index manifest
that names them: a crash leaves the previous set).

Why the lexical index lives here rather than in a projection of its own: it indexes exactly the
memories this projection decides exist (the same labels, the same duplicate collapsing and
superseding, see ``registry``), so one apply, one watermark and one save keep the two halves of
a hybrid search at the same point of the stream by construction; snapshots (which pack this
directory) and ``engram reindex`` (which replays it) carry both. Its logic is a store of its own,
pure and tested apart (``projections.lexical``); only the wiring is shared. The index records
the embedder and dimension that built it and refuses to open with another (changing model is a
reindex).

A whole-state projection (``projections.whole_state``: saved by a SavePolicy and on close,
``checkpoint()`` the saved watermark, the commit order and locking written there, so searches
never wait for a save). After a crash the runner resumes at the saved watermark and re-adds the
tail (re-adding a label is a no-op). A batch is validated and its texts embedded before any lock
is taken (``_prepare``); only the changes to the records and indexes hold the lock alone.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import DimensionMismatchError, IndexCorruptError, UsageError
from engine.events import TaskExecuted
from projections.atomic_files import write_atomic
from projections.embedders import Embedder
from projections.identity import SeenIds, event_key
from projections.lexical.bm25 import BM25Params
from projections.lexical.store import LexicalSet
from projections.purging import purged_namespace
from projections.records import SequencedEvent
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
from projections.vectors.registry import MemoryRegistry
from projections.vectors.retrieval import MODES, Query, SearchConfig, retrieve
from projections.whole_state import WholeStateBase

__all__ = ["VectorProjection"]

# One thread per add: hnswlib's multi-threaded insertion order varies, and the same events must
# build the same graph (identical neighbours after a replay).
DETERMINISTIC = IndexConfig(num_threads=1)


@dataclass
class VectorState:
    """Everything the vector projection saves under one watermark: the memory records, the
    envelope ids applied, the vector indexes and the lexical indexes."""

    registry: MemoryRegistry
    seen: SeenIds
    indexes: IndexSet
    lexical: LexicalSet
    applied: int = 0
    """The last stream sequence taken in (applied or skipped)."""


class VectorProjection(WholeStateBase[VectorState]):
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
        search: SearchConfig | None = None,
        bm25: BM25Params | None = None,
    ) -> None:
        self.embedder = embedder
        self.config = config
        self.search_config = search or SearchConfig()
        self.classifier = classifier or KeywordTaskTypeClassifier()
        state = VectorState(
            MemoryRegistry(),
            SeenIds(),
            IndexSet(embedder.name, embedder.dimension, config),
            LexicalSet(bm25),
        )
        if directory is not None and (directory / MANIFEST_NAME).exists():
            state = self._load(directory, state.lexical.params)
        super().__init__(directory, state, policy_for(save_every, save_policy))

    # -- the state's parts ----------------------------------------------------------------------

    @property
    def registry(self) -> MemoryRegistry:
        return self.state.registry

    @property
    def indexes(self) -> IndexSet:
        return self.state.indexes

    @property
    def lexical(self) -> LexicalSet:
        return self.state.lexical

    @property
    def memories(self) -> dict[int, Memory]:
        """Every memory record by label, superseded ones included (read-only by convention)."""
        return self.registry.memories

    def duplicates_seen(self) -> int:
        """Events ignored because their envelope id was applied before (no lock: one int)."""
        return self.state.seen.duplicates

    # -- the whole-state hooks ------------------------------------------------------------------

    def _watermark(self) -> int:
        return self.state.applied

    def _prepare(self, events: Sequence[SequencedEvent], last_sequence: int) -> Callable[[], None]:
        """Validate everything first (a bad precomputed vector raises before any change), then
        embed the batch's texts in one call; the change adds per (namespace, collection)."""
        state = self.state
        items = [e for e in events if e.sequence > state.applied]
        # The first occurrence of an envelope id wins; a repeat changes nothing (and is counted).
        keys = [event_key(e.event.id) for e in items]
        firsts = self._firsts(items, keys)
        fresh = [e for e, first in zip(items, firsts, strict=True) if first]
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

        def change() -> None:
            # Records change strictly in stream order (an outcome that comes before its
            # decision must not reach it), whatever the batching; vectors are added after,
            # grouped, in the same order (up to a purge, which forgets what came before it).
            # A memory whose text a live one already holds merges into it (registry): only
            # the new ones are indexed.
            new: list[int] = []
            for item, key, first in zip(items, keys, firsts, strict=True):
                owner = item.event.namespace
                if not first:
                    state.seen.count_duplicate(owner)
                    continue
                purged = purged_namespace(item.event)
                if purged is not None:
                    self._index([planned[p][0] for p in new], [vectors[p] for p in new])
                    new = []
                    self._forget(purged)
                state.seen.add(key, owner)
                position = by_sequence.get(item.sequence)
                if position is not None and state.registry.register(planned[position][0]):
                    new.append(position)
                state.registry.update(item)
            self._index([planned[p][0] for p in new], [vectors[p] for p in new])
            state.applied = max(state.applied, last_sequence)

        return change

    def _firsts(self, items: Sequence[SequencedEvent], keys: list[int]) -> list[bool]:
        """For each of ``items``: is it the first occurrence of its envelope id, counting what
        the state holds and what comes earlier in the batch, and forgetting, at each purge in
        the batch, the ids its namespace used first (so its later events are first again)?"""
        seen = self.state.seen
        if not any(purged_namespace(e.event) is not None for e in items):
            return seen.fresh(keys)
        hidden: set[int] = set()  # the state's ids of the namespaces purged so far
        earlier: dict[int, str] = {}  # ids first used earlier in the batch -> their namespace
        verdicts = []
        for item, key in zip(items, keys, strict=True):
            known = key in earlier or (key in seen and key not in hidden)
            verdicts.append(not known)
            if known:
                continue
            purged = purged_namespace(item.event)
            if purged is not None:
                hidden.update(seen.owned(purged).tolist())
                earlier = {k: ns for k, ns in earlier.items() if ns != purged}
            earlier[key] = item.event.namespace
        return verdicts

    def _forget(self, namespace: str) -> None:
        """Forget ``namespace`` (a purge; the caller holds the state's lock alone): its memory
        records, its vector and lexical indexes (their files go at the next save) and the ids
        and repeats of its events."""
        self.state.registry.forget(namespace)
        self.state.indexes.drop(namespace)
        self.state.lexical.drop(namespace)
        self.state.seen.forget(namespace)

    def _index(self, memories: list[Memory], vectors: list[Any]) -> None:
        groups: dict[tuple[str, str], list[int]] = {}
        for position, memory in enumerate(memories):
            groups.setdefault((memory.namespace, memory.collection), []).append(position)
            self.lexical.add(memory.namespace, memory.sequence, memory.text)
        for (namespace, collection), positions in groups.items():
            self.indexes.add(
                namespace,
                collection,
                np.asarray([memories[p].sequence for p in positions], dtype=np.int64),
                np.vstack([vectors[p] for p in positions]),
            )

    # -- persistence ----------------------------------------------------------------------------

    def _write(self, directory: Path) -> None:
        """Records and lexical files first, named by their watermark, then the index manifest
        that names them: a crash leaves the previous set."""
        applied = self.state.applied
        directory.mkdir(parents=True, exist_ok=True)
        records = f"memories-{applied}.json.gz"
        body = json.dumps(
            [m.to_json() for m in self.memories.values()], separators=(",", ":")
        ).encode()
        write_atomic(directory / records, gzip.compress(body, 5))  # no temp file left on failure
        seen = write_seen(directory, applied, self.state.seen)
        lexical = self.lexical.save(directory, applied)
        self.indexes.save(directory, applied, {"memories": records, **seen, "lexical": lexical})
        for stale in directory.glob("memories-*.json.gz"):
            if stale.name != records:
                stale.unlink(missing_ok=True)
        remove_stale_seen(directory, seen)
        LexicalSet.remove_stale(directory, lexical)

    def _load(self, directory: Path, bm25: BM25Params) -> VectorState:
        indexes, watermark = IndexSet.load(
            directory, self.embedder.name, self.embedder.dimension, self.config
        )
        manifest = json.loads((directory / MANIFEST_NAME).read_text())
        records = directory / str(manifest.get("extra", {}).get("memories", ""))
        try:
            raw = json.loads(gzip.decompress(records.read_bytes()))
        except (OSError, ValueError, EOFError) as exc:
            raise IndexCorruptError(f"memory records {records} unreadable: {exc}") from None
        extra = manifest.get("extra", {})
        registry = MemoryRegistry.restore(Memory.from_json(entry) for entry in raw)
        lexical = LexicalSet.load(
            directory,
            extra.get("lexical"),
            ((m.namespace, m.sequence, m.text) for m in registry),
            bm25,
        )
        return VectorState(registry, read_seen(directory, extra), indexes, lexical, watermark)

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
        mode: str = "hybrid",
        group_duplicates: bool = True,
        duplicate_similarity: float | None = None,
    ) -> list[dict[str, Any]]:
        """The memories of ``namespace`` (never another's) most similar to the query, as
        SearchHit dicts, most similar first (``retrieval`` says how each mode ranks and what
        ``similarity_score`` means). ``text`` feeds the lexical half and, when no ``vector`` is
        given, is embedded for the vector half; ``lexical`` mode needs ``text``. Near-duplicate
        hits are grouped under the best one (``duplicates``, ``duplicate_ids``) unless
        ``group_duplicates`` is false. Raises UsageError on a bad argument and
        DimensionMismatchError on a vector of another width."""
        if text is None and vector is None:
            raise UsageError("search needs text or a vector")
        if mode not in MODES:
            raise UsageError(f"unknown search mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "lexical" and text is None:
            raise UsageError("a lexical search needs text")
        if top_k < 1 or top_k > 1_000:
            raise UsageError("top_k must be between 1 and 1000")
        if not 0.0 <= similarity_threshold <= 1.0:
            raise UsageError("similarity_threshold must be between 0 and 1")
        duplicates = (
            self.search_config.duplicate_similarity
            if duplicate_similarity is None
            else duplicate_similarity
        )
        if not 0.0 < duplicates <= 1.0:
            raise UsageError("duplicate_similarity must be in (0, 1]")
        unknown = set(collections or ()) - set(COLLECTIONS)
        if unknown:
            raise UsageError(f"unknown collections {sorted(unknown)}; known: {list(COLLECTIONS)}")
        query_vector = None
        if mode != "lexical":
            query_vector = (
                np.asarray(vector, dtype=np.float32)
                if vector is not None
                else self.embedder.embed([text or ""])[0]
            )
            if query_vector.shape != (self.embedder.dimension,):
                raise DimensionMismatchError(
                    f"query vector has {query_vector.shape[-1] if query_vector.ndim else 0} "
                    f"dimensions; the index holds {self.embedder.dimension}-d vectors "
                    f"({self.embedder.name})"
                )

        def accept(label: int) -> bool:
            memory = self.registry.memories.get(label)
            return (
                memory is not None
                and not memory.superseded
                and (not success_only or memory.success is True)
                and (task_type is None or memory.task_type == task_type)
            )

        # hnswlib calls a filter back for every node it visits: when it would accept them all
        # (no filter asked, nothing superseded in the namespace), the walk goes without it.
        every = not success_only and task_type is None

        query = Query(
            namespace=namespace,
            mode=mode,
            top_k=top_k,
            threshold=similarity_threshold,
            accept=accept,
            collections=collections,
            text=text,
            vector=query_vector,
            group_duplicates=group_duplicates,
            duplicate_similarity=duplicates,
        )
        with self._lock.read():
            if every and self.registry.superseded_in(namespace) == 0:
                query = dataclasses.replace(query, accept=None)
            return retrieve(query, self.registry, self.indexes, self.lexical, self.search_config)

    def memory(self, memory_id: str) -> Memory | None:
        """The memory an envelope id created or merged into (None: none)."""
        with self._lock.read():
            return self.registry.by_id(memory_id)

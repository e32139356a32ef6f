"""The semantic cache's state and how each event changes it (pure: no I/O, no wall clock).

Per namespace: the live entries by key, their labels (the puts' sequences) in a vector index, a
heap of expiry times, and counters (puts, replaced, expired, removed). Per namespace too, a
clock: the newest ``occurred_at`` of the namespace's events applied so far, whatever their type.

Applying one event (a first occurrence of its envelope id; repeats are counted and ignored):

1. a ``namespace.purged`` of its own namespace forgets that namespace (entries, index, clock,
   counters, the ids its events used first), then is recorded as its event like any other;
2. the namespace's clock moves to the event's time if that is later;
3. a ``cache.put`` adds its entry, replacing a live one of the same key (prompt and model); a
   ``cache.evicted`` removes the live entry of its key, if any;
4. every live entry of the namespace whose ``expires_at`` the clock is now past is evicted.

Why a clock per namespace: a tenant's cache must not depend on another tenant's events (a purge
could not undo that, and engines owning different tenant sets would decide differently). So
eviction is a function of the namespace's own history, the same live, replayed or restored; a
lookup still judges expiry by its own time (the wall clock), so an entry the log's time has not
reached yet is never served past its ``expires_at``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.events.cache import CacheEvicted
from projections.cache.entries import CacheEntry, EntryKey, entry_of, prompt_key
from projections.cache.prompt_index import IndexParams, PromptIndex
from projections.identity import SeenIds, event_key
from projections.purging import purged_namespace
from projections.records import SequencedEvent

__all__ = ["COUNTERS", "CacheState", "NamespaceCache", "state_digest"]

COUNTERS = ("puts", "replaced", "expired", "removed")
"""What each namespace counts: puts applied, puts that replaced a live entry, entries evicted
because the namespace's clock passed their ``expires_at``, entries a ``cache.evicted`` removed."""


@dataclass
class NamespaceCache:
    """One namespace's live entries, their vectors and expiries."""

    dimension: int
    params: IndexParams
    entries: dict[EntryKey, CacheEntry] = field(default_factory=dict)
    labels: dict[int, EntryKey] = field(default_factory=dict)
    """Live labels (put sequences) -> their entry's key."""
    texts: dict[str, set[str | None]] = field(default_factory=dict)
    """Normalised prompt -> the models with a live entry of it (a lookup of the same prompt
    finds it here, whatever the graph walk reaches)."""
    index: PromptIndex | None = None
    expiries: list[tuple[float, int]] = field(default_factory=list)
    """A heap of (expires_at, label); labels no longer live are skipped when popped."""
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    mutations: int = 0
    """Bumped by every change of the index (its file is rewritten only when it moved)."""

    def put(self, entry: CacheEntry, vector: npt.NDArray[np.float32]) -> None:
        self.counters["puts"] += 1
        if entry.key in self.entries:
            self.counters["replaced"] += 1
            self._drop(entry.key)
        if self.index is None:
            self.index = PromptIndex(self.dimension, self.params)
        self.index.add([entry.sequence], vector.reshape(1, -1))
        self.add_entry(entry)
        heapq.heappush(self.expiries, (entry.expires_at, entry.sequence))
        self.mutations += 1

    def add_entry(self, entry: CacheEntry) -> None:
        """Hold ``entry`` (its vector is the caller's to index)."""
        self.entries[entry.key] = entry
        self.labels[entry.sequence] = entry.key
        self.texts.setdefault(entry.key[1], set()).add(entry.key[0])

    def same_prompt(self, text: str, model: str | None) -> list[CacheEntry]:
        """The live entries of the normalised prompt ``text`` (of ``model`` when given)."""
        models = self.texts.get(text, set())
        chosen = models if model is None else models & {model}
        return [self.entries[(m, text)] for m in chosen]

    def remove(self, key: EntryKey) -> None:
        if key in self.entries:
            self.counters["removed"] += 1
            self._drop(key)

    def expire(self, clock: float) -> None:
        """Evict every live entry whose ``expires_at`` is before ``clock``."""
        while self.expiries and self.expiries[0][0] < clock:
            _, label = heapq.heappop(self.expiries)
            key = self.labels.get(label)
            if key is not None:
                self.counters["expired"] += 1
                self._drop(key)
        if len(self.expiries) > 2 * len(self.entries) + 1_024:  # stale ones pile up: rebuild
            self.expiries = sorted((e.expires_at, e.sequence) for e in self.entries.values())

    def _drop(self, key: EntryKey) -> None:
        entry = self.entries.pop(key)
        del self.labels[entry.sequence]
        models = self.texts[key[1]]
        models.discard(key[0])
        if not models:
            del self.texts[key[1]]
        assert self.index is not None  # a live entry is in the index
        if not self.entries:
            self.index = None  # nothing live: the graph goes whole
        else:
            self.index.delete(entry.sequence)
            if self.index.needs_compaction():
                self.index = self.index.compacted(list(self.labels))
        self.mutations += 1

    def earliest_expiry(self) -> float | None:
        """A lower bound of the live entries' ``expires_at`` (None: nothing live)."""
        return self.expiries[0][0] if self.entries and self.expiries else None

    def stats(self) -> dict[str, int]:
        return {"entries": len(self.entries), **self.counters}


@dataclass
class CacheState:
    """Every namespace's cache, the namespaces' clocks and the envelope ids applied."""

    dimension: int
    params: IndexParams = field(default_factory=IndexParams)
    namespaces: dict[str, NamespaceCache] = field(default_factory=dict)
    clocks: dict[str, float] = field(default_factory=dict)
    """namespace -> the newest ``occurred_at`` (epoch seconds) of its events applied."""
    seen: SeenIds = field(default_factory=SeenIds)
    applied: int = 0
    """The last stream sequence taken in (applied or skipped)."""

    def cache_of(self, namespace: str) -> NamespaceCache:
        cache = self.namespaces.get(namespace)
        if cache is None:
            cache = self.namespaces[namespace] = NamespaceCache(self.dimension, self.params)
        return cache

    def apply(self, item: SequencedEvent, vector: npt.NDArray[np.float32] | None) -> None:
        """Fold one event (see the module); ``vector``: its prompt's, for a ``cache.put``."""
        event = item.event
        namespace = event.namespace
        key = event_key(event.id)
        if key in self.seen:
            self.seen.count_duplicate(namespace)
            return
        purged = purged_namespace(event)
        if purged is not None:
            self.forget(purged)
        self.seen.add(key, namespace)
        moment = event.occurred_at.timestamp()
        clock = max(self.clocks.get(namespace, moment), moment)
        self.clocks[namespace] = clock
        entry = entry_of(event, item.sequence)
        if entry is not None and vector is not None:
            self.cache_of(namespace).put(entry, vector)
        elif isinstance(event.data, CacheEvicted):
            cache = self.namespaces.get(namespace)
            if cache is not None:
                cache.remove(prompt_key(event.data.prompt, event.data.model))
        cache = self.namespaces.get(namespace)
        if cache is not None:
            cache.expire(clock)
            if not cache.entries and not any(cache.counters.values()):
                del self.namespaces[namespace]

    def forget(self, namespace: str) -> None:
        """Forget ``namespace`` (a purge): its entries and index, its clock and counters, and
        the ids and repeats of its events."""
        self.namespaces.pop(namespace, None)
        self.clocks.pop(namespace, None)
        self.seen.forget(namespace)

    def holds(self, namespace: str) -> bool:
        """Whether anything of ``namespace`` is here (entries, counters, a clock, ids)."""
        return (
            namespace in self.namespaces
            or namespace in self.clocks
            or namespace in self.seen.owners()
        )

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per namespace: live entries and the counters, sorted by namespace."""
        return {ns: self.namespaces[ns].stats() for ns in sorted(self.namespaces)}


def state_digest(state: CacheState) -> str:
    """SHA-256 of everything the events decide: every namespace's entries (by label), counters
    and live vectors' count, the clocks, the watermark, the ids applied (and which namespace
    used each first) and the repeats ignored. Equal digests mean equal deterministic state."""
    body = {
        "applied": state.applied,
        "clocks": sorted(state.clocks.items()),
        "namespaces": [
            [
                ns,
                [e.to_json() for e in sorted(cache.entries.values(), key=lambda e: e.sequence)],
                cache.stats(),
                None if cache.index is None else cache.index.live,
            ]
            for ns, cache in sorted(state.namespaces.items())
        ],
        "seen": state.seen.to_bytes().hex(),
        "duplicates": state.seen.duplicates,
        "owners": {ns: state.seen.owned(ns).tobytes().hex() for ns in state.seen.owners()},
    }
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()

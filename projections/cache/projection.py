"""The semantic cache projection: cached prompts and responses, per namespace, from the log.

Built from ``cache.put`` and ``cache.evicted`` events only (``state`` says how each event
changes it, expiry included), so it survives restarts and replays: the same events give the same
entries, counters and evictions. A whole-state projection (``projections.whole_state``: saved
whole with its watermark by a SavePolicy and on close, ``checkpoint()`` the saved watermark,
lookups never wait for a save); ``persistence`` writes the files.

The prompts' vectors come from the embedder the engine searches with (its active embedder, handed
over by ``projections.projection_set``); the cache needs only ``PromptEmbedder``, so it imports
no other projection. A saved cache built by another embedder is re-embedded when it is opened
(from the prompts it holds, in label order: the same index a replay with this embedder builds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import structlog

from engine.events.cache import CachePut
from projections.cache.lookup import lookup
from projections.cache.persistence import SavedIndexes, load, save
from projections.cache.prompt_index import IndexParams, PromptIndex
from projections.cache.state import CacheState
from projections.records import SequencedEvent
from projections.save_policy import SavePolicy, policy_for
from projections.whole_state import WholeStateBase

__all__ = ["PromptEmbedder", "SemanticCache"]

log = structlog.get_logger(__name__)

_EMBED_CHUNK = 1_024


class PromptEmbedder(Protocol):
    """What the cache needs of an embedder (``projections.embedders.Embedder`` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]: ...


class SemanticCache(WholeStateBase[CacheState]):
    """Cached answers by namespace, looked up by prompt similarity; expiry in event time."""

    name = "cache"

    def __init__(
        self,
        directory: Path | None,
        embedder: PromptEmbedder,
        *,
        params: IndexParams | None = None,
        save_every: int | None = None,
        save_policy: SavePolicy | None = None,
    ) -> None:
        self.embedder = embedder
        self.params = params or IndexParams()
        self._indexes = SavedIndexes()
        state = CacheState(embedder.dimension, self.params)
        loaded = None
        reembedded = False
        if directory is not None:
            loaded = load(directory, self.params, embedder.name, embedder.dimension)
        if loaded is not None:
            state, self._indexes = loaded.state, loaded.saved
            if loaded.reembed:
                log.warning(
                    "semantic cache built by another embedder: embedding its prompts again",
                    saved=loaded.embedder,
                    embedder=embedder.name,
                )
                self._reembed(state)
                reembedded = True
        super().__init__(directory, state, policy_for(save_every, save_policy))
        if reembedded and directory is not None:
            self._write(directory)  # at once: the files on disk are this embedder's from now

    def _reembed(self, state: CacheState) -> None:
        for cache in state.namespaces.values():
            labels = sorted(cache.labels)
            if not labels:
                cache.index = None
                continue
            cache.index = PromptIndex(state.dimension, state.params, capacity=len(labels))
            for start in range(0, len(labels), _EMBED_CHUNK):
                chunk = labels[start : start + _EMBED_CHUNK]
                prompts = [cache.entries[cache.labels[label]].prompt for label in chunk]
                cache.index.add(chunk, self.embedder.embed(prompts))
            cache.mutations += 1

    def duplicates_seen(self) -> int:
        """Events ignored because their envelope id was applied before (no lock: one int)."""
        return self.state.seen.duplicates

    # -- the whole-state hooks ------------------------------------------------------------------

    def _watermark(self) -> int:
        return self.state.applied

    def _prepare(self, events: Sequence[SequencedEvent], last_sequence: int) -> Callable[[], None]:
        """Embed the batch's prompts (outside any lock); the change folds the events in order."""
        state = self.state
        items = [e for e in events if e.sequence > state.applied]
        puts = [i for i, e in enumerate(items) if isinstance(e.event.data, CachePut)]
        prompts = [items[i].event.data.prompt for i in puts]  # type: ignore[attr-defined]
        vectors = self.embedder.embed(prompts) if prompts else None
        by_position = {} if vectors is None else dict(zip(puts, vectors, strict=True))

        def change() -> None:
            for position, item in enumerate(items):
                state.apply(item, by_position.get(position))
            state.applied = max(state.applied, last_sequence)

        return change

    def _write(self, directory: Path) -> None:
        self._indexes = save(directory, self.state, self.embedder.name, self._indexes)

    # -- reading --------------------------------------------------------------------------------

    def lookup(
        self,
        namespace: str,
        prompt: str,
        *,
        at: float,
        threshold: float,
        model: str | None = None,
    ) -> dict[str, Any]:
        """The most similar live cached prompt of ``namespace`` for ``prompt`` at ``at`` (epoch
        seconds), a hit when at least ``threshold`` similar (see ``lookup.lookup``). Blocking
        (it embeds and takes the state's read lock): call it off the event loop."""
        vector = self.embedder.embed([prompt])[0]
        return self.read(
            lambda state: lookup(
                state, namespace, prompt, vector, at=at, threshold=threshold, model=model
            )
        )

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per namespace: live entries, puts, replaced, expired and removed (from the log)."""
        return self.read(lambda state: state.stats())

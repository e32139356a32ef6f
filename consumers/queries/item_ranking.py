"""Ranking an item search's candidates by its query: engram's hybrid search, at query time.

The candidates are what the path prefix, the filter and expiry let through (read from the
``items`` table); each one's ``text`` (extracted from its value by the put's ``index``) is
scored against the query the way ``projections.vectors.retrieval`` scores memories:

    similarity = w * lexical + (1 - w) * vector                    (w: search_lexical_weight)

- lexical: Okapi BM25 (``projections.lexical``: its tokeniser and parameters, Lucene's
  variant) over the candidates as the corpus, divided by the score the query's own text would
  get as one of them (so the query's own text scores 1); the same figures a ``LexicalIndex`` of
  the candidates gives (tests/test_item_ranking.py checks it).
- vector: the active embedder's cosine of the text and the query, clipped at 0.

A query with no lexical terms is ranked by the vector similarity alone (as in memory search).

Why at query time and not an index: the candidates are whatever a prefix and a filter on the
value select, which no standing index can pre-filter, and an item's vector is a function of its
text and the embedder alone. So vectors (and term counts) are cached by the text's content hash
and the embedder's name (``ItemTextCache``): a warm search costs O(candidates) arithmetic, a
cold one embeds the texts it has not seen. Changing the embedder (``engram reindex``) needs no
rebuild: the next searches embed with the new one.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from projections.embedders import Embedder
from projections.lexical.bm25 import BM25Params
from projections.lexical.tokens import tokenise

__all__ = ["CachedTexts", "ItemTextCache", "bm25_similarities", "rank_texts"]


class _Slab:
    """One embedder's cached texts: vectors in one matrix (a row per slot), term counts and
    lengths per slot, slots by content hash in least-recently-used order."""

    def __init__(self, dimension: int) -> None:
        self.matrix = np.zeros((256, dimension), dtype=np.float32)
        self.counts: list[dict[str, int]] = []
        self.lengths = np.zeros(256, dtype=np.float64)
        self.slots: OrderedDict[bytes, int] = OrderedDict()
        self.free: list[int] = []

    def place(self, digest: bytes, vector: npt.NDArray[np.float32], terms: list[str]) -> int:
        if self.free:
            slot = self.free.pop()
        else:
            slot = len(self.counts)
            self.counts.append({})
            if slot >= len(self.matrix):
                grown = np.zeros((2 * len(self.matrix), self.matrix.shape[1]), np.float32)
                grown[: len(self.matrix)] = self.matrix
                self.matrix = grown
                self.lengths = np.concatenate([self.lengths, np.zeros(len(self.lengths))])
        self.matrix[slot] = vector
        self.counts[slot] = dict(Counter(terms))
        self.lengths[slot] = len(terms)
        self.slots[digest] = slot
        return slot

    def evict(self, capacity: int, keep: set[int]) -> None:
        """Free the least recently used slots beyond ``capacity`` (never one in ``keep``)."""
        while len(self.slots) > capacity:
            digest, slot = next(iter(self.slots.items()))
            if slot in keep:
                break  # this request uses it: evicted by a later one
            del self.slots[digest]
            self.counts[slot] = {}
            self.free.append(slot)


@dataclass(frozen=True, slots=True)
class CachedTexts:
    """What ``ItemTextCache.get`` returns: per text, its vector, term counts and length."""

    vectors: npt.NDArray[np.float32]
    counts: list[dict[str, int]]
    lengths: npt.NDArray[np.float64]


class ItemTextCache:
    """Vectors and term counts of item texts, by the text's content hash (SHA-256) per
    embedder name, so the same text is embedded once; the least recently used go beyond
    ``capacity`` texts (each ``4 * dimension`` bytes plus its terms: 32,768 texts of 384-d
    vectors are about 50 MB of vectors). A text is also remembered by the stream sequence of
    the put it came from (a row's sequence names its text for good), so a warm search hashes
    nothing. Thread-safe: searches run on worker threads. Embedders are deterministic per
    text, so a cached vector is the one ``embed`` would return."""

    def __init__(self, capacity: int = 32_768) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._slabs: dict[str, _Slab] = {}
        self._by_sequence: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.embedded = 0
        """Texts embedded so far (cache misses)."""

    def __len__(self) -> int:
        return sum(len(slab.slots) for slab in self._slabs.values())

    def get(
        self, embedder: Embedder, texts: Sequence[str], sequences: Sequence[int] | None = None
    ) -> CachedTexts:
        """Every text's entry, in order (``sequences``: the puts the texts come from)."""
        name = embedder.name
        digests: list[bytes] = []
        with self._lock:
            for at, text in enumerate(texts):
                key = None if sequences is None else (name, sequences[at])
                digest = None if key is None else self._by_sequence.get(key)
                if digest is None:
                    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
                    if key is not None:
                        self._by_sequence[key] = digest
                digests.append(digest)
            while len(self._by_sequence) > 4 * self.capacity:
                self._by_sequence.popitem(last=False)
        fresh: dict[bytes, tuple[npt.NDArray[np.float32], list[str]]] = {}
        while True:
            with self._lock:
                slab = self._slabs.get(name)
                if slab is None:
                    slab = self._slabs[name] = _Slab(embedder.dimension)
                for digest, (vector, terms) in fresh.items():
                    if digest not in slab.slots:  # another request may have placed it
                        slab.place(digest, vector, terms)
                found = [slab.slots.get(digest) for digest in digests]
                if all(slot is not None for slot in found):
                    slots = [slot for slot in found if slot is not None]
                    for digest in digests:
                        slab.slots.move_to_end(digest)
                    where = np.asarray(slots, dtype=np.int64)
                    cached = CachedTexts(
                        slab.matrix[where], [slab.counts[s] for s in slots], slab.lengths[where]
                    )
                    slab.evict(self.capacity, set(slots))
                    return cached
            # Embed outside the lock what is not cached (evicted meanwhile: again).
            firsts: dict[bytes, str] = {}
            for digest, slot, text in zip(digests, found, texts, strict=True):
                if slot is None:
                    firsts.setdefault(digest, text)
            vectors = embedder.embed(list(firsts.values()))
            fresh = {
                digest: (vector, tokenise(text))
                for (digest, text), vector in zip(firsts.items(), vectors, strict=True)
            }
            with self._lock:
                self.embedded += len(fresh)


def bm25_similarities(
    query_terms: Sequence[str],
    counts: Sequence[dict[str, int]],
    lengths: npt.NDArray[np.float64],
    params: BM25Params | None = None,
) -> npt.NDArray[np.float64]:
    """Each document's BM25 score for the query over the corpus ``counts`` (one term-count map
    per document), divided by the query's own score in that corpus and clipped to 1, exactly as
    ``projections.lexical.bm25`` computes it (terms summed in sorted order); zeros for an empty
    corpus or a query without terms."""
    n = len(counts)
    scores = np.zeros(n, dtype=np.float64)
    if n == 0 or not query_terms:
        return scores
    p = params or BM25Params()
    k1, b = p.k1, p.b
    average = max(float(lengths.sum()) / n, 1e-9)
    norm = k1 * (1.0 - b + b * lengths / average)
    asked = Counter(query_terms)
    own_norm = k1 * (1.0 - b + b * sum(asked.values()) / average)
    own = 0.0
    for term in sorted(asked):
        tf = np.array([c.get(term, 0) for c in counts], dtype=np.float64)
        df = int(np.count_nonzero(tf))
        idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
        own += idf * asked[term] * (k1 + 1.0) / (asked[term] + own_norm)
        if df:
            scores += idf * tf * (k1 + 1.0) / (tf + norm)
    if own <= 0:
        return np.zeros(n, dtype=np.float64)
    similarities: npt.NDArray[np.float64] = np.minimum(1.0, scores / own)
    return similarities


def rank_texts(
    query: str,
    texts: Sequence[str],
    embedder: Embedder,
    cache: ItemTextCache,
    lexical_weight: float,
    sequences: Sequence[int] | None = None,
) -> npt.NDArray[np.float64]:
    """The hybrid similarity (0..1) of each text to ``query`` (see the module); ``sequences``,
    the puts the texts come from, let the cache skip hashing them."""
    if not texts:
        return np.zeros(0, dtype=np.float64)
    cached = cache.get(embedder, texts, sequences)
    terms = tokenise(query)
    lexical = bm25_similarities(terms, cached.counts, cached.lengths)
    asked = embedder.embed_one(query)
    vector = np.clip(cached.vectors @ asked, 0.0, None).astype(np.float64)
    weight = lexical_weight if terms else 0.0
    combined: npt.NDArray[np.float64] = weight * lexical + (1.0 - weight) * vector
    return combined

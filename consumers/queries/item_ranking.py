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

__all__ = ["ItemTextCache", "bm25_similarities", "rank_texts"]


@dataclass(frozen=True, slots=True)
class _Text:
    counts: dict[str, int]
    length: int
    vector: npt.NDArray[np.float32]


class ItemTextCache:
    """Term counts and vectors of item texts, by (embedder name, SHA-256 of the text); the
    least recently used go beyond ``capacity`` entries (each about ``4 * dimension`` bytes plus
    its terms: 32,768 entries of 384-d vectors are about 60 MB). Thread-safe: searches run on
    worker threads. Embedders are deterministic per text, so a cached vector is the one
    ``embed`` would return."""

    def __init__(self, capacity: int = 32_768) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, bytes], _Text] = OrderedDict()
        self._lock = threading.Lock()
        self.embedded = 0
        """Texts embedded so far (cache misses)."""

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, embedder: Embedder, texts: Sequence[str]) -> list[_Text]:
        """One entry per text, in order."""
        name = embedder.name
        keys = [
            (name, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()) for text in texts
        ]
        found: dict[tuple[str, bytes], _Text] = {}
        with self._lock:
            for key in keys:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    found[key] = entry
        missing: dict[tuple[str, bytes], str] = {}
        for key, text in zip(keys, texts, strict=True):
            if key not in found:
                missing.setdefault(key, text)
        if missing:
            vectors = embedder.embed(list(missing.values()))
            fresh = {}
            for (key, text), vector in zip(missing.items(), vectors, strict=True):
                terms = tokenise(text)
                fresh[key] = _Text(dict(Counter(terms)), len(terms), vector.copy())
            found.update(fresh)
            with self._lock:
                self.embedded += len(fresh)
                self._entries.update(fresh)
                while len(self._entries) > self.capacity:
                    self._entries.popitem(last=False)
        return [found[key] for key in keys]


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
        tf = np.fromiter((c.get(term, 0) for c in counts), dtype=np.float64, count=n)
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
) -> npt.NDArray[np.float64]:
    """The hybrid similarity (0..1) of each text to ``query`` (see the module)."""
    if not texts:
        return np.zeros(0, dtype=np.float64)
    entries = cache.get(embedder, texts)
    terms = tokenise(query)
    lengths = np.fromiter((e.length for e in entries), dtype=np.float64, count=len(entries))
    lexical = bm25_similarities(terms, [e.counts for e in entries], lengths)
    asked = embedder.embed_one(query)
    matrix = np.vstack([e.vector for e in entries])
    vector = np.clip(matrix @ asked, 0.0, None).astype(np.float64)
    weight = lexical_weight if terms else 0.0
    combined: npt.NDArray[np.float64] = weight * lexical + (1.0 - weight) * vector
    return combined

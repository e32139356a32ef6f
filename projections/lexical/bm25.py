"""An incremental Okapi BM25 index of one namespace's memories: postings in memory, pure.

Documents are added one at a time under a caller-chosen integer label (the stream sequence of the
memory); adding a label twice changes nothing, so re-applying a batch after a crash is a no-op.
Statistics (document count, average length, document frequencies) are read at query time, so the
index never needs a rebuild as it grows, and the same documents added in the same order give the
same postings and bit-identical scores, whatever the batching (scores are summed in sorted term
order and postings in label order).

Scoring (Lucene's BM25 variant, k1 = 1.2, b = 0.75 by default; ``BM25Params``):

    idf(t)     = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5))          always > 0
    part(t, d) = tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl))    1 for one occurrence in a
                                                                    document of average length
    bm25(q, d) = sum over the distinct terms t of q of idf(t) part(t, d)

The *similarity* in 0..1 that searches report is ``bm25(q, d) / bm25(q, q)``, clipped to 1:
the memory's score over the score the query's own text would get as a memory of the index (with
its own term counts and length). So a memory that is the query's text scores exactly 1, one that
holds every query term and says more scores less, and a query term no memory has (the idf of a
term seen nowhere) weighs in the divisor, so partial matches of a query of rare words stay low.
It only rescales bm25 per query: the ranking is plain BM25's.

Removals: a memory that is superseded stays in the postings and the statistics (as Lucene's
deleted documents do until a merge) and is filtered out at search time by the caller's ``accept``.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BM25Params", "LexicalHit", "LexicalIndex", "ScoredQuery"]

Accept = Callable[[int], bool]


@dataclass(frozen=True, slots=True)
class BM25Params:
    """BM25's term-frequency saturation ``k1`` and length normalisation ``b``."""

    k1: float = 1.2
    b: float = 0.75

    def __post_init__(self) -> None:
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise ValueError(f"invalid BM25 parameters: {self}")


@dataclass(frozen=True, slots=True)
class LexicalHit:
    """A memory's label, its BM25 score and its similarity (0..1, see the module)."""

    label: int
    score: float
    similarity: float


class LexicalIndex:
    """Postings of one namespace: term -> (document positions, term frequencies)."""

    __slots__ = (
        "_derived",
        "_labels",
        "_lengths",
        "_positions",
        "_postings",
        "_total",
        "mutations",
        "params",
    )

    def __init__(self, params: BM25Params | None = None) -> None:
        self.params = params or BM25Params()
        self._labels = array("q")  # position -> label, in the order added
        self._lengths = array("i")  # position -> number of terms
        self._positions: dict[int, int] = {}
        self._postings: dict[str, tuple[array[int], array[int]]] = {}
        self._total = 0
        self._derived: tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64]] | None = None
        self.mutations = 0
        """Bumped by every add that changed something (a saver writes only moved indexes)."""

    def __len__(self) -> int:
        return len(self._labels)

    def __contains__(self, label: int) -> bool:
        return label in self._positions

    def add(self, label: int, terms: Sequence[str]) -> bool:
        """Index the document ``label`` made of ``terms`` (``tokenise``'s output); False and no
        change when ``label`` is already indexed."""
        if label in self._positions:
            return False
        position = len(self._labels)
        self._positions[label] = position
        self._labels.append(label)
        self._lengths.append(len(terms))
        self._total += len(terms)
        for term, count in Counter(terms).items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = (array("i"), array("i"))
            postings[0].append(position)
            postings[1].append(count)
        self.mutations += 1
        return True

    # -- scoring --------------------------------------------------------------------------------

    def _idf(self, term: str) -> float:
        postings = self._postings.get(term)
        df = 0 if postings is None else len(postings[0])
        n = len(self._labels)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def query(self, terms: Iterable[str]) -> ScoredQuery:
        """Score every document against the query ``terms`` once (dense, by position); the
        result answers ``top`` and ``similarity`` without scoring again. It reads the index as
        it is now: the caller keeps writers out while it is used (the projection's lock)."""
        n = len(self._labels)
        scores = np.zeros(n, dtype=np.float64)
        own = 0.0  # bm25 of the query's own text as a document of this index
        if n:
            k1, b = self.params.k1, self.params.b
            average = max(self._total / n, 1e-9)
            _, norm = self._arrays()
            counts = Counter(terms)
            own_norm = k1 * (1.0 - b + b * sum(counts.values()) / average)
            for term in sorted(counts):  # a fixed order: bit-identical sums
                idf = self._idf(term)
                own += idf * counts[term] * (k1 + 1.0) / (counts[term] + own_norm)
                postings = self._postings.get(term)
                if postings is None:
                    continue
                where = np.array(postings[0], dtype=np.int64)
                tf = np.array(postings[1], dtype=np.float64)
                scores[where] += idf * tf * (k1 + 1.0) / (tf + norm[where])
        return ScoredQuery(self, scores, own)

    def _arrays(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Labels by position and each document's length normalisation, kept until the next
        add (readers may compute them at once: they compute the same arrays)."""
        derived = self._derived
        if derived is None or derived[0] != self.mutations:
            k1, b, n = self.params.k1, self.params.b, len(self._labels)
            average = max(self._total / max(n, 1), 1e-9)
            lengths = np.array(self._lengths, dtype=np.float64)
            derived = (
                self.mutations,
                np.array(self._labels, dtype=np.int64),
                k1 * (1.0 - b + b * lengths / average),
            )
            self._derived = derived
        return derived[1], derived[2]

    def search(
        self, terms: Sequence[str], k: int, accept: Accept | None = None
    ) -> list[LexicalHit]:
        """``query(terms).top(k, accept)``."""
        return self.query(terms).top(k, accept)

    # -- state ----------------------------------------------------------------------------------

    def export(self) -> dict[str, object]:
        """Everything the index holds, as plain arrays (terms sorted: deterministic bytes)."""
        terms = sorted(self._postings)
        offsets = np.zeros(len(terms) + 1, dtype=np.int64)
        docs: list[array[int]] = []
        counts: list[array[int]] = []
        for i, term in enumerate(terms):
            where, tf = self._postings[term]
            offsets[i + 1] = offsets[i] + len(where)
            docs.append(where)
            counts.append(tf)
        return {
            "k1": self.params.k1,
            "b": self.params.b,
            "terms": terms,
            "labels": np.array(self._labels, dtype=np.int64),
            "lengths": np.array(self._lengths, dtype=np.int32),
            "offsets": offsets,
            "docs": _concatenate(docs),
            "counts": _concatenate(counts),
        }

    @classmethod
    def restore(
        cls,
        terms: Sequence[str],
        labels: npt.NDArray[np.int64],
        lengths: npt.NDArray[np.int32],
        offsets: npt.NDArray[np.int64],
        docs: npt.NDArray[np.int32],
        counts: npt.NDArray[np.int32],
        params: BM25Params,
    ) -> LexicalIndex:
        """The index ``export`` described (raises ValueError when the arrays do not fit)."""
        n = len(labels)
        if len(lengths) != n or len(offsets) != len(terms) + 1 or len(docs) != len(counts):
            raise ValueError("lexical index arrays of inconsistent lengths")
        if len(docs) != int(offsets[-1]) or (len(docs) and (docs.min() < 0 or docs.max() >= n)):
            raise ValueError("lexical index postings point outside the documents")
        index = cls(params)
        index._labels = array("q", labels.astype(np.int64).tobytes())
        index._lengths = array("i", lengths.astype(np.int32).tobytes())
        index._positions = {int(label): i for i, label in enumerate(labels.tolist())}
        index._total = int(lengths.sum())
        bounds = offsets.tolist()
        for i, term in enumerate(terms):
            start, end = bounds[i], bounds[i + 1]
            index._postings[term] = (
                array("i", docs[start:end].astype(np.int32).tobytes()),
                array("i", counts[start:end].astype(np.int32).tobytes()),
            )
        return index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LexicalIndex):
            return NotImplemented
        return (
            self.params == other.params
            and self._labels == other._labels
            and self._lengths == other._lengths
            and self._postings == other._postings
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


class ScoredQuery:
    """BM25 scores of one query over one index (see ``LexicalIndex.query``)."""

    __slots__ = ("_index", "_scores", "own")

    def __init__(self, index: LexicalIndex, scores: npt.NDArray[np.float64], own: float) -> None:
        self._index = index
        self._scores = scores
        self.own = own
        """BM25 of the query's own text in this index: the similarity's divisor."""

    def top(self, k: int, accept: Accept | None = None) -> list[LexicalHit]:
        """The ``k`` best documents sharing a term with the query that ``accept`` lets through,
        best first (ties: lower label first). The filter is applied while walking the whole
        ranked list, so ``k`` hits come back whenever ``k`` matching documents pass it; ``[]``
        when no document shares a term with the query."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        found = np.flatnonzero(self._scores > 0)
        if found.size == 0:
            return []
        all_labels, _ = self._index._arrays()
        # Walk a partition of the best first (sorting every match is O(n log n) on a common
        # word); when the filter rejects too many of them, walk the whole ranked list.
        width = 4 * k + 16
        if found.size > width:
            scores = self._scores[found]
            cut = -np.partition(-scores, width - 1)[width - 1]
            best = found[scores >= cut]  # ties at the cut all in: a prefix of the full order
            hits = self._walk(best, all_labels, k, accept)
            if len(hits) == k:
                return hits
        return self._walk(found, all_labels, k, accept)

    def _walk(
        self,
        positions: npt.NDArray[np.intp],
        all_labels: npt.NDArray[np.int64],
        k: int,
        accept: Accept | None,
    ) -> list[LexicalHit]:
        labels = all_labels[positions]
        scores = self._scores[positions]
        hits: list[LexicalHit] = []
        for at in np.lexsort((labels, -scores)).tolist():
            label = int(labels[at])
            if accept is not None and not accept(label):
                continue
            score = float(scores[at])
            hits.append(LexicalHit(label, score, self._similarity(score)))
            if len(hits) == k:
                break
        return hits

    def similarity(self, label: int) -> float:
        """The similarity (0..1) of document ``label`` to the query (0.0 when not indexed)."""
        position = self._index._positions.get(label)
        return 0.0 if position is None else self._similarity(float(self._scores[position]))

    def _similarity(self, score: float) -> float:
        return min(1.0, score / self.own) if self.own > 0 else 0.0


def _concatenate(parts: list[array[int]]) -> npt.NDArray[np.int32]:
    out = array("i")
    for part in parts:
        out.extend(part)
    return np.array(out, dtype=np.int32)

"""Near-duplicate memories grouped in search results: the best one shown, with how many it
stands for (pure).

Identical texts are already one memory (``registry``); this groups texts that differ a little
(punctuation, a word or two) so they do not crowd the top k either. Two memories of the same
collection are near-duplicates when the cosine similarity of their term counts (``tokenise``:
the words, identifiers and numbers, stopwords aside) is at least ``threshold``: a property of
the two texts alone, the same whatever the embedder or search mode, so grouping is deterministic.
``"deploy of api failed on host-1"`` and ``"deploy of api failed on host-2"`` share 5 of 7 terms
(cosine 0.71): different facts, not grouped at 0.9.

Grouping walks the ranked hits once: a hit joins the first (best-ranked) group whose head is a
near-duplicate of it, else it heads a new group; once the groups fill the top k, a bounded tail of
hits may still join them (so ``duplicates`` counts those found among the hits walked). Candidate
heads are found through an inverted index of the heads' terms, so a walk costs the terms of the
hits, not hits x heads.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from projections.lexical.tokens import tokenise

__all__ = ["DEFAULT_DUPLICATE_SIMILARITY", "Group", "NearDuplicates", "term_cosine"]

DEFAULT_DUPLICATE_SIMILARITY = 0.9

T = TypeVar("T")


def term_cosine(a: str, b: str) -> float:
    """Cosine similarity (0..1) of the term counts of two texts (0.0 when either has none)."""
    ca, cb = Counter(tokenise(a)), Counter(tokenise(b))
    dot = sum(count * cb[term] for term, count in ca.items())
    norm = math.sqrt(sum(c * c for c in ca.values()) * sum(c * c for c in cb.values()))
    return dot / norm if norm else 0.0


@dataclass
class Group(Generic[T]):
    """A head (the best-ranked hit) and the near-duplicates it stands for, in rank order."""

    head: T
    members: list[T] = field(default_factory=list)


class NearDuplicates(Generic[T]):
    """Groups ranked hits; ``text`` and ``scope`` read a hit's text and its collection."""

    def __init__(
        self, threshold: float, text: Callable[[T], str], scope: Callable[[T], str]
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"duplicate similarity must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._text = text
        self._scope = scope
        self.groups: list[Group[T]] = []
        self._heads: list[tuple[Counter[str], float]] = []  # per group: term counts, norm
        self._postings: dict[tuple[str, str], list[int]] = {}  # (scope, term) -> groups

    def add(self, hit: T, *, may_head: bool = True) -> bool:
        """Place the next hit in rank order; True when it heads a new group. With ``may_head``
        false a hit that is no near-duplicate of a head is left out (False)."""
        counts = Counter(tokenise(self._text(hit)))
        norm = math.sqrt(sum(c * c for c in counts.values()))
        scope = self._scope(hit)
        if norm > 0:
            dots: dict[int, float] = {}
            for term, count in counts.items():
                for group in self._postings.get((scope, term), ()):
                    dots[group] = dots.get(group, 0.0) + count * self._heads[group][0][term]
            for group in sorted(dots):  # the best-ranked head first
                head_norm = self._heads[group][1]
                if dots[group] / (norm * head_norm) >= self.threshold - 1e-12:
                    self.groups[group].members.append(hit)
                    return False
        if not may_head:
            return False
        number = len(self.groups)
        self.groups.append(Group(hit))
        self._heads.append((counts, norm))
        for term in counts:
            self._postings.setdefault((scope, term), []).append(number)
        return True

    def extend(self, hits: Iterable[T], limit: int, tail: int) -> None:
        """Add hits in rank order until ``limit`` groups exist; the next ``tail`` hits may still
        join them (a near-duplicate ranks near its head: the walk need not go to the end)."""
        left = tail
        for hit in hits:
            if len(self.groups) < limit:
                self.add(hit)
            elif left > 0:
                self.add(hit, may_head=False)
                left -= 1
            else:
                return

"""Answering a lookup from the cache's state (pure; the caller holds the state's read lock).

A lookup is a hit when the most similar cached prompt of the namespace (of the model asked for,
when one is named) that has not expired at the lookup's time is at least ``threshold`` similar
(cosine of the two prompts' vectors, 0..1, rounded to 6 decimals). Ties go to the newer put. The
same prompt (case, Unicode form and whitespace aside) is found without the graph, similarity 1,
so a repeated prompt always hits; a paraphrase is found by the graph walk, which is approximate
(``prompt_index``). A miss still says how similar the nearest live prompt was (and which), so a
threshold can be tuned; it never carries a response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from projections.cache.entries import CacheEntry, iso, prompt_key
from projections.cache.prompt_index import CANDIDATES
from projections.cache.state import CacheState

__all__ = ["lookup"]


def _nearest(
    state: CacheState,
    namespace: str,
    prompt: str,
    vector: npt.NDArray[np.float32],
    at: float,
    model: str | None,
) -> tuple[CacheEntry, float] | None:
    cache = state.namespaces.get(namespace)
    if cache is None or cache.index is None:
        return None
    same = [e for e in cache.same_prompt(prompt_key(prompt)[1], model) if e.live_at(at)]
    if same:
        return max(same, key=lambda e: e.sequence), 1.0
    earliest = cache.earliest_expiry()
    accept: Callable[[int], bool] | None = None
    if model is not None or (earliest is not None and earliest < at):
        # Some entry may be expired at ``at`` (or of another model): only the others count.
        # hnswlib calls this for every node it visits, so it is left out when all would pass.
        entries, labels = cache.entries, cache.labels

        def accept(label: int) -> bool:
            key = labels.get(label)
            if key is None:
                return False
            entry = entries[key]
            return entry.live_at(at) and (model is None or entry.model == model)

    found = cache.index.nearest(vector, CANDIDATES, cache.labels, accept)
    best: tuple[CacheEntry, float] | None = None
    for label, similarity in found:
        entry = cache.entries[cache.labels[label]]
        score = round(similarity, 6)
        if best is None or (score, entry.sequence) > (best[1], best[0].sequence):
            best = (entry, score)
    return best


def lookup(
    state: CacheState,
    namespace: str,
    prompt: str,
    vector: npt.NDArray[np.float32],
    *,
    at: float,
    threshold: float,
    model: str | None = None,
) -> dict[str, Any]:
    """The ``cache_lookup`` reply (without ``consistency``) for ``prompt``, embedded as
    ``vector``, asked at ``at`` (epoch seconds): ``hit``, the nearest live prompt's
    ``similarity`` and ``prompt`` (null when the namespace has none), and for a hit the
    ``response``, ``model``, ``metadata``, ``cached_at``, ``expires_at`` and the put's
    ``event_id``."""
    best = _nearest(state, namespace, prompt, vector, at, model)
    reply: dict[str, Any] = {
        "hit": False,
        "similarity": None,
        "threshold": threshold,
        "prompt": None,
        "response": None,
        "model": None,
        "metadata": None,
        "cached_at": None,
        "expires_at": None,
        "event_id": None,
    }
    if best is None:
        return reply
    entry, similarity = best
    reply.update(similarity=similarity, prompt=entry.prompt)
    if similarity >= threshold:
        reply.update(
            hit=True,
            response=entry.response,
            model=entry.model,
            metadata=entry.metadata,
            cached_at=iso(entry.cached_at),
            expires_at=iso(entry.expires_at),
            event_id=entry.event_id,
        )
    return reply

"""The ``cache_lookup`` query verb, answered from the semantic cache projection, and the cache's
part of ``status``.

Lookups and hits are counted here, in memory: a query is not an event, so these counts are this
engine's since it started (another engine answering the same tenants counts its own, and a
restart starts again at zero). Entries, puts and evictions come from the projection, that is
from the log: the same on every engine and after a replay.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from consumers.queries.dispatch import QueryDispatcher
from engine.verbs.requests import CacheLookupRequest
from projections.cache import SemanticCache

__all__ = ["MAX_LISTED_NAMESPACES", "CacheVerbs"]

MAX_LISTED_NAMESPACES = 50
"""``status`` lists the cache per namespace up to this many namespaces (totals only above)."""


def _now() -> datetime:
    return datetime.now(UTC)


class CacheVerbs:
    """Serves ``cache_lookup`` and counts lookups and hits per namespace."""

    def __init__(
        self,
        cache: SemanticCache,
        threshold: float,
        *,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.cache = cache
        self.threshold = threshold
        """The similarity a hit needs when a lookup names none (``Settings.cache_similarity``)."""
        self._clock = clock
        self.since = clock()
        self.lookups: Counter[str] = Counter()
        self.hits: Counter[str] = Counter()

    def register(self, dispatcher: QueryDispatcher) -> None:
        dispatcher.register("cache_lookup", self.lookup)

    async def lookup(self, r: CacheLookupRequest) -> dict[str, Any]:
        """A hit or a miss for ``r.prompt`` in ``r.namespace``, expiry judged at ``r.at``
        (default: now), at ``r.threshold`` (default: the engine's)."""
        at = (r.at or self._clock()).timestamp()
        threshold = self.threshold if r.threshold is None else r.threshold
        # Off the event loop: it embeds the prompt and takes the state's read lock.
        reply = await asyncio.to_thread(
            self.cache.lookup, r.namespace, r.prompt, at=at, threshold=threshold, model=r.model
        )
        self.lookups[r.namespace] += 1
        if reply["hit"]:
            self.hits[r.namespace] += 1
        return reply

    async def status(self) -> dict[str, Any]:
        """The cache's part of ``status`` (``engine.verbs.replies.CacheStatus``)."""
        logged = await asyncio.to_thread(self.cache.stats)
        names = sorted(set(logged) | set(self.lookups))
        per = {ns: self._counts(logged.get(ns, {}), ns) for ns in names}
        totals = self._counts({}, None)
        for counts in per.values():
            for key in ("entries", "puts", "expired", "removed", "lookups", "hits"):
                totals[key] += counts[key]
        totals["evictions"] = totals["expired"] + totals["removed"]
        totals["hit_rate"] = _rate(totals["hits"], totals["lookups"])
        return {
            **totals,
            "counting_since": self.since.isoformat(),
            "namespaces": per if len(per) <= MAX_LISTED_NAMESPACES else None,
        }

    def _counts(self, logged: dict[str, Any], namespace: str | None) -> dict[str, Any]:
        lookups = self.lookups[namespace] if namespace is not None else 0
        hits = self.hits[namespace] if namespace is not None else 0
        expired, removed = int(logged.get("expired", 0)), int(logged.get("removed", 0))
        return {
            "entries": int(logged.get("entries", 0)),
            "puts": int(logged.get("puts", 0)),
            "evictions": expired + removed,
            "expired": expired,
            "removed": removed,
            "lookups": lookups,
            "hits": hits,
            "hit_rate": _rate(hits, lookups),
        }


def _rate(hits: int, lookups: int) -> float | None:
    return round(hits / lookups, 4) if lookups else None

"""One cached answer, and what makes two puts the same entry (pure).

An entry is identified within its namespace by its key: the model that answered (None: none
named) and the prompt with case, Unicode form and whitespace aside (``prompt_key``), so a put of
``"What is NATS?"`` replaces one of ``"what is  NATS?"`` for the same model. Its label in the
namespace's vector index is the put's stream sequence (unique, and growing with the log).

Times are seconds since the epoch (floats): ``cached_at`` is the put's ``occurred_at`` and
``expires_at`` is ``cached_at + ttl``, computed the same way on every engine and replay.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from engine.events import Event
from engine.events.cache import CachePut

__all__ = ["CacheEntry", "EntryKey", "entry_of", "iso", "prompt_key"]

EntryKey = tuple[str | None, str]
"""(model, normalised prompt): what a newer put of the same prompt replaces."""


def prompt_key(prompt: str, model: str | None = None) -> EntryKey:
    """The key of ``prompt`` answered by ``model``: NFKC, case-folded, whitespace runs as one
    space (the same rule as the vector memories' duplicate texts)."""
    return model, " ".join(unicodedata.normalize("NFKC", prompt).casefold().split())


def iso(seconds: float) -> str:
    """An epoch time as RFC 3339 in UTC (what replies show)."""
    return datetime.fromtimestamp(seconds, UTC).isoformat()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached response for a prompt, live until ``expires_at`` (epoch seconds)."""

    namespace: str
    prompt: str
    response: Any
    model: str | None
    metadata: dict[str, Any] | None
    cached_at: float
    expires_at: float
    sequence: int
    """The put's stream sequence: the entry's label in its namespace's index."""
    event_id: str

    @property
    def key(self) -> EntryKey:
        return prompt_key(self.prompt, self.model)

    def live_at(self, moment: float) -> bool:
        """Not expired at ``moment``: an entry expires once the time is past ``expires_at``."""
        return moment <= self.expires_at

    def to_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "prompt": self.prompt,
            "response": self.response,
            "model": self.model,
            "metadata": self.metadata,
            "cached_at": self.cached_at,
            "expires_at": self.expires_at,
            "sequence": self.sequence,
            "event_id": self.event_id,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CacheEntry:
        return cls(
            namespace=str(raw["namespace"]),
            prompt=str(raw["prompt"]),
            response=raw["response"],
            model=None if raw.get("model") is None else str(raw["model"]),
            metadata=raw.get("metadata"),
            cached_at=float(raw["cached_at"]),
            expires_at=float(raw["expires_at"]),
            sequence=int(raw["sequence"]),
            event_id=str(raw["event_id"]),
        )


def entry_of(event: Event, sequence: int) -> CacheEntry | None:
    """The entry a ``cache.put`` event makes (None for any other event)."""
    data = event.data
    if not isinstance(data, CachePut):
        return None
    cached_at = event.occurred_at.timestamp()
    return CacheEntry(
        namespace=event.namespace,
        prompt=data.prompt,
        response=data.response,
        model=data.model,
        metadata=data.metadata,
        cached_at=cached_at,
        expires_at=cached_at + data.ttl,
        sequence=sequence,
        event_id=event.id,
    )

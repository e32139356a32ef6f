"""Payloads of the events the engine itself publishes (derived from the log)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from engine.events._base import EventData, Identifier, JsonObject, NonNegativeFloat, ShortText

__all__ = [
    "USAGE_EXCERPT_CHARS",
    "ContextSuggested",
    "MemoryRecalled",
    "NamespacePurged",
    "PatternLearned",
    "PatternMatched",
    "PatternType",
    "SessionCompacted",
    "SnapshotCreated",
    "usage_excerpt",
]

USAGE_EXCERPT_CHARS = 200
"""What the engine records of a query's text in a usage event (``memory.recalled``,
``context.suggested``, ``pattern.matched``): its start, never the whole text, so read-only queries
do not make the log grow with what they ask. The fields accept longer texts, as older events
hold them."""


def usage_excerpt(text: str) -> str:
    """The start of ``text`` that a usage event records (at most USAGE_EXCERPT_CHARS)."""
    return text[:USAGE_EXCERPT_CHARS]


PatternType = Literal["workflow", "success", "failure"]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=0, strict=True)]


class PatternLearned(EventData):
    """A pattern appeared or changed materially; ``version`` only grows per ``pattern_id``."""

    pattern_id: Identifier
    version: Annotated[int, Field(ge=1, strict=True)]
    pattern_type: PatternType
    task_type: ShortText
    caused_by_sequence: Annotated[int, Field(ge=1, strict=True)]
    success_rate: Unit
    confidence: Unit
    sample_size: Count
    pattern: JsonObject = Field(default_factory=dict)


class SessionCompacted(EventData):
    """A session was summarised into one compact record (its SessionMetrics: memories, size
    before and after, duration)."""

    session_id: Identifier
    original_size_bytes: Count
    compressed_size_bytes: Count
    compression_ratio: Unit
    num_memories: Count
    num_patterns_extracted: Count
    compaction_duration_ms: NonNegativeFloat


class SnapshotCreated(EventData):
    """A verified snapshot of every projection now covers the stream up to ``sequence``."""

    snapshot_id: Identifier
    sequence: Annotated[int, Field(ge=0, strict=True)]
    files: Count
    total_bytes: Count
    location: ShortText
    embedder: ShortText | None = None


class NamespacePurged(EventData):
    """An operator purged a tenant (``engram purge``): every message of ``namespace`` stored
    below this event was removed from the stream (its v2 subjects ``subject_filter``, and its v1
    messages on ``legacy_filter`` found by their body's namespace). Every projection forgets the
    tenant when it applies this event; the tenant's events after it start it afresh. Published
    on the tenant's own subject (``memory.namespace.purged.<namespace>``), with the namespace
    of the envelope equal to ``namespace``."""

    namespace: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,64}$", strict=True)]
    """The tenant purged (``engine.events.NAMESPACE_PATTERN``)."""
    reason: ShortText
    """The operator's reason (an erasure request's reference, for example)."""
    first_sequence: Annotated[int, Field(ge=0, strict=True)]
    last_sequence: Annotated[int, Field(ge=0, strict=True)]
    """The stream sequences the purge covered (the stream's first and last when it was
    planned; messages of the tenant published after that and before this event went too)."""
    messages: Count
    """How many of the tenant's messages the purge removed (counted when it was planned)."""
    subject_filter: ShortText
    """The tenant's v2 subjects purged, ``memory.*.*.<namespace>``."""
    legacy_filter: ShortText | None = None
    """The v1 subjects scanned (``memory.*.*``): of those, the messages whose body names
    ``namespace`` went."""


class MemoryRecalled(EventData):
    """Memories were returned by a search; each one's ``reused_count`` grows (survives replay)."""

    memory_ids: list[Identifier] = Field(min_length=1, max_length=1_000)
    query: Annotated[str, Field(max_length=2_000)] = ""
    verb: ShortText = "search_similar"


class ContextSuggested(EventData):
    """get_task_context answered an agent: what it suggested, so usage itself is recorded."""

    task_description: Annotated[str, Field(max_length=10_000)]
    task_type: ShortText
    similar_memory_ids: list[Identifier] = Field(default_factory=list, max_length=1_000)
    pattern_ids: list[Identifier] = Field(default_factory=list, max_length=1_000)
    recommendations: list[Annotated[str, Field(max_length=2_000)]] = Field(
        default_factory=list, max_length=100
    )


class PatternMatched(EventData):
    """A learned pattern matched a task an agent asked about."""

    pattern_id: Identifier
    task_type: ShortText
    task_description: Annotated[str, Field(max_length=10_000)] = ""

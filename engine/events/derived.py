"""Payloads of the events the engine itself publishes (derived from the log)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from engine.events._base import EventData, Identifier, JsonObject, NonNegativeFloat, ShortText

__all__ = ["PatternLearned", "PatternType", "SessionCompacted", "SnapshotCreated"]

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
    """A session was summarised into one compact record (seed 000's SessionMetrics)."""

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

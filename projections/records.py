"""Frozen records that cross from the bus side into projections."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from engine.events import Event

__all__ = ["MAX_DEAD_LETTER_BODY", "DeadLetter", "SequencedEvent"]

MAX_DEAD_LETTER_BODY = 64 * 1024
"""Raw bodies kept in dead letters are cut to this many bytes (the stream keeps the whole)."""


@dataclass(frozen=True, slots=True)
class SequencedEvent:
    """A validated, upcast event and where it sits in the stream."""

    sequence: int
    stored_at: datetime
    event: Event


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a projection could not use, with the reason. Never silently dropped."""

    sequence: int
    subject: str
    stored_at: datetime
    kind: str
    """Short machine reason: ``invalid_json``, ``invalid_event``, ``unknown_type``,
    ``unknown_version``, ``application_failed``, ``dimension_mismatch``."""
    reason: str
    raw: bytes
    raw_size: int
    projection: str

    @classmethod
    def of(
        cls,
        *,
        sequence: int,
        subject: str,
        stored_at: datetime,
        kind: str,
        reason: str,
        body: bytes,
        projection: str,
    ) -> DeadLetter:
        return cls(
            sequence=sequence,
            subject=subject,
            stored_at=stored_at,
            kind=kind,
            reason=reason[:4_000],
            raw=body[:MAX_DEAD_LETTER_BODY],
            raw_size=len(body),
            projection=projection,
        )

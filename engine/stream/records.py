"""Frozen records the log hands back: append results and stored messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["AppendResult", "StoredMessage", "StreamState"]


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an event landed. ``duplicate`` is True when the stream already had this id."""

    event_id: str
    sequence: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as stored in the stream, not yet decoded (decoding may fail: dead letters)."""

    sequence: int
    subject: str
    data: bytes
    time: datetime
    headers: dict[str, str] = field(default_factory=dict)
    num_pending: int = 0
    num_delivered: int = 1


@dataclass(frozen=True, slots=True)
class StreamState:
    """What ``engram status`` reports about the stream."""

    name: str
    messages: int
    bytes: int
    first_sequence: int
    last_sequence: int
    consumers: int
    subjects: tuple[str, ...]
    replicas: int

"""Turning stored messages into validated events or dead letters (never an exception)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import InvalidEventError, UnknownEventTypeError, UpcastError
from engine.events import UpcasterRegistry, decode_event
from engine.events.upcasting import DEFAULT_UPCASTERS
from engine.stream import StoredMessage
from projections.records import DeadLetter, SequencedEvent

__all__ = ["dead_letter_kind", "decode_batch"]


def dead_letter_kind(error: InvalidEventError) -> str:
    """The short reason class used in dead-letter subjects and the table."""
    if isinstance(error, UnknownEventTypeError):
        return "unknown_type"
    if isinstance(error, UpcastError):
        return "unknown_version"
    message = str(error)
    if message.startswith(("message body is not JSON", "message body is not UTF-8")):
        return "invalid_json"
    return "invalid_event"


def decode_batch(
    messages: Sequence[StoredMessage],
    projection: str,
    upcasters: UpcasterRegistry = DEFAULT_UPCASTERS,
) -> tuple[list[SequencedEvent], list[DeadLetter]]:
    """Split ``messages`` into events (validated, upcast) and dead letters, in stream order."""
    events: list[SequencedEvent] = []
    dead: list[DeadLetter] = []
    for message in messages:
        try:
            event = decode_event(message.data, message.subject, upcasters)
        except InvalidEventError as exc:
            dead.append(
                DeadLetter.of(
                    sequence=message.sequence,
                    subject=message.subject,
                    stored_at=message.time,
                    kind=dead_letter_kind(exc),
                    reason=str(exc),
                    body=message.data,
                    projection=projection,
                )
            )
            continue
        events.append(SequencedEvent(message.sequence, message.time, event))
    return events, dead

"""Applying a decoded batch to a projection, isolating events whose application raises."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from engine.events import encode_event
from projections.base import Projection
from projections.records import DeadLetter, SequencedEvent

__all__ = ["apply_isolating"]

log = structlog.get_logger(__name__)


def apply_isolating(
    projection: Projection,
    events: Sequence[SequencedEvent],
    dead_letters: Sequence[DeadLetter],
    last_sequence: int,
) -> list[DeadLetter]:
    """Apply the batch; if that raises, apply event by event and dead-letter the ones that raise.

    Returns the dead letters created here (``application_failed``), which the caller must also
    publish. A failure that is not the event's (the store itself is broken) surfaces when even
    the dead letter cannot be committed: it is re-raised and the runner retries from the
    checkpoint.
    """
    try:
        projection.apply(events, dead_letters, last_sequence)
        return []
    except Exception as batch_error:  # isolate the culprit below
        log.warning(
            "batch failed, applying one by one",
            projection=projection.name,
            error=repr(batch_error),
        )
    created: list[DeadLetter] = []
    pending = sorted(dead_letters, key=lambda d: d.sequence)
    for item in events:
        before = [d for d in pending if d.sequence < item.sequence]
        pending = [d for d in pending if d.sequence >= item.sequence]
        try:
            projection.apply([item], before, item.sequence)
        except Exception as exc:  # this event is the poison: keep it with its reason
            letter = DeadLetter.of(
                sequence=item.sequence,
                subject=item.event.subject,
                stored_at=item.stored_at,
                kind=getattr(exc, "dead_letter_kind", "application_failed"),
                reason=f"{projection.name} could not apply {item.event.type}: {exc!r}",
                body=encode_event(item.event),
                projection=projection.name,
            )
            projection.apply([], [*before, letter], item.sequence)
            created.append(letter)
    projection.apply([], pending, last_sequence)
    return created

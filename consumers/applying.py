"""Applying a decoded batch to a projection, isolating events whose application raises.

An event is dead-lettered only when applying it fails because of its content. When the failure
is the environment's (see ``projections.faults``: a full disk, an I/O error, memory, a broken
database connection) nothing is dead-lettered: ``ProjectionStalledError`` is raised and the
caller retries the same batch later (every projection skips what it applied already).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from engine.errors import EngramError
from engine.events import encode_event
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects
from projections.base import Projection
from projections.faults import describe, is_environmental
from projections.records import DeadLetter, SequencedEvent

__all__ = ["ProjectionStalledError", "apply_isolating"]

log = structlog.get_logger(__name__)


class ProjectionStalledError(EngramError):
    """A projection cannot go on because of its environment, not because of an event.

    ``cause`` is the environmental failure (``reason`` describes it in one line);
    ``dead_letters`` are the content dead letters committed before the stall, which the
    caller must still publish. Nothing after the projection's checkpoint is applied or
    acknowledged; applying the same batch again once the cause is gone resumes exactly there.
    """

    def __init__(
        self, projection: str, cause: BaseException, dead_letters: Sequence[DeadLetter] = ()
    ) -> None:
        self.projection = projection
        self.cause = cause
        self.reason = describe(cause)
        self.dead_letters = list(dead_letters)
        super().__init__(f"projection {projection} stalled: {self.reason}")


def apply_isolating(
    projection: Projection,
    events: Sequence[SequencedEvent],
    dead_letters: Sequence[DeadLetter],
    last_sequence: int,
    subjects: EventSubjects = DEFAULT_SUBJECTS,
) -> list[DeadLetter]:
    """Apply the batch; if that raises because of an event, apply event by event and
    dead-letter the ones whose content makes them raise.

    Returns the dead letters created here (``application_failed`` or the error's own kind),
    which the caller must also publish. Raises ProjectionStalledError, dead-lettering nothing
    more, as soon as any step fails because of the environment (the batch, one event, or a
    dead letter's own commit): the caller retries the same batch after a pause. A dead letter
    names its event's (v2) subject among ``subjects`` (the stream's).
    """
    try:
        projection.apply(events, dead_letters, last_sequence)
        return []
    except Exception as batch_error:
        if is_environmental(batch_error):
            raise ProjectionStalledError(projection.name, batch_error) from batch_error
        log.warning(
            "batch failed, applying one by one",
            projection=projection.name,
            error=repr(batch_error),
        )
    created: list[DeadLetter] = []
    pending = sorted(dead_letters, key=lambda d: d.sequence)
    try:
        for item in events:
            before = [d for d in pending if d.sequence < item.sequence]
            pending = [d for d in pending if d.sequence >= item.sequence]
            try:
                projection.apply([item], before, item.sequence)
            except Exception as exc:
                if is_environmental(exc):
                    raise
                # This event's content is the poison: keep it with its reason.
                letter = DeadLetter.of(
                    sequence=item.sequence,
                    subject=subjects.subject(item.event.type, item.event.namespace),
                    stored_at=item.stored_at,
                    kind=getattr(exc, "dead_letter_kind", "application_failed"),
                    reason=f"{projection.name} could not apply {item.event.type}: {exc!r}",
                    body=encode_event(item.event),
                    projection=projection.name,
                )
                projection.apply([], [*before, letter], item.sequence)
                created.append(letter)
        projection.apply([], pending, last_sequence)
    except Exception as exc:
        if is_environmental(exc):
            raise ProjectionStalledError(projection.name, exc, created) from exc
        raise
    return created

"""Turning stored messages into validated events or dead letters (never an exception).

A derived event (a type only the engine publishes) counts only when an engine of this stream
signed it (engine.signing): one without a valid signature is a ``forged`` dead letter and
reaches no projection, so a forged ``pattern.learned`` cannot make the learner believe a
version was announced, nor a forged ``memory.recalled`` raise a memory's ``reused_count``.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.errors import (
    InvalidEventError,
    NamespaceMismatchError,
    UnknownEventTypeError,
    UpcastError,
)
from engine.events import UpcasterRegistry, decode_event
from engine.events.registry import DERIVED_TYPES
from engine.events.upcasting import DEFAULT_UPCASTERS
from engine.signing import SIGNATURE_HEADER, Verifier
from engine.stream import StoredMessage
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects
from projections.records import DeadLetter, SequencedEvent

__all__ = ["FORGED", "NAMESPACE_MISMATCH", "dead_letter_kind", "decode_batch"]

FORGED = "forged"
"""Dead-letter kind of a derived event no engine of this stream signed."""
NAMESPACE_MISMATCH = "namespace_mismatch"
"""Dead-letter kind of a v2 event whose envelope namespace is not its subject's token."""


def dead_letter_kind(error: InvalidEventError) -> str:
    """The short reason class used in dead-letter subjects and the table."""
    if isinstance(error, UnknownEventTypeError):
        return "unknown_type"
    if isinstance(error, UpcastError):
        return "unknown_version"
    if isinstance(error, NamespaceMismatchError):
        return NAMESPACE_MISMATCH
    message = str(error)
    if message.startswith(("message body is not JSON", "message body is not UTF-8")):
        return "invalid_json"
    return "invalid_event"


def decode_batch(
    messages: Sequence[StoredMessage],
    projection: str,
    upcasters: UpcasterRegistry = DEFAULT_UPCASTERS,
    *,
    verifier: Verifier | None = None,
    subjects: EventSubjects = DEFAULT_SUBJECTS,
    namespaces: frozenset[str] | None = None,
) -> tuple[list[SequencedEvent], list[DeadLetter]]:
    """Split ``messages`` into events (validated, upcast) and dead letters, in stream order.

    With a ``verifier`` (the engine always passes its stream's key, or NO_KEY when there is
    none), a derived event it does not find genuine becomes a ``forged`` dead letter. Without
    one, derived events are not checked: only for tests and tools that sign nothing. A
    message's subject must be its event's among ``subjects`` (the stream's): v2
    (``<prefix>.<type>.<namespace>``, whose namespace must be the envelope's: else a
    ``namespace_mismatch`` dead letter) or v1 (``<prefix>.<type>``).

    ``namespaces`` (None: every one) are the tenants the reader owns: a message of another
    tenant is left out, neither an event nor a dead letter (the caller's checkpoint still
    moves past it). A v2 message's tenant is its subject's token (so a mismatch is the dead
    letter of the subject's owner alone); a v1 message's is its body's namespace (a v1 message
    that cannot be read is every reader's dead letter: nobody can tell whose it is).
    """
    events: list[SequencedEvent] = []
    dead: list[DeadLetter] = []
    for message in messages:
        if namespaces is not None and not _may_be_owned(message.subject, subjects, namespaces):
            continue
        try:
            event = decode_event(message.data, message.subject, upcasters, subjects)
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
        if (
            verifier is not None
            and event.type in DERIVED_TYPES
            and not verifier.genuine(message.data, message.headers)
        ):
            dead.append(_forged(message, event.type, projection))
            continue
        if namespaces is not None and event.namespace not in namespaces:
            continue  # a v1 event of another tenant
        events.append(SequencedEvent(message.sequence, message.time, event))
    return events, dead


def _may_be_owned(subject: str, subjects: EventSubjects, namespaces: frozenset[str]) -> bool:
    """False for a v2 subject of a namespace not in ``namespaces``; True otherwise (a v1 or
    unreadable subject: the body decides, or it is a dead letter)."""
    parsed = subjects.parse(subject)
    return parsed is None or parsed[1] is None or parsed[1] in namespaces


def _forged(message: StoredMessage, event_type: str, projection: str) -> DeadLetter:
    claimed = message.headers.get(SIGNATURE_HEADER)
    why = "carries no" if claimed is None else "carries an invalid"
    reason = (
        f"{event_type} is published by the engine only, and this one {why} {SIGNATURE_HEADER} "
        "of this stream's engine key: ignored"
    )
    return DeadLetter.of(
        sequence=message.sequence,
        subject=message.subject,
        stored_at=message.time,
        kind=FORGED,
        reason=reason,
        body=message.data,
        projection=projection,
    )

"""Building events from typed payloads (the SDK side)."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.errors import InvalidEventError
from engine.events._base import EventData
from engine.events.envelope import Event, typed_event_model
from engine.events.registry import EVENT_TYPES
from engine.ids import new_event_id

__all__ = ["make_event", "type_name_of"]

_NAME_BY_MODEL = {spec.model: name for name, spec in EVENT_TYPES.items()}


def type_name_of(data: EventData) -> str:
    """The event type of a payload model instance."""
    try:
        return _NAME_BY_MODEL[type(data)]
    except KeyError:
        raise InvalidEventError(f"{type(data).__name__} is not an event payload") from None


def make_event(
    data: EventData,
    *,
    namespace: str = "default",
    agent_id: str | None = None,
    session_id: str | None = None,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> Event:
    """Wrap ``data`` in an envelope at its type's current schema version.

    ``occurred_at`` defaults to now (UTC) and ``event_id`` to a fresh UUIDv7; pass both to make
    a retry produce the identical event, so JetStream stores it once.
    """
    name = type_name_of(data)
    model = typed_event_model(name)
    assert model is not None
    from engine.events.codec import validate_event

    return validate_event(
        {
            "id": event_id or new_event_id(),
            "type": name,
            "schema_version": EVENT_TYPES[name].version,
            "namespace": namespace,
            "occurred_at": occurred_at or datetime.now(UTC),
            "agent_id": agent_id,
            "session_id": session_id,
            "data": data,  # already validated: pydantic keeps the instance as is
        }
    )

"""Building events from typed payloads (the SDK side)."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from engine.errors import InvalidEventError
from engine.events._base import EventData
from engine.events.codec import explain_validation_error
from engine.events.envelope import Event, typed_event_model
from engine.events.registry import EVENT_TYPES
from engine.ids import new_event_id

__all__ = ["make_event", "type_name_of"]


def _envelope_models() -> dict[type[EventData], tuple[str, int, type[Event]]]:
    by_model: dict[type[EventData], tuple[str, int, type[Event]]] = {}
    for name, spec in EVENT_TYPES.items():
        model = typed_event_model(name)
        assert model is not None  # one typed envelope per catalogued type, by construction
        by_model[spec.model] = (name, spec.version, model)
    return by_model


_ENVELOPE_BY_PAYLOAD = _envelope_models()
"""Payload model -> (event type, current schema version, typed envelope model)."""


def _envelope_for(data: EventData) -> tuple[str, int, type[Event]]:
    try:
        return _ENVELOPE_BY_PAYLOAD[type(data)]
    except KeyError:
        raise InvalidEventError(f"{type(data).__name__} is not an event payload") from None


def type_name_of(data: EventData) -> str:
    """The event type of a payload model instance."""
    return _envelope_for(data)[0]


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
    a retry produce the identical event, so JetStream stores it once. Raises InvalidEventError
    (one line per problem) when an envelope field is wrong or ``data`` is not an event payload.
    """
    name, version, model = _envelope_for(data)
    # The typed envelope model validates every field it is given, the caller's envelope options
    # included. ``data`` is an instance of the payload model, validated when it was built, so
    # pydantic keeps it as is. No upcasting: the event is born at the current schema version.
    try:
        return model.model_validate(
            {
                "id": event_id or new_event_id(),
                "type": name,
                "schema_version": version,
                "namespace": namespace,
                "occurred_at": occurred_at or datetime.now(UTC),
                "agent_id": agent_id,
                "session_id": session_id,
                "data": data,
            }
        )
    except ValidationError as exc:
        problems = explain_validation_error(exc)
        raise InvalidEventError(f"invalid {name} event: " + "; ".join(problems), problems) from None

"""The event envelope: the JSON object every message on ``memory.<type>.<namespace>`` (and the
v1 ``memory.<type>``) carries."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    create_model,
    model_validator,
)

from engine.errors import UsageError
from engine.events._base import EventData
from engine.events.registry import EVENT_TYPES, spec_for, subject_for

__all__ = ["NAMESPACE_PATTERN", "Event", "check_namespace", "typed_event_model"]

NAMESPACE_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
"""A namespace is one NATS subject token (``memory.<type>.<namespace>``,
``engram.query.<namespace>.<verb>``): no ``.``, ``*``, ``>`` or whitespace."""
_NAMESPACE = re.compile(NAMESPACE_PATTERN)


def check_namespace(namespace: str) -> str:
    """``namespace`` when it is a valid namespace (one subject token); raises UsageError
    naming the allowed pattern otherwise."""
    if not _NAMESPACE.fullmatch(namespace):
        raise UsageError(
            f"namespace {namespace!r} is not valid: it must match {NAMESPACE_PATTERN} (1 to 64 "
            "letters, digits, '_' or '-'; it is one NATS subject token, so no '.', '*', '>' "
            "or spaces)"
        )
    return namespace


OptionalLabel = Annotated[str, Field(min_length=1, max_length=256, strict=True)] | None


class Event(BaseModel):
    """One event. ``data`` is the typed payload model of ``type`` after validation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$", strict=True)]
    type: Annotated[str, Field(min_length=1, max_length=128, strict=True)]
    schema_version: Annotated[int, Field(ge=0, strict=True)]
    namespace: Annotated[str, Field(pattern=NAMESPACE_PATTERN, strict=True)] = "default"
    occurred_at: AwareDatetime
    agent_id: OptionalLabel = None
    session_id: OptionalLabel = None
    data: SerializeAsAny[EventData]

    @model_validator(mode="after")
    def _data_matches_type(self) -> Self:
        spec = spec_for(self.type)
        if spec is None:
            raise ValueError(f"unknown event type {self.type!r}")
        if not isinstance(self.data, spec.model):
            raise ValueError(  # noqa: TRY004 - pydantic validators report through ValueError
                f"data of a {self.type} event must be a {spec.model.__name__}, "
                f"got {type(self.data).__name__}"
            )
        return self

    @property
    def subject(self) -> str:
        """``memory.<type>.<namespace>``: the subject under the default prefix. Publishers of a
        stream with another ``subject_prefix`` use its ``EventSubjects`` (the Appender does)."""
        return subject_for(self.type, self.namespace)

    def to_json_dict(self) -> dict[str, Any]:
        """The wire form: JSON-compatible, RFC 3339 timestamps, absent optionals omitted."""
        return self.model_dump(mode="json", exclude_none=True)

    def replace_data(self, data: EventData) -> Self:
        return self.model_copy(update={"data": data})

    @property
    def occurred(self) -> datetime:
        return self.occurred_at


def _build_typed_models() -> dict[str, type[Event]]:
    models: dict[str, type[Event]] = {}
    for name, spec in EVENT_TYPES.items():
        models[name] = create_model(
            spec.model.__name__ + "Event",
            __base__=Event,
            __doc__=f"A {name} event (schema version {spec.version}): {spec.model.__doc__}",
            type=(Literal[name], ...),  # type: ignore[arg-type]  # a Literal built at run time
            data=(spec.model, ...),
        )
    return models


_TYPED_MODELS = _build_typed_models()


def typed_event_model(event_type: str) -> type[Event] | None:
    """The envelope model whose ``data`` is the payload of ``event_type`` (None if unknown)."""
    return _TYPED_MODELS.get(event_type)

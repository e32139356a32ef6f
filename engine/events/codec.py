"""Turning bytes into validated events and back, with errors a person can act on."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError

from engine.errors import InvalidEventError, NamespaceMismatchError, UnknownEventTypeError
from engine.events.envelope import Event, typed_event_model
from engine.events.registry import spec_for
from engine.events.upcasting import DEFAULT_UPCASTERS, UpcasterRegistry
from engine.subjects import DEFAULT_SUBJECTS, EventSubjects

__all__ = ["decode_event", "encode_event", "explain_validation_error", "validate_event"]


def explain_validation_error(error: ValidationError) -> tuple[str, ...]:
    """One line per problem: ``field.path: what was wrong (got <value>)``."""
    lines: list[str] = []
    for item in error.errors(include_url=False):
        location = ".".join(str(part) for part in item["loc"]) or "(event)"
        message = item["msg"]
        if item["type"] == "missing":
            lines.append(f"{location}: required field is missing")
            continue
        got = item.get("input")
        shown = repr(got)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        suffix = "" if item["type"] in {"extra_forbidden"} else f" (got {shown})"
        if item["type"] == "extra_forbidden":
            message = "unknown field (check the spelling; free-form values go in metadata)"
        lines.append(f"{location}: {message}{suffix}")
    return tuple(lines)


def validate_event(
    raw: Mapping[str, Any], upcasters: UpcasterRegistry = DEFAULT_UPCASTERS
) -> Event:
    """Validate a decoded JSON object as an event, upcasting older schema versions first.

    Raises UnknownEventTypeError for a type engram does not know, UpcastError for a version it
    cannot read, and InvalidEventError (with one line per problem) for anything else.
    """
    event_type = raw.get("type")
    if not isinstance(event_type, str):
        raise InvalidEventError(
            "event has no 'type' string", ("type: required string field is missing or not text",)
        )
    spec = spec_for(event_type)
    model = typed_event_model(event_type)
    if spec is None or model is None:
        raise UnknownEventTypeError(
            f"unknown event type {event_type!r}", (f"type: unknown event type {event_type!r}",)
        )
    upgraded = upcasters.upcast(raw, spec.version)
    try:
        return model.model_validate(upgraded)
    except ValidationError as exc:
        problems = explain_validation_error(exc)
        raise InvalidEventError(
            f"invalid {event_type} event: " + "; ".join(problems), problems
        ) from None


def _decode_current(body: bytes | str, event_type: str | None) -> Event | None:
    """The fast path: a valid event at its type's current version, of ``event_type`` (the type
    its subject names).

    pydantic parses and validates the bytes in one pass, without building the JSON object in
    Python. None when the subject names no known type, when anything is wrong (the full path then
    finds and explains the problem), or when the version is not current (the full path upcasts).
    An event this returns is the one the full path returns: at the current version upcasting
    changes nothing, and the typed model checks the type against the subject.
    """
    model = typed_event_model(event_type) if event_type is not None else None
    spec = spec_for(event_type) if event_type is not None else None
    if model is None or spec is None:
        return None
    try:
        event = model.model_validate_json(body)
    except (ValueError, RecursionError):  # ValidationError is a ValueError
        return None
    return event if event.schema_version == spec.version else None


def _check_namespace(event: Event, subject: str, namespace: str | None) -> Event:
    """``event`` when its subject names no namespace (v1) or its own; raises
    NamespaceMismatchError naming both otherwise."""
    if namespace is not None and namespace != event.namespace:
        raise NamespaceMismatchError(
            f"subject {subject!r} is namespace {namespace!r} but the event's envelope says "
            f"{event.namespace!r}: the subject's namespace token must be the envelope's",
            ("namespace: does not match the subject",),
        )
    return event


def decode_event(
    body: bytes | str,
    subject: str | None = None,
    upcasters: UpcasterRegistry = DEFAULT_UPCASTERS,
    subjects: EventSubjects = DEFAULT_SUBJECTS,
) -> Event:
    """Parse a message body (and check it against its subject, one of ``subjects``, when given).

    The subject may be v2 (``memory.<type>.<namespace>``) or v1 (``memory.<type>``, the
    namespace only in the body). Raises InvalidEventError naming the problem: not UTF-8 / not
    JSON / not an object / subject and type disagree / a field is wrong; NamespaceMismatchError
    (an InvalidEventError) when a v2 subject's namespace is not the envelope's.
    """
    parsed = subjects.parse(subject) if subject is not None else None
    if subject is not None and parsed is not None:
        event = _decode_current(body, parsed[0])
        if event is not None:
            return _check_namespace(event, subject, parsed[1])
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise InvalidEventError(f"message body is not UTF-8: {exc.reason}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidEventError(
            f"message body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        # A small body of nested brackets exhausts the parser's stack: bad input, not a crash.
        raise InvalidEventError("message body is not JSON: nested too deeply") from None
    if not isinstance(raw, dict):
        raise InvalidEventError(f"event must be a JSON object, got {type(raw).__name__}")
    event = validate_event(raw, upcasters)
    if subject is None:
        return event
    if parsed is None or parsed[0] != event.type:
        raise InvalidEventError(
            f"subject {subject!r} does not match event type {event.type!r} "
            f"(expected {subjects.subject(event.type, event.namespace)})",
            ("type: does not match the subject",),
        )
    return _check_namespace(event, subject, parsed[1])


_WIRE_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""What ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False)`` builds on every call."""

# pydantic-core writes the same JSON as _WIRE_ENCODER, byte for byte, about three times faster,
# except for three kinds of number, which the checks below catch (a false alarm, such as text
# that looks like one, only costs the slower path):
# - magnitudes in [1e-5, 1e-4): "0.00001" where json writes "1e-05";
# - magnitudes in [1e-9, 1e-5): "1.5e-7" where json writes "1.5e-07" (json always writes two
#   exponent digits, so a one-digit negative exponent ending a number means a difference);
# - NaN and infinities (only in events never validated): "null" where json writes "NaN".
_ONE_DIGIT_NEGATIVE_EXPONENT = re.compile(rb"e-[0-9][,\]}]")


def _pydantic_wire_bytes(event: Event) -> bytes | None:
    """The wire bytes as pydantic-core writes them, or None where they may differ."""
    try:
        body = event.__pydantic_serializer__.to_json(event, exclude_none=True)
    except PydanticSerializationError:
        return None  # the reference path raises its own error
    if b"0.0000" in body or b"null" in body or _ONE_DIGIT_NEGATIVE_EXPONENT.search(body):
        return None
    return body


def encode_event(event: Event) -> bytes:
    """The canonical wire bytes of ``event``: compact JSON in UTF-8, exactly
    ``json.dumps(event.to_json_dict(), separators=(",", ":"), ensure_ascii=False).encode()``.
    """
    body = _pydantic_wire_bytes(event)
    if body is None:
        body = _WIRE_ENCODER.encode(event.to_json_dict()).encode()
    return body

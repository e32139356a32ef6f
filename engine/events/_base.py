"""Shared pydantic building blocks for event payloads."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "EventData",
    "FiniteFloat",
    "Identifier",
    "JsonObject",
    "NonNegativeFloat",
    "ShortText",
    "Text",
]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or infinity)")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Identifier = Annotated[
    str, Field(min_length=1, max_length=256, strict=True), AfterValidator(_not_blank)
]
"""An opaque id chosen by the publisher (task id, decision id, ...)."""

ShortText = Annotated[str, Field(min_length=1, max_length=1_000, strict=True)]
"""A label or a one-line text."""

Text = Annotated[str, Field(max_length=200_000, strict=True)]
"""Free text: summaries, rationales, documents (bounded so one event stays one message)."""

NonNegativeFloat = Annotated[float, Field(ge=0), AfterValidator(_finite)]

FiniteFloat = Annotated[float, AfterValidator(_finite)]


_STRICT_JSON = json.JSONEncoder(allow_nan=False, ensure_ascii=False)
"""What ``json.dumps(value, allow_nan=False, ensure_ascii=False)`` builds on every call."""


def _json_encodable(value: dict[str, Any]) -> dict[str, Any]:
    # Any accepts what JSON cannot carry (NaN, lone surrogates, arbitrary objects): refuse it
    # here, not as a crash (or a silent NaN -> null) when the event is encoded.
    try:
        _STRICT_JSON.encode(value).encode()
    except (TypeError, ValueError, RecursionError) as exc:  # UnicodeEncodeError is a ValueError
        raise ValueError(
            "must hold only JSON values (text, finite numbers, booleans, null, lists, objects): "
            f"{exc}"
        ) from None
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_encodable)]


class EventData(BaseModel):
    """Base of every event payload: frozen, and unknown fields are an error (typos surface)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

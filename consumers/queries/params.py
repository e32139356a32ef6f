"""Reading request parameters with errors that name the parameter (UsageError: exit 2).

Every string parameter is bounded: free texts (``LONG_TEXTS``) at 64 KB, everything else
(namespaces, task types, names) at 256 characters; numbers must be finite, and the few with a
natural range (``NUMBER_RANGES``) stay inside it. So no request can make a verb embed, match or
echo an unbounded string.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from typing import Any

from engine.errors import UsageError

__all__ = [
    "LONG_TEXTS",
    "MAX_IDENTIFIER_CHARS",
    "MAX_TEXT_CHARS",
    "NUMBER_RANGES",
    "limit_param",
    "namespace_param",
    "number_param",
    "required_text",
    "text_param",
]

MAX_IDENTIFIER_CHARS = 256
"""Namespaces, task types, pattern types, modes, export names, patterns ..."""
MAX_TEXT_CHARS = 65_536
"""Free text: what to search for, a task description, an operator's SQL."""
LONG_TEXTS = frozenset({"text", "task_description", "sql", "description", "context", "query"})
"""The parameters that carry free text; every other string parameter is an identifier."""
NUMBER_RANGES: dict[str, tuple[float, float]] = {"top_k": (1, 1_000)}
"""Inclusive bounds of the numeric parameters that have one."""


def text_param(payload: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    """A string parameter (or ``default``), at most MAX_TEXT_CHARS for the LONG_TEXTS and
    MAX_IDENTIFIER_CHARS for every other key; raises UsageError naming the key."""
    value = payload.get(key, default)
    if value is None:
        return None
    if not isinstance(value, str):
        raise UsageError(f"{key} must be a string, got {type(value).__name__}")
    most = MAX_TEXT_CHARS if key in LONG_TEXTS else MAX_IDENTIFIER_CHARS
    if len(value) > most:
        raise UsageError(f"{key} has {len(value):,} characters; at most {most:,} are accepted")
    return value


def number_param(payload: Mapping[str, Any], key: str, default: float) -> float:
    """A finite number (inside NUMBER_RANGES[key] when it has a range)."""
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{key} must be a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        number = math.inf
    if not math.isfinite(number):
        raise UsageError(f"{key} must be a finite number, got {reprlib.repr(value)}")
    low, high = NUMBER_RANGES.get(key, (-math.inf, math.inf))
    if not low <= number <= high:
        raise UsageError(f"{key} must be between {low:g} and {high:g}, got {reprlib.repr(value)}")
    return number


def limit_param(
    payload: Mapping[str, Any], default: int, key: str = "limit", *, maximum: int | None = None
) -> int:
    """A positive integer parameter (``limit`` unless ``key`` names another), at most
    ``maximum`` when given."""
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{key} must be a positive integer, got {reprlib.repr(value)}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{key} must be at most {maximum:,}, got {reprlib.repr(value)}")
    return value


def namespace_param(payload: Mapping[str, Any]) -> str:
    return text_param(payload, "namespace", "default") or "default"


def required_text(payload: Mapping[str, Any], key: str) -> str:
    value = text_param(payload, key)
    if not value:
        raise UsageError(f"{key} is required")
    return value

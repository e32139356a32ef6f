"""Reading request parameters with errors that name the parameter (UsageError: exit 2)."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from engine.errors import UsageError

__all__ = ["limit_param", "namespace_param", "number_param", "required_text", "text_param"]


def text_param(payload: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = payload.get(key, default)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{key} must be a string, got {type(value).__name__}")
    return value


def number_param(payload: Mapping[str, Any], key: str, default: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{key} must be a number, got {type(value).__name__}")
    return float(value)


def limit_param(payload: Mapping[str, Any], default: int, key: str = "limit") -> int:
    """A positive integer parameter (``limit`` unless ``key`` names another)."""
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{key} must be a positive integer, got {reprlib.repr(value)}")
    return value


def namespace_param(payload: Mapping[str, Any]) -> str:
    return text_param(payload, "namespace", "default") or "default"


def required_text(payload: Mapping[str, Any], key: str) -> str:
    value = text_param(payload, key)
    if not value:
        raise UsageError(f"{key} is required")
    return value

"""A request validated by its verb's model, with errors that name the parameter (UsageError).

pydantic's own messages say where and what in its words; a client reads ours: ``top_k must be
between 1 and 1000, got 0``, ``namespace must be a string, got list``, ``task_type is required``.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any, TypeVar

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from engine.errors import UsageError

__all__ = ["usage_message", "validate_request"]

R = TypeVar("R", bound=BaseModel)

_KIND_OF = {
    "string_type": "a string",
    "bool_type": "true or false",
    "int_type": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "an object",
}


def validate_request(model: type[R], payload: Mapping[str, Any]) -> R:
    """``payload`` as ``model``; raises UsageError naming the first bad parameter."""
    if not isinstance(payload, Mapping):
        raise UsageError("a query request must be a JSON object")
    try:
        return model.model_validate(dict(payload))
    except ValidationError as exc:
        raise UsageError(usage_message(model, exc.errors()[0])) from None


def _name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "the request"


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _range(model: type[BaseModel], field: str) -> str | None:
    """``field``'s range in words when it has both bounds (``between 1 and 1000``)."""
    info = model.model_fields.get(field)
    low: str | None = None
    high: str | None = None
    for item in info.metadata if info is not None else ():
        if isinstance(item, annotated_types.Ge):
            low = f"{float(item.ge):g}"  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Gt):
            low = f"more than {float(item.gt):g}"  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Le):
            high = f"{float(item.le):g}"  # type: ignore[arg-type]
        elif isinstance(item, annotated_types.Lt):
            high = f"less than {float(item.lt):g}"  # type: ignore[arg-type]
    if low is None or high is None:
        return None
    if low[0].isdigit() or low[0] == "-":
        return f"between {low} and {high}"
    return f"{low} and at most {high}" if high[0].isdigit() else f"{low} and {high}"


def usage_message(model: type[BaseModel], error: ErrorDetails) -> str:
    """One pydantic error of ``model`` in the words the project's errors use."""
    kind, loc, value = error["type"], error["loc"], error.get("input")
    name = _name(loc)
    ctx = error.get("ctx") or {}
    if kind == "missing" or (kind in {"string_too_short", "too_short"} and value == ""):
        return f"{name} is required"
    if kind in _KIND_OF:
        return f"{name} must be {_KIND_OF[kind]}, got {_type_name(value)}"
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        both = _range(model, str(loc[0])) if len(loc) == 1 else None
        if both is not None:
            return f"{name} must be {both}, got {reprlib.repr(value)}"
        bound = next(iter(ctx.values()), "")
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }
        return f"{name} must be {words[kind]} {bound}, got {reprlib.repr(value)}"
    if kind in {"string_too_long", "too_long"} and isinstance(value, str):
        most = int(ctx.get("max_length", 0))
        return f"{name} has {len(value):,} characters; at most {most:,} are accepted"
    if kind == "literal_error":
        return f"{name} must be {ctx.get('expected', 'one of the allowed values')}, got {value!r}"
    if kind == "too_short":
        return f"{name} must not be empty"
    if kind == "value_error":
        reason = str(ctx.get("error", error["msg"]))
        return reason if not loc else f"{name}: {reason}"  # a rule of the whole request
    return f"{name}: {error['msg']}"

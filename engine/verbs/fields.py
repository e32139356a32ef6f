"""The parameter types every query verb shares, and how the command line spells a parameter.

Every string is bounded: free texts (``LongText``) at 64 KB, everything else (namespaces, task
types, names: ``Identifier``) at 256 characters; numbers are finite (the wire refuses NaN and
Infinity), and those with a natural range carry it. So no request can make a verb embed, match or
echo an unbounded string.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

__all__ = [
    "MAX_IDENTIFIER_CHARS",
    "MAX_TEXT_CHARS",
    "Cli",
    "Identifier",
    "LongText",
    "Namespace",
    "OptionalNamespace",
    "RequiredText",
    "TopK",
    "or_default",
]

MAX_IDENTIFIER_CHARS = 256
"""Namespaces, task types, pattern types, modes, export names, patterns ..."""
MAX_TEXT_CHARS = 65_536
"""Free text: what to search for, a task description, an operator's SQL."""


@dataclass(frozen=True, slots=True)
class Cli:
    """How the ``engram`` command line spells one request field (the default: ``--field-name``,
    typed from the field, its help the field's description)."""

    flag: str | None = None
    """The option's name when it is not ``--field-name`` (e.g. ``--threshold``)."""
    positional: bool = False
    """An argument, not an option (e.g. the text of ``engram search TEXT``)."""
    repeat: str | None = None
    """A list given one item per repeated option of this name (e.g. ``--tier working``)."""
    negate: str | None = None
    """A boolean that defaults to true, switched off by this flag (e.g. ``--no-group``)."""
    hidden: bool = False
    """Not offered on the command line (set by the verb's command itself)."""


def _default_namespace(value: Any) -> Any:
    # An absent, null or empty namespace is the default one (as every client has always sent).
    return "default" if value is None or value == "" else value


def _top_k_count(value: Any) -> Any:
    # top_k has always been read as a number, checked against 1..1000 and then truncated (JSON
    # has no integer type): 5.5 is 5, while 0.5 and 1000.5 are out of range.
    if isinstance(value, float) and math.isfinite(value):
        return math.floor(value) if value < 1 else math.ceil(value) if value > 1_000 else int(value)
    return value


def or_default(default: Any) -> BeforeValidator:
    """A validator for an optional choice: absent, null or empty means ``default`` (as every
    client has always been answered)."""
    return BeforeValidator(lambda value: default if value is None or value == "" else value)


Identifier = Annotated[str, Field(max_length=MAX_IDENTIFIER_CHARS)]
LongText = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
RequiredText = Annotated[str, Field(min_length=1)]
"""A text parameter that must be given and not empty (combine with Identifier or LongText)."""
Namespace = Annotated[
    str,
    BeforeValidator(_default_namespace),
    Field(max_length=MAX_IDENTIFIER_CHARS, description="the tenant (default: default)"),
]
OptionalNamespace = Annotated[
    str | None,
    Field(max_length=MAX_IDENTIFIER_CHARS, description="one namespace (default: every one)"),
]
TopK = Annotated[
    int,
    Field(ge=1, le=1_000, description="how many results at most"),
    # After the Field in the annotation, so that the JSON Schema keeps minimum and maximum.
    BeforeValidator(_top_k_count),
]

"""Payloads of the key-value item events (``item.put``, ``item.deleted``), schema version 1.

An item is a JSON object stored under a *path* (a list of labels, LangGraph's namespace tuple)
and a *key*, within one engram namespace (the tenant: the envelope's ``namespace`` and the
subject's token). The path is not the tenant: it lives in the payload, and two tenants may
use the same path without ever seeing each other's items.

Labels follow LangGraph's rules (``langgraph.store.base``: a label is a non-empty string with
no period and no NUL), so a path joined with periods names one path only. Sizes are bounded so
one event stays one NATS message: at most ``MAX_LABELS`` labels of ``MAX_LABEL_CHARS``, a key
of ``MAX_KEY_CHARS``, a value of ``MAX_VALUE_BYTES`` as JSON, ``MAX_INDEX_PATHS`` index paths.

Upcasting: both types are at version 1 (``engine.events.registry``); a later version registers
its step in ``engine.events.upcasting.DEFAULT_UPCASTERS`` and stored v1 events keep replaying.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictBool, field_validator

from engine.events._base import EventData, JsonObject

__all__ = [
    "ITEM_TYPES",
    "MAX_INDEX_PATHS",
    "MAX_KEY_CHARS",
    "MAX_LABELS",
    "MAX_LABEL_CHARS",
    "MAX_TTL_MINUTES",
    "MAX_VALUE_BYTES",
    "IndexPath",
    "ItemDeleted",
    "ItemKey",
    "ItemPut",
    "Label",
    "check_label",
]

ITEM_TYPES = frozenset({"item.put", "item.deleted"})
"""The event types of items (``engine.events.registry`` declares them)."""
MAX_LABELS = 32
MAX_LABEL_CHARS = 256
MAX_KEY_CHARS = 1_024
MAX_VALUE_BYTES = 256 * 1024
"""The value as compact JSON (UTF-8): an event must fit one NATS message (1 MB by default)."""
MAX_INDEX_PATHS = 32
MAX_TTL_MINUTES = 100 * 365 * 24 * 60.0
"""A hundred years: beyond it a TTL means nothing a store could honour."""


def check_label(label: str) -> str:
    """``label`` when LangGraph would accept it as a namespace label; ValueError saying why not
    (the message names the rule, like LangGraph's InvalidNamespaceError)."""
    if not label:
        raise ValueError("a label must not be empty")
    if "." in label:
        raise ValueError(f"label {label!r} contains a period ('.'), which labels may not")
    if "\x00" in label:
        raise ValueError(f"label {label!r} contains a NUL byte, which labels may not")
    return label


def _key(key: str) -> str:
    if not key:
        raise ValueError("the key must not be empty")
    if "\x00" in key:
        raise ValueError("the key contains a NUL byte")
    return key


def _bounded_value(value: dict[str, Any]) -> dict[str, Any]:
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_VALUE_BYTES:
        raise ValueError(
            f"the value is {size:,} bytes as JSON, more than {MAX_VALUE_BYTES:,} (one event is "
            "one NATS message): store large documents elsewhere and keep a reference here"
        )
    return value


Label = Annotated[str, Field(max_length=MAX_LABEL_CHARS, strict=True), AfterValidator(check_label)]
"""One label of an item's path (LangGraph's namespace tuple)."""
ItemKey = Annotated[str, Field(max_length=MAX_KEY_CHARS, strict=True), AfterValidator(_key)]
IndexPath = Annotated[str, Field(min_length=1, max_length=MAX_LABEL_CHARS, strict=True)]
"""A field path of the value to index for search (LangGraph's syntax: ``"$"`` the whole value,
``"a.b"``, ``"a[0]"``, ``"a[-1]"``, ``"a[*].b"``, ``"{a,b}"``)."""
ItemPath = Annotated[list[Label], Field(min_length=1, max_length=MAX_LABELS)]


class ItemPut(EventData):
    """An item stored (or replaced whole) under ``path`` and ``key``.

    ``index``: which fields of ``value`` a search's query is matched against: null, the whole
    value; a list of field paths, those fields; false, none (the item is still found by its path
    and filters, never ranked by a query). ``ttl``: minutes after this put at which the item
    expires (reads stop returning it); null, never.
    """

    path: ItemPath
    key: ItemKey
    value: Annotated[JsonObject, AfterValidator(_bounded_value)]
    index: Annotated[list[IndexPath], Field(max_length=MAX_INDEX_PATHS)] | StrictBool | None = None
    ttl: Annotated[float, Field(gt=0, le=MAX_TTL_MINUTES)] | None = None

    @field_validator("index")
    @classmethod
    def _false_or_paths(cls, index: list[str] | bool | None) -> list[str] | bool | None:
        if index is True:
            raise ValueError("index must be false, a list of field paths or null (not true)")
        return index

    @field_validator("ttl")
    @classmethod
    def _finite(cls, ttl: float | None) -> float | None:
        if ttl is not None and not math.isfinite(ttl):
            raise ValueError("ttl must be a finite number of minutes")
        return ttl


class ItemDeleted(EventData):
    """The item under ``path`` and ``key`` removed (nothing happens when there is none)."""

    path: ItemPath
    key: ItemKey

"""Items (``item.put``, ``item.deleted``) as rows of the ``items`` table: pure, no I/O.

A row is the newest value of one (namespace, path, key). Its ``path`` column is the labels
joined with periods: labels hold no period (``engine.events.items``), so the joined form names
one path, and a path's descendants are exactly the rows whose ``path`` starts with it and a
period. ``text`` is what a search's query is matched against, extracted from the value by the
put's ``index`` once, when the event is applied (so every engine and every replay index the
same text); NULL when the item is not indexed (``index`` false, or no field found).

Times come from the event: ``created_at`` is the ``occurred_at`` of the first put since the
item last did not exist, ``updated_at`` that of the newest put, ``expires_at`` the newest put's
``occurred_at`` plus its ``ttl`` (NULL without one). Expired rows stay until deleted: a
projection reads no clock, so expiry is applied by readers (``expires_at`` against the time of
the read), never by the projection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "PATH_SEPARATOR",
    "expires_at",
    "join_path",
    "search_text",
    "split_path",
    "text_at_path",
    "tokenize_field_path",
]

PATH_SEPARATOR = "."

_JSON = json.JSONEncoder(ensure_ascii=False, sort_keys=True)
"""What LangGraph's ``get_text_at_path`` dumps objects with (the same text for the same value)."""


def join_path(labels: Sequence[str]) -> str:
    """The ``path`` column of ``labels`` (``["users", "u1"]`` -> ``"users.u1"``)."""
    return PATH_SEPARATOR.join(labels)


def split_path(path: str) -> tuple[str, ...]:
    """The labels of a ``path`` column (the empty path has none)."""
    return tuple(path.split(PATH_SEPARATOR)) if path else ()


def expires_at(occurred_at: datetime, ttl_minutes: float | None) -> datetime | None:
    """When an item put at ``occurred_at`` with ``ttl_minutes`` expires (None: never)."""
    return None if ttl_minutes is None else occurred_at + timedelta(minutes=ttl_minutes)


def tokenize_field_path(path: str) -> list[str]:
    """A field path as tokens: names, ``[n]`` / ``[*]`` indexes, ``{a,b}`` groups
    (``"a.b[0].{c,d}"`` -> ``["a", "b", "[0]", "{c,d}"]``)."""
    tokens: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        char = path[i]
        if char in "[{":
            if current:
                tokens.append("".join(current))
                current = []
            close = "]" if char == "[" else "}"
            depth, start = 0, i
            while i < len(path):
                if path[i] == char:
                    depth += 1
                elif path[i] == close:
                    depth -= 1
                    if depth == 0:
                        break
                i += 1
            tokens.append(path[start : i + 1])
            i += 1
            continue
        if char == ".":
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
        i += 1
    if current:
        tokens.append("".join(current))
    return tokens


def _leaf(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return [str(value)]  # "True" / "False", as LangGraph writes them
    if isinstance(value, str | int | float):
        return [str(value)]
    if isinstance(value, list | dict):
        return [_JSON.encode(value)]
    return []


def _walk(value: Any, tokens: list[str], at: int) -> Iterator[str]:
    if at == len(tokens):
        yield from _leaf(value)
        return
    token = tokens[at]
    if token.startswith("[") and token.endswith("]"):
        if not isinstance(value, list):
            return
        inner = token[1:-1].strip()
        if inner == "*":
            for item in value:
                yield from _walk(item, tokens, at + 1)
            return
        try:
            index = int(inner)
        except ValueError:
            return
        if index < 0:
            index += len(value)
        if 0 <= index < len(value):
            yield from _walk(value[index], tokens, at + 1)
        return
    if token.startswith("{") and token.endswith("}"):
        if not isinstance(value, dict):
            return
        for field in dict.fromkeys(f.strip() for f in token[1:-1].split(",")):
            yield from _walk(value, tokenize_field_path(field), 0)
        return
    if token == "*":
        items = (
            value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        )
        for item in items:
            yield from _walk(item, tokens, at + 1)
        return
    if isinstance(value, dict) and token in value:
        yield from _walk(value[token], tokens, at + 1)


def text_at_path(value: dict[str, Any], path: str) -> list[str]:
    """The texts a field path selects in ``value`` (LangGraph's path syntax; ``"$"`` is the
    whole value as JSON with sorted keys); ``[]`` when the path selects nothing."""
    return list(_texts_at(value, path))


def _texts_at(value: dict[str, Any], path: str) -> Iterator[str]:
    """``text_at_path``, lazily (``search_text`` stops reading at its bound)."""
    if path == "$" or not path:
        yield _JSON.encode(value)
        return
    yield from _walk(value, tokenize_field_path(path), 0)


MAX_SEARCH_TEXT = 262_144
"""The most characters an item's search text holds (the texts of its index paths, cut there)."""


def search_text(value: dict[str, Any], index: Sequence[str] | bool | None) -> str | None:
    """The text a query is matched against: the texts of every ``index`` path, one per line
    (None: the whole value); None when ``index`` is false or selects nothing."""
    if index is False or index is True:
        return None
    paths = ["$"] if index is None else list(dict.fromkeys(index))
    texts: list[str] = []
    size = 0
    for path in paths:
        for text in _texts_at(value, path):
            # Bounded: wildcards and {a,b} groups can select the value many times over (32
            # paths of 127 stars each would make a gigabyte of one 256 KB value).
            texts.append(text[: MAX_SEARCH_TEXT - size])
            size += len(texts[-1]) + 1
            if size >= MAX_SEARCH_TEXT:
                return "\n".join(texts)
    return "\n".join(texts) if texts else None

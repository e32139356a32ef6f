"""The item verbs (``items_get``, ``items_search``, ``items_namespaces``): reads of the ``items``
table (``projections.tables.items``), on a fresh DuckDB cursor per request, in a worker thread.

Every read is of one tenant (the request's ``namespace``), parameterised SQL only, and leaves
out expired items: those whose ``expires_at`` is at or before the time of the read (the only
clock here: the projection never reads one, so an expired row stays in the table until its
item is deleted or put again).

- ``items_get``: the items of one path with the keys asked (those that exist).
- ``items_search``: the items under a path prefix (the path itself and every path below it)
  whose value passes the filter (``engine.item_filters``), newest write first; with a
  ``query``, ranked by it (``item_ranking``: BM25 and the active embedder's vectors fused),
  best first, items without search text (``index`` false) last with no score. ``offset`` and
  ``limit`` page the ordered list.
- ``items_namespaces``: the distinct paths holding items, matching a prefix and a suffix
  (``*`` matches any one label), cut to ``max_depth`` labels, sorted, paged.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np

from consumers.queries.dispatch import QueryDispatcher, on_cursor
from consumers.queries.item_ranking import ItemTextCache, rank_texts
from engine.item_filters import matches
from projections.embedders import Embedder
from projections.tables.items import join_path, split_path
from projections.vectors.retrieval import DEFAULT_LEXICAL_WEIGHT

__all__ = [
    "ItemVerbs",
    "get_items",
    "item_namespaces",
    "search_items",
]

CursorFactory = Callable[[], duckdb.DuckDBPyConnection]
Clock = Callable[[], datetime]
Rank = Callable[[str, Sequence[str], Sequence[int]], Sequence[float]]
"""Scores texts (of the puts at the sequences given) against a query."""

_COLUMNS = "path, key, value, created_at, updated_at, expires_at, sequence"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def _now() -> datetime:
    return datetime.now(UTC)


def _record(row: Mapping[str, Any], score: float | None = None) -> dict[str, Any]:
    expires = row["expires_at"]
    record = {
        "path": list(split_path(row["path"])),
        "key": row["key"],
        "value": json.loads(row["value"]),
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "expires_at": None if expires is None else expires.isoformat(),
        "sequence": int(row["sequence"]),
    }
    if score is not None:
        record["score"] = score
    return record


def _rows(cursor: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = cursor.sql(sql, params=params).to_arrow_table().to_pylist()
    return rows


def _under(prefix: Sequence[str]) -> tuple[str, list[Any]]:
    """The SQL condition of "at or below ``prefix``" and its parameters."""
    if not prefix:
        return "TRUE", []
    joined = join_path(prefix)
    return "(path = ? OR starts_with(path, ?))", [joined, joined + "."]


_PLAIN_FIELD = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_WIDENED = {"$eq": "=", "$gt": ">=", "$gte": ">=", "$lt": "<=", "$lte": "<="}


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def prefilter(filter: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """A SQL condition every value that passes ``filter`` meets (DuckDB's JSON functions), so
    fewer values are decoded and tested in Python: the exact test (``engine.item_filters``)
    still decides. Only plainly named top-level fields, a text's equality and comparisons of
    numbers and texts are pushed down, each widened to hold whatever rounding to a double does
    (``>`` as ``>=``); everything else is left to Python (``TRUE``)."""
    clauses: list[str] = []
    params: list[Any] = []
    for field, condition in filter.items():
        if not _PLAIN_FIELD.fullmatch(field):
            continue
        path = f'$."{field}"'
        if isinstance(condition, str):
            condition = {"$eq": condition}
        if not isinstance(condition, Mapping):
            continue
        for operator, operand in condition.items():
            sql = _WIDENED.get(operator)
            if sql is None:
                continue
            if isinstance(operand, str):
                clauses.append(f"json_extract_string(value, ?) {sql} ?")
                params += [path, operand]
            elif _number(operand) and _finite(operand):
                clauses.append(f"TRY_CAST(json_extract_string(value, ?) AS DOUBLE) {sql} ?")
                params += [path, float(operand)]
    return (" AND ".join(clauses) or "TRUE"), params


def _finite(number: float) -> bool:
    """True for a number a DOUBLE holds (an integer too large for one, e.g. 10**400, which JSON
    allows, is not pushed down: the exact check in Python decides it)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def get_items(
    cursor: duckdb.DuckDBPyConnection,
    namespace: str,
    path: Sequence[str],
    keys: Sequence[str],
    now: datetime,
) -> list[dict[str, Any]]:
    """The live items of ``path`` whose key is one of ``keys``, in the order of ``keys``."""
    wanted = list(dict.fromkeys(keys))
    marks = ", ".join("?" for _ in wanted)
    found = _rows(
        cursor,
        f"SELECT {_COLUMNS} FROM items WHERE namespace = ? AND path = ? AND key IN ({marks}) "
        f"AND {_LIVE}",
        [namespace, join_path(path), *wanted, now],
    )
    by_key = {row["key"]: row for row in found}
    return [_record(by_key[key]) for key in wanted if key in by_key]


def search_items(
    cursor: duckdb.DuckDBPyConnection,
    namespace: str,
    prefix: Sequence[str],
    filter: Mapping[str, Any] | None,
    query: str | None,
    limit: int,
    offset: int,
    now: datetime,
    rank: Rank | None = None,
) -> list[dict[str, Any]]:
    """One page of the items under ``prefix`` passing ``filter``, ordered (see the module).
    ``rank`` scores texts (of the puts at the sequences given) against ``query`` (None: no
    ranking, newest first)."""
    under, params = _under(prefix)
    where = f"namespace = ? AND {under} AND {_LIVE}"
    params = [namespace, *params, now]
    if not filter and (not query or rank is None):
        rows = _rows(
            cursor,
            f"SELECT {_COLUMNS} FROM items WHERE {where} ORDER BY sequence DESC LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [_record(row) for row in rows]
    # Candidates first (only the columns the filter and the ranking need), the page's rows last.
    columns = ["sequence", *(["value"] if filter else []), *(["text"] if query else [])]
    narrowed, more = prefilter(filter) if filter else ("TRUE", [])
    found = cursor.sql(
        f"SELECT {', '.join(columns)} FROM items WHERE {where} AND {narrowed} "
        "ORDER BY sequence DESC",
        params=[*params, *more],
    ).fetchnumpy()
    sequences: list[int] = found["sequence"].tolist()
    keep = list(range(len(sequences)))
    if filter:
        values = found["value"].tolist()
        keep = [i for i in keep if matches(json.loads(values[i]), filter)]
    scores: dict[int, float] = {}
    if query and rank is not None:
        texts = found["text"].tolist()
        indexed = [i for i in keep if texts[i] is not None]
        ranked = rank(query, [texts[i] for i in indexed], [sequences[i] for i in indexed])
        scores = {sequences[i]: float(s) for i, s in zip(indexed, ranked, strict=True)}
        # Best first (ties: newest first: keep is newest first and the sort is stable), then
        # the items without text, newest first.
        keep = [indexed[i] for i in np.argsort(-np.asarray(ranked), kind="stable")] + [
            i for i in keep if texts[i] is None
        ]
    page = [sequences[i] for i in keep[offset : offset + limit]]
    if not page:
        return []
    marks = ", ".join("?" for _ in page)
    rows = _rows(
        cursor,
        f"SELECT {_COLUMNS} FROM items WHERE namespace = ? AND sequence IN ({marks})",
        [namespace, *page],
    )
    by_sequence = {int(row["sequence"]): row for row in rows}
    return [
        _record(by_sequence[s], round(scores[s], 6) if s in scores else None)
        for s in page
        if s in by_sequence
    ]


def _fits(path: tuple[str, ...], pattern: Sequence[str], suffix: bool) -> bool:
    if len(path) < len(pattern):
        return False
    part = path[len(path) - len(pattern) :] if suffix else path[: len(pattern)]
    return all(want == "*" or want == have for want, have in zip(pattern, part, strict=True))


def item_namespaces(
    cursor: duckdb.DuckDBPyConnection,
    namespace: str,
    prefix: Sequence[str] | None,
    suffix: Sequence[str] | None,
    max_depth: int | None,
    limit: int,
    offset: int,
    now: datetime,
) -> list[list[str]]:
    """The paths holding live items that start with ``prefix`` and end with ``suffix`` (``*``
    any one label), each cut to ``max_depth`` labels, distinct, sorted, paged."""
    found = cursor.sql(
        f"SELECT DISTINCT path FROM items WHERE namespace = ? AND {_LIVE}",
        params=[namespace, now],
    ).fetchnumpy()
    paths: set[tuple[str, ...]] = set()
    for joined in found["path"].tolist():
        path = split_path(joined)
        if prefix and not _fits(path, prefix, suffix=False):
            continue
        if suffix and not _fits(path, suffix, suffix=True):
            continue
        paths.add(path[:max_depth] if max_depth is not None else path)
    return [list(path) for path in sorted(paths)[offset : offset + limit]]


class ItemVerbs:
    """Answers the item verbs from the tables' database, ranking searches with the active
    embedder (``embedder()``: asked per search, so a reindex's switch is followed)."""

    def __init__(
        self,
        cursor_factory: CursorFactory,
        embedder: Callable[[], Embedder],
        *,
        lexical_weight: float = DEFAULT_LEXICAL_WEIGHT,
        cache: ItemTextCache | None = None,
        clock: Clock = _now,
    ) -> None:
        self._cursor = cursor_factory
        self._embedder = embedder
        self.lexical_weight = lexical_weight
        self.cache = cache or ItemTextCache()
        self._clock = clock

    def register(self, dispatcher: QueryDispatcher) -> None:
        dispatcher.register("items_get", self._in_thread(self._get))
        dispatcher.register("items_search", self._in_thread(self._search))
        dispatcher.register("items_namespaces", self._in_thread(self._namespaces))

    def _in_thread(
        self, answer: Callable[[duckdb.DuckDBPyConnection, Any], dict[str, Any]]
    ) -> Callable[[Any], Any]:
        return on_cursor(self._cursor, answer)

    def rank(self, query: str, texts: Sequence[str], sequences: Sequence[int]) -> Sequence[float]:
        """The hybrid similarity of each text to ``query`` (``item_ranking.rank_texts``)."""
        scores = rank_texts(
            query, texts, self._embedder(), self.cache, self.lexical_weight, sequences
        )
        return [float(s) for s in scores]

    def _get(self, cursor: duckdb.DuckDBPyConnection, r: Any) -> dict[str, Any]:
        return {"items": get_items(cursor, r.namespace, r.path, r.keys, self._clock())}

    def _search(self, cursor: duckdb.DuckDBPyConnection, r: Any) -> dict[str, Any]:
        items = search_items(
            cursor,
            r.namespace,
            r.prefix,
            r.filter,
            r.query,
            r.limit,
            r.offset,
            self._clock(),
            self.rank,
        )
        return {"items": items}

    def _namespaces(self, cursor: duckdb.DuckDBPyConnection, r: Any) -> dict[str, Any]:
        paths = item_namespaces(
            cursor,
            r.namespace,
            r.prefix,
            r.suffix,
            r.max_depth,
            r.limit,
            r.offset,
            self._clock(),
        )
        return {"namespaces": paths}

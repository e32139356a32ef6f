"""One table of query verbs, shared by the engine's NATS service and the CLI's direct reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import duckdb

from consumers.queries import readers
from consumers.queries.params import limit_param
from engine.errors import EngramError, UsageError
from engine.query_client import QUERY_PREFIX
from projections.tables.export import export_parquet

__all__ = ["QUERY_PREFIX", "QueryDispatcher", "error_reply"]


CursorFactory = Callable[[], duckdb.DuckDBPyConnection]
Extra = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def _text(payload: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = payload.get(key)
    if value is None:
        if required:
            raise UsageError(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise UsageError(f"{key} must be a string, got {type(value).__name__}")
    return value


def error_reply(exc: BaseException) -> dict[str, Any]:
    kind = "usage" if isinstance(exc, UsageError) else "failure"
    return {"error": str(exc) or repr(exc), "kind": kind}


class QueryDispatcher:
    """Runs read verbs on a fresh cursor per request (DuckDB: one cursor per thread)."""

    def __init__(self, cursor_factory: CursorFactory) -> None:
        self._cursor = cursor_factory
        self._extra: dict[str, Extra] = {}

    @property
    def verbs(self) -> list[str]:
        return sorted({"metrics", "workflows", "sql", "checkpoints", "export", *self._extra})

    def register(self, verb: str, handler: Extra) -> None:
        """Add a verb served elsewhere (e.g. status, which also needs the stream)."""
        self._extra[verb] = handler

    def _sync(self, verb: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        cursor = self._cursor()
        try:
            if verb == "metrics":
                ns, tt = _text(payload, "namespace"), _text(payload, "task_type")
                return {"metrics": readers.task_metrics(cursor, ns, tt)}
            if verb == "workflows":
                ns, tt = _text(payload, "namespace"), _text(payload, "task_type")
                return {"workflows": readers.workflow_metrics(cursor, ns, tt)}
            if verb == "sql":
                query = _text(payload, "sql", required=True)
                assert query is not None
                return readers.run_sql(cursor, query, limit_param(payload, 10_000))
            if verb == "export":
                target = _text(payload, "to", required=True)
                assert target is not None
                return export_parquet(cursor, Path(target))
            if verb == "checkpoints":
                return {"checkpoints": readers.checkpoints(cursor)}
            raise UsageError(f"unknown query verb {verb!r}; known: {', '.join(self.verbs)}")
        finally:
            cursor.close()

    async def handle(self, verb: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """The reply to ``verb``; raises UsageError for bad requests, EngramError otherwise."""
        if not isinstance(payload, Mapping):
            raise UsageError("a query request must be a JSON object")
        if verb in self._extra:
            return await self._extra[verb](payload)
        try:
            return await asyncio.to_thread(self._sync, verb, payload)
        except duckdb.Error as exc:
            raise EngramError(f"query {verb} failed: {exc}") from None

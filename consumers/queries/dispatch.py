"""One table of query verbs, shared by the engine's NATS service and the CLI's direct reads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import structlog

from consumers.queries import readers
from consumers.queries.params import limit_param, required_text, text_param
from consumers.queries.sandbox import SQL_MAX_ROWS
from engine.errors import EngramError, ForbiddenError, QueryError, UsageError
from engine.query_client import QUERY_PREFIX
from projections.tables.export import export_parquet

__all__ = ["EXPORTS_DIR", "QUERY_PREFIX", "OperatorAccess", "QueryDispatcher", "error_reply"]

log = structlog.get_logger(__name__)

EXPORTS_DIR = "exports"
"""Where, under its data directory, an engine writes the exports remote clients ask for."""


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    """What the operator verbs ``sql`` and ``export`` may do for whoever asks a dispatcher.

    The default refuses both: an engine serving NATS says what it allows (``remote``); only a
    process reading a data directory on its own machine, with its user's rights, is ``local``.
    """

    local: bool = False
    """The asker runs here with its own rights: ``sql`` answers, ``export`` writes anywhere."""
    sql: bool = False
    """Answer ``sql`` for remote askers too (always in the sandbox, see readers.run_sql)."""
    export_root: Path | None = None
    """Remote exports write only under this directory (None: remote exports are refused)."""

    @classmethod
    def remote(cls, data_dir: Path, *, sql: bool, export: bool = False) -> OperatorAccess:
        """What an engine serving ``data_dir`` allows remote clients: ``sql`` when told so,
        ``export`` (under ``<data dir>/exports`` only) when told so."""
        return cls(sql=sql, export_root=data_dir / EXPORTS_DIR if export else None)


_EXPORT_OFF = (
    "export is an operator verb and is off on this engine: start it with engram serve "
    "--enable-export (or ENGRAM_QUERY_EXPORT=true), or run engram export --data-dir DIR on the "
    "engine's host while no engine holds DIR"
)
_SQL_OFF = (
    "sql is an operator verb and is off on this engine: start it with engram serve "
    "--enable-sql (or ENGRAM_QUERY_SQL=true), or run engram sql --data-dir DIR on the engine's "
    "host while no engine holds DIR"
)


def export_target(access: OperatorAccess, requested: str) -> Path:
    """Where an ``export`` asked to write ``requested`` writes; raises ForbiddenError.

    Local: the path as given. Remote: a relative path names a directory under the export root;
    an absolute one must lie under it. Both are resolved first (``..`` and symlinks included),
    so neither can leave the root; the root itself is refused (exports go into a new directory).
    """
    if access.local:
        return Path(requested)
    if access.export_root is None:
        raise ForbiddenError(_EXPORT_OFF)
    root = access.export_root.resolve()
    place = f"{root}/<name>"
    if not requested.strip():
        raise UsageError(f"to is empty: name the export, it is written to {place}")
    try:
        asked = Path(requested)
        target = (asked if asked.is_absolute() else root / asked).resolve()
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"to is not a usable path ({exc}): exports are written to {place}"
        ) from None
    if target == root or not target.is_relative_to(root):
        raise ForbiddenError(
            f"a remote export writes only under the engine's data directory, in {place}; "
            f"{requested!r} is outside it: pass a name (engram export --to NAME), or export "
            "with --data-dir on the engine's host while no engine holds the directory"
        )
    return target


CursorFactory = Callable[[], duckdb.DuckDBPyConnection]
Extra = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


def error_reply(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, UsageError):
        kind = "usage"
    elif isinstance(exc, ForbiddenError):
        kind = "forbidden"
    else:
        kind = "failure"
    return {"error": str(exc) or repr(exc), "kind": kind}


class QueryDispatcher:
    """Runs read verbs on a fresh cursor per request (DuckDB: one cursor per thread).

    ``access`` decides the operator verbs (default: both refused, see OperatorAccess).
    """

    def __init__(
        self, cursor_factory: CursorFactory, *, access: OperatorAccess | None = None
    ) -> None:
        self._cursor = cursor_factory
        self._access = access or OperatorAccess()
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
                ns, tt = text_param(payload, "namespace"), text_param(payload, "task_type")
                return {"metrics": readers.task_metrics(cursor, ns, tt)}
            if verb == "workflows":
                ns, tt = text_param(payload, "namespace"), text_param(payload, "task_type")
                return {"workflows": readers.workflow_metrics(cursor, ns, tt)}
            if verb == "sql":
                query = required_text(payload, "sql")
                if not (self._access.local or self._access.sql):
                    log.warning("sql refused: off on this engine", sql=query[:200])
                    raise ForbiddenError(_SQL_OFF)
                if not self._access.local:
                    log.info("operator sql", sql=query[:200])
                limit = limit_param(payload, SQL_MAX_ROWS, maximum=SQL_MAX_ROWS)
                return readers.run_sql(cursor, query, limit)
            if verb == "export":
                if not self._access.local and self._access.export_root is None:
                    raise ForbiddenError(_EXPORT_OFF)
                requested = required_text(payload, "to")
                target = export_target(self._access, requested)
                if not self._access.local:
                    log.info("operator export", to=str(target))
                try:
                    manifest = export_parquet(cursor, target)
                except OSError as exc:  # a name the file system refuses, a full disk ...
                    raise QueryError(f"export to {target} failed: {exc.strerror or exc}") from None
                return {**manifest, "location": str(target)}
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

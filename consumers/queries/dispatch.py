"""The handlers of the catalogued query verbs, shared by the engine's NATS service and the CLI's
direct reads.

A dispatcher answers only verbs of the catalogue (``engine.verbs``), each validated by its
request model before its handler sees it; handlers take the validated request. A verb asked on a
tenant's subject (``engram.query.<namespace>.<verb>``) is about that namespace: it fills the
request's ``namespace``, and a body naming another one is refused. The verbs over
the tables (metrics, workflows, sql, export, checkpoints) are served here; the others are
registered by whoever owns their projections (``register``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import structlog

from consumers.queries import readers
from consumers.queries.freshness import Freshness
from engine.errors import EngramError, ForbiddenError, QueryError, UsageError
from engine.events.envelope import check_namespace
from engine.verbs import CATALOGUE, QUERY_PREFIX, validate_request, verb
from engine.verbs.requests import CheckpointsRequest, ExportRequest, SqlRequest, TableMetricsRequest
from projections.tables.export import export_parquet

__all__ = [
    "EXPORTS_DIR",
    "QUERY_PREFIX",
    "Handler",
    "OperatorAccess",
    "QueryDispatcher",
    "error_reply",
    "on_cursor",
]

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
Handler = Callable[[Any], Awaitable[Mapping[str, Any]]]
"""A verb's handler: takes the verb's validated request model, returns the reply."""


def on_cursor(
    cursor_factory: CursorFactory,
    answer: Callable[[duckdb.DuckDBPyConnection, Any], dict[str, Any]],
) -> Handler:
    """A handler answering with ``answer`` on a fresh cursor in a worker thread (DuckDB: one
    cursor per thread), closed afterwards."""

    def on_fresh_cursor(request: Any) -> dict[str, Any]:
        cursor = cursor_factory()
        try:
            return answer(cursor, request)
        finally:
            cursor.close()

    async def in_thread(request: Any) -> dict[str, Any]:
        return await asyncio.to_thread(on_fresh_cursor, request)

    return in_thread


def error_reply(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, UsageError):
        kind = "usage"
    elif isinstance(exc, ForbiddenError):
        kind = "forbidden"
    else:
        kind = "failure"
    return {"error": str(exc) or repr(exc), "kind": kind}


class QueryDispatcher:
    """Answers catalogued verbs; the table verbs on a fresh cursor per request (DuckDB: one
    cursor per thread), in a worker thread.

    ``access`` decides the operator verbs (default: both refused, see OperatorAccess).
    """

    def __init__(
        self,
        cursor_factory: CursorFactory,
        *,
        access: OperatorAccess | None = None,
        freshness: Freshness | None = None,
    ) -> None:
        self._cursor = cursor_factory
        self._access = access or OperatorAccess()
        self.freshness = freshness
        """Read your writes (``min_sequence``) and the ``consistency`` of every answer; None:
        neither (a dispatcher without projections to measure)."""
        self._handlers: dict[str, Handler] = {}
        tables: dict[str, Callable[[duckdb.DuckDBPyConnection, Any], dict[str, Any]]] = {
            "metrics": self._metrics,
            "workflows": self._workflows,
            "sql": self._sql,
            "export": self._export,
            "checkpoints": self._checkpoints,
        }
        for name, answer in tables.items():
            self.register(name, self._on_cursor(answer))

    @property
    def verbs(self) -> list[str]:
        """The verbs this dispatcher answers."""
        return sorted(self._handlers)

    def unserved(self) -> list[str]:
        """Catalogued verbs nobody registered a handler for."""
        return sorted(set(CATALOGUE) - set(self._handlers))

    def register(self, name: str, handler: Handler) -> None:
        """Serve the catalogued verb ``name`` with ``handler`` (raises UsageError for a verb
        the catalogue does not declare: every verb is declared there first)."""
        verb(name)
        self._handlers[name] = handler

    def _on_cursor(
        self, answer: Callable[[duckdb.DuckDBPyConnection, Any], dict[str, Any]]
    ) -> Handler:
        return on_cursor(self._cursor, answer)

    @staticmethod
    def _metrics(cursor: duckdb.DuckDBPyConnection, r: TableMetricsRequest) -> dict[str, Any]:
        return {"metrics": readers.task_metrics(cursor, r.namespace, r.task_type)}

    @staticmethod
    def _workflows(cursor: duckdb.DuckDBPyConnection, r: TableMetricsRequest) -> dict[str, Any]:
        return {"workflows": readers.workflow_metrics(cursor, r.namespace, r.task_type)}

    @staticmethod
    def _checkpoints(cursor: duckdb.DuckDBPyConnection, _r: CheckpointsRequest) -> dict[str, Any]:
        return {"checkpoints": readers.checkpoints(cursor)}

    def _refuse_if_off(self, name: str) -> None:
        """Refuse an operator verb this engine has off, before its request is even read."""
        if name == "sql" and not (self._access.local or self._access.sql):
            log.warning("sql refused: off on this engine")
            raise ForbiddenError(_SQL_OFF)
        if name == "export" and not (self._access.local or self._access.export_root is not None):
            raise ForbiddenError(_EXPORT_OFF)

    def _sql(self, cursor: duckdb.DuckDBPyConnection, r: SqlRequest) -> dict[str, Any]:
        if not r.sql:
            raise UsageError("sql is required")
        if not self._access.local:
            log.info("operator sql", sql=r.sql[:200])
        return readers.run_sql(cursor, r.sql, r.limit)

    def _export(self, cursor: duckdb.DuckDBPyConnection, r: ExportRequest) -> dict[str, Any]:
        if not r.to:
            raise UsageError("to is required")
        target = export_target(self._access, r.to)
        if not self._access.local:
            log.info("operator export", to=str(target))
        try:
            manifest = export_parquet(cursor, target)
        except OSError as exc:  # a name the file system refuses, a full disk ...
            raise QueryError(f"export to {target} failed: {exc.strerror or exc}") from None
        return {**manifest, "location": str(target)}

    async def handle(
        self, name: str, payload: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """The reply to the verb ``name``; raises UsageError for an unknown verb or a bad
        request, ForbiddenError for an operator verb that is off, EngramError otherwise.

        ``namespace``: the one the request's subject names (``engram.query.<namespace>.<verb>``),
        which the request is about: it fills ``namespace`` when the verb has one, and a body
        ``namespace`` that differs is a UsageError naming both. None (the operator's subject,
        or a local read): the body's ``namespace`` as given.

        With a ``freshness`` the reply carries ``consistency`` (the sequence it reflects), and
        a request's ``min_sequence`` is waited for first (bounded; past the bound the answer is
        ``stale``)."""
        spec = verb(name)
        handler = self._handlers.get(name)
        if handler is None:
            raise UsageError(f"{name} is not answered here; answered: {', '.join(self.verbs)}")
        self._refuse_if_off(name)
        if namespace is not None:
            check_namespace(namespace)
            if "namespace" in spec.request.model_fields and payload.get("namespace") is None:
                payload = {**payload, "namespace": namespace}
        request = validate_request(spec.request, payload)  # the body's own errors first
        if namespace is not None:
            _check_same(name, getattr(request, "namespace", namespace), namespace)
        consistency = None
        if self.freshness is not None:  # waits, bounded, for the request's min_sequence
            consistency = await self.freshness.consistency(spec.reads, request.min_sequence)
        try:
            reply = dict(await handler(request))
        except duckdb.Error as exc:
            raise EngramError(f"query {name} failed: {exc}") from None
        if consistency is not None:
            reply["consistency"] = consistency.model_dump()
        return reply


def _check_same(name: str, asked: str, namespace: str) -> None:
    """Raise UsageError, naming both, when the request's namespace (its body's) is not the one
    its subject names. An operator verb's request has none: it is asked of the engine owning
    ``namespace``, about that engine."""
    if asked != namespace:
        raise UsageError(
            f"{name} was asked on namespace {namespace!r}'s subject with namespace {asked!r} in "
            f"its body: the subject's namespace is the one asked about (leave namespace out, or "
            f"ask {name} on {asked!r}'s subject)"
        )

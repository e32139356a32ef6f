"""Read-side queries over the tables: parameterised SQL only (no SQL built from user strings),
plus the operators' ``sql`` verb, which never runs on the engine's database (see sandbox)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import duckdb

from consumers.queries.sandbox import SQL_MAX_ROWS, run_sandboxed
from engine.errors import UsageError

__all__ = ["checkpoints", "ensure_read_only", "rows", "run_sql", "task_metrics", "workflow_metrics"]

_READ_ONLY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)  # UUIDs, intervals, ...: a reply is JSON whatever a query selects


def rows(cursor: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts (through Arrow: DuckDB's Python rows would need pytz)."""
    table = cursor.sql(sql, params=params).to_arrow_table()
    return [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]


def _filters(namespace: str | None, task_type: str | None) -> tuple[str, list[Any]]:
    clauses, params = [], []
    if namespace is not None:
        clauses.append("namespace = ?")
        params.append(namespace)
    if task_type is not None:
        clauses.append("task_type = ?")
        params.append(task_type)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def task_metrics(
    cursor: duckdb.DuckDBPyConnection, namespace: str | None, task_type: str | None
) -> list[dict[str, Any]]:
    """TaskMetrics per (namespace, task type), most executed first."""
    where, params = _filters(namespace, task_type)
    return rows(
        cursor,
        "SELECT * FROM task_metrics"
        + where
        + " ORDER BY total_executions DESC, namespace, task_type",
        params,
    )


def workflow_metrics(
    cursor: duckdb.DuckDBPyConnection, namespace: str | None, task_type: str | None
) -> list[dict[str, Any]]:
    """One row per distinct step sequence within a task type, best success rate first."""
    where, params = _filters(namespace, task_type)
    return rows(
        cursor,
        "SELECT * EXCLUDE (workflow_key) FROM workflow_metrics"
        + where
        + " ORDER BY namespace, task_type, success_rate DESC, executions DESC, workflow_key",
        params,
    )


def checkpoints(cursor: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {
        str(r["projection"]): int(r["sequence"])
        for r in rows(cursor, "SELECT projection, sequence FROM checkpoints", [])
    }


def ensure_read_only(cursor: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Refuse anything but one SELECT (or EXPLAIN): raises UsageError naming what was found.

    Only a friendlier first error (parsing, nothing runs): the guarantee that ``sql`` changes
    nothing and reaches no file is the sandbox's, whatever this lets through (e.g. a CTE).
    """
    try:
        statements = cursor.extract_statements(sql)
    except duckdb.Error as exc:
        raise UsageError(f"cannot parse SQL: {exc}") from None
    if len(statements) != 1:
        raise UsageError(f"exactly one statement is allowed, got {len(statements)}")
    kind = statements[0].type
    if kind not in _READ_ONLY_TYPES:
        raise UsageError(f"only read-only queries (SELECT) are allowed, got {kind.name}")


def run_sql(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    limit: int = SQL_MAX_ROWS,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Run an operator's query in a sandbox over copies of ``cursor``'s tables.

    At most ``limit`` rows (and SQL_MAX_RESULT_BYTES of them) are returned, ``truncated`` when
    there were more; raises UsageError for a refused or failing statement, QueryError when it
    runs longer than ``timeout_s`` (the sandbox's SQL_TIMEOUT_S by default). ``cursor``'s
    database is only read.
    """
    ensure_read_only(cursor, sql)
    table, cut = run_sandboxed(cursor, sql, limit, timeout_s)
    names = list(table.column_names)
    data = [{k: _json_value(v) for k, v in row.items()} for row in table.to_pylist()]
    return {"columns": names, "rows": data, "truncated": cut}

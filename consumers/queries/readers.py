"""Read-side queries over the tables: parameterised SQL only (no SQL built from user strings),
plus the operators' read-only ``sql`` verb."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from engine.errors import UsageError

__all__ = ["checkpoints", "ensure_read_only", "rows", "run_sql", "task_metrics", "workflow_metrics"]

_READ_ONLY_TYPES = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return value


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
    """Refuse anything but one SELECT (or EXPLAIN): raises UsageError naming what was found."""
    try:
        statements = cursor.extract_statements(sql)
    except duckdb.Error as exc:
        raise UsageError(f"cannot parse SQL: {exc}") from None
    if len(statements) != 1:
        raise UsageError(f"exactly one statement is allowed, got {len(statements)}")
    kind = statements[0].type
    if kind not in _READ_ONLY_TYPES:
        raise UsageError(f"only read-only queries (SELECT) are allowed, got {kind.name}")


def run_sql(cursor: duckdb.DuckDBPyConnection, sql: str, limit: int = 10_000) -> dict[str, Any]:
    """Run an operator's read-only query; at most ``limit`` rows are returned."""
    ensure_read_only(cursor, sql)
    try:
        relation = cursor.sql(sql)
        if relation is None:
            return {"columns": [], "rows": [], "truncated": False}
        table = relation.limit(limit + 1).to_arrow_table()
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {exc}") from None
    names = list(table.column_names)
    fetched = table.to_pylist()
    data = [{k: _json_value(v) for k, v in row.items()} for row in fetched[:limit]]
    return {"columns": names, "rows": data, "truncated": len(fetched) > limit}

"""The DuckDB working-memory tables: columns declared once, DDL and Arrow schemas derived."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "MIGRATIONS",
    "TABLES",
    "VIEWS",
    "Column",
    "Table",
    "arrow_schema",
    "create_statements",
    "namespaced_tables",
]

TS = pa.timestamp("us", tz="UTC")
STRINGS = pa.list_(pa.string())


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    sql: str
    arrow: pa.DataType


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    order: tuple[str, ...]
    """Deterministic row order for digests and exports."""
    partition_by_day: str | None = None
    """Timestamp column to partition Parquet exports by day (namespace always partitions)."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


def _c(name: str, sql: str, arrow: pa.DataType) -> Column:
    return Column(name, sql, arrow)


_EVENT = (
    _c("sequence", "BIGINT NOT NULL", pa.int64()),
    _c("event_id", "VARCHAR NOT NULL", pa.string()),
    _c("namespace", "VARCHAR NOT NULL", pa.string()),
    _c("occurred_at", "TIMESTAMPTZ NOT NULL", TS),
    _c("agent_id", "VARCHAR", pa.string()),
    _c("session_id", "VARCHAR", pa.string()),
)

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "workflows",
            (
                *_EVENT,
                _c("task_type", "VARCHAR NOT NULL", pa.string()),
                _c("task_type_inferred", "BOOLEAN NOT NULL", pa.bool_()),
                _c("request", "VARCHAR", pa.string()),
                _c("workflow_steps", "VARCHAR[] NOT NULL", STRINGS),
                _c("workflow_key", "VARCHAR NOT NULL", pa.string()),
                _c("success", "BOOLEAN NOT NULL", pa.bool_()),
                _c("duration", "DOUBLE NOT NULL", pa.float64()),
                _c("cost", "DOUBLE", pa.float64()),
                _c("metadata", "VARCHAR", pa.string()),
            ),
            key=("event_id",),
            order=("sequence",),
            partition_by_day="occurred_at",
        ),
        Table(
            "task_executions",
            (
                *_EVENT,
                _c("task_id", "VARCHAR NOT NULL", pa.string()),
                _c("task_type", "VARCHAR NOT NULL", pa.string()),
                _c("task_type_inferred", "BOOLEAN NOT NULL", pa.bool_()),
                _c("execution_summary", "VARCHAR NOT NULL", pa.string()),
                _c("success", "BOOLEAN NOT NULL", pa.bool_()),
                _c("error_patterns", "VARCHAR[] NOT NULL", STRINGS),
                _c("has_embedding", "BOOLEAN NOT NULL", pa.bool_()),
                _c("metadata", "VARCHAR", pa.string()),
            ),
            key=("event_id",),
            order=("sequence",),
            partition_by_day="occurred_at",
        ),
        Table(
            "decisions",
            (
                _c("namespace", "VARCHAR NOT NULL", pa.string()),
                _c("decision_id", "VARCHAR NOT NULL", pa.string()),
                _c("sequence", "BIGINT", pa.int64()),
                _c("event_id", "VARCHAR", pa.string()),
                _c("occurred_at", "TIMESTAMPTZ", TS),
                _c("agent_id", "VARCHAR", pa.string()),
                _c("session_id", "VARCHAR", pa.string()),
                _c("actor", "VARCHAR", pa.string()),
                _c("decision", "VARCHAR", pa.string()),
                _c("rationale", "VARCHAR", pa.string()),
                _c("context", "VARCHAR", pa.string()),
                _c("alternatives", "VARCHAR[]", STRINGS),
                _c("task_id", "VARCHAR", pa.string()),
                _c("outcome_success", "BOOLEAN", pa.bool_()),
                _c("outcome_notes", "VARCHAR", pa.string()),
                _c("outcome_at", "TIMESTAMPTZ", TS),
                _c("outcome_sequence", "BIGINT", pa.int64()),
            ),
            key=("namespace", "decision_id"),
            order=("namespace", "decision_id"),
        ),
        Table(
            "sessions",
            (
                _c("namespace", "VARCHAR NOT NULL", pa.string()),
                _c("session_id", "VARCHAR NOT NULL", pa.string()),
                _c("agent_id", "VARCHAR", pa.string()),
                _c("goal", "VARCHAR", pa.string()),
                _c("started_at", "TIMESTAMPTZ", TS),
                _c("ended_at", "TIMESTAMPTZ", TS),
                _c("success", "BOOLEAN", pa.bool_()),
                _c("first_sequence", "BIGINT NOT NULL", pa.int64()),
                _c("last_sequence", "BIGINT NOT NULL", pa.int64()),
                _c("event_count", "BIGINT NOT NULL", pa.int64()),
                _c("workflow_count", "BIGINT NOT NULL", pa.int64()),
                _c("workflow_successes", "BIGINT NOT NULL", pa.int64()),
                _c("task_count", "BIGINT NOT NULL", pa.int64()),
                _c("decision_count", "BIGINT NOT NULL", pa.int64()),
            ),
            key=("namespace", "session_id"),
            order=("namespace", "session_id"),
        ),
        Table(
            "knowledge",
            (
                _c("namespace", "VARCHAR NOT NULL", pa.string()),
                _c("knowledge_id", "VARCHAR NOT NULL", pa.string()),
                *(c for c in _EVENT if c.name not in {"namespace"}),
                _c("kind", "VARCHAR NOT NULL", pa.string()),
                _c("title", "VARCHAR NOT NULL", pa.string()),
                _c("content", "VARCHAR NOT NULL", pa.string()),
                _c("tags", "VARCHAR[] NOT NULL", STRINGS),
                _c("metadata", "VARCHAR", pa.string()),
            ),
            key=("namespace", "knowledge_id"),
            order=("namespace", "knowledge_id"),
        ),
        Table(
            "feedback",
            (
                *_EVENT,
                _c("pattern_id", "VARCHAR NOT NULL", pa.string()),
                _c("helpful", "BOOLEAN NOT NULL", pa.bool_()),
                _c("confidence_adjustment", "DOUBLE NOT NULL", pa.float64()),
            ),
            key=("event_id",),
            order=("sequence",),
            partition_by_day="occurred_at",
        ),
        Table(
            # Key-value items (item.put / item.deleted): the newest value of each (namespace,
            # path, key); a delete removes the row. See projections.tables.items.
            "items",
            (
                _c("namespace", "VARCHAR NOT NULL", pa.string()),
                _c("path", "VARCHAR NOT NULL", pa.string()),
                _c("key", "VARCHAR NOT NULL", pa.string()),
                _c("value", "VARCHAR NOT NULL", pa.string()),
                _c("text", "VARCHAR", pa.string()),
                _c("created_at", "TIMESTAMPTZ NOT NULL", TS),
                _c("updated_at", "TIMESTAMPTZ NOT NULL", TS),
                _c("expires_at", "TIMESTAMPTZ", TS),
                _c("ttl_minutes", "DOUBLE", pa.float64()),
                _c("sequence", "BIGINT NOT NULL", pa.int64()),
                _c("event_id", "VARCHAR NOT NULL", pa.string()),
                _c("agent_id", "VARCHAR", pa.string()),
            ),
            key=("namespace", "path", "key"),
            order=("namespace", "path", "key"),
        ),
        Table(
            # The envelope ids the tables applied (as 64-bit keys, see projections.identity), one
            # row per event: ``duplicate`` marks a later occurrence of an id, which changed nothing.
            # ``namespace`` is the event's (so a purged tenant's ids go with its rows); NULL in
            # rows written before it was recorded.
            "event_ids",
            (
                _c("sequence", "BIGINT NOT NULL", pa.int64()),
                _c("event_key", "UBIGINT NOT NULL", pa.uint64()),
                _c("duplicate", "BOOLEAN NOT NULL", pa.bool_()),
                _c("namespace", "VARCHAR", pa.string()),
            ),
            key=("sequence",),
            order=("sequence",),
        ),
        Table(
            "dead_letters",
            (
                _c("projection", "VARCHAR NOT NULL", pa.string()),
                _c("sequence", "BIGINT NOT NULL", pa.int64()),
                _c("subject", "VARCHAR NOT NULL", pa.string()),
                _c("stored_at", "TIMESTAMPTZ NOT NULL", TS),
                _c("kind", "VARCHAR NOT NULL", pa.string()),
                _c("reason", "VARCHAR NOT NULL", pa.string()),
                _c("raw", "BLOB NOT NULL", pa.binary()),
                _c("raw_size", "BIGINT NOT NULL", pa.int64()),
            ),
            key=("projection", "sequence"),
            order=("projection", "sequence"),
        ),
        Table(
            "checkpoints",
            (
                _c("projection", "VARCHAR NOT NULL", pa.string()),
                _c("sequence", "BIGINT NOT NULL", pa.int64()),
                _c("stored_at", "TIMESTAMPTZ", TS),
            ),
            key=("projection",),
            order=("projection",),
        ),
    )
}

VIEWS: dict[str, str] = {
    # TaskMetrics (executions, successes, rate, duration, cost) per namespace and task type.
    "task_metrics": """
        SELECT namespace, task_type,
               count(*) AS total_executions,
               count(*) FILTER (WHERE success) AS successful_executions,
               avg(CASE WHEN success THEN 1.0 ELSE 0.0 END) AS success_rate,
               avg(duration) AS avg_duration,
               avg(cost) AS avg_cost
        FROM workflows GROUP BY namespace, task_type""",
    # One row per distinct sequence of steps within a task type.
    "workflow_metrics": """
        SELECT namespace, task_type, workflow_key,
               any_value(workflow_steps) AS workflow_steps,
               count(*) AS executions,
               count(*) FILTER (WHERE success) AS successes,
               avg(CASE WHEN success THEN 1.0 ELSE 0.0 END) AS success_rate,
               avg(duration) AS avg_duration,
               avg(cost) AS avg_cost,
               max(occurred_at) AS last_seen
        FROM workflows GROUP BY namespace, task_type, workflow_key""",
}


MIGRATIONS: tuple[str, ...] = (
    # Databases created before event_ids recorded the namespace (no-op on newer ones).
    "ALTER TABLE event_ids ADD COLUMN IF NOT EXISTS namespace VARCHAR",
)


def arrow_schema(table: Table) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow) for c in table.columns])


def create_statements() -> list[str]:
    statements = []
    for table in TABLES.values():
        columns = ", ".join(f"{c.name} {c.sql}" for c in table.columns)
        key = ", ".join(table.key)
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {table.name} ({columns}, PRIMARY KEY ({key}))"
        )
    statements.extend(MIGRATIONS)
    for name, body in VIEWS.items():
        statements.append(f"CREATE OR REPLACE VIEW {name} AS {body}")
    return statements


def namespaced_tables() -> list[str]:
    """The tables with a ``namespace`` column: every row of one belongs to that namespace."""
    return [t.name for t in TABLES.values() if "namespace" in t.column_names]

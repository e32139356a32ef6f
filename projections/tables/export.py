"""Parquet export of every table at one consistent sequence (zstd; partitioned by namespace,
and by day for event tables), with a manifest recording the sequence it covers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb

from engine.errors import UsageError
from projections.tables.schema import TABLES

__all__ = ["export_parquet"]


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def export_parquet(cursor: duckdb.DuckDBPyConnection, target: Path) -> dict[str, Any]:
    """Write every table under ``target`` in one read transaction; returns the manifest.

    Raises UsageError when ``target`` exists and is not empty (exports never overwrite).
    """
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"{target} is not empty: export into a new directory")
    target.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": "parquet", "compression": "zstd", "tables": {}}
    cursor.execute("BEGIN TRANSACTION")
    try:
        row = cursor.execute(
            "SELECT sequence FROM checkpoints WHERE projection = 'tables'"
        ).fetchone()
        manifest["sequence"] = int(row[0]) if row else 0
        for table in TABLES.values():
            count_row = cursor.execute(f"SELECT count(*) FROM {table.name}").fetchone()
            count = int(count_row[0]) if count_row else 0
            order = ", ".join(table.order)
            partitions = []
            select = f"SELECT * FROM {table.name}"
            if "namespace" in table.column_names:
                partitions.append("namespace")
            if table.partition_by_day:
                select = (
                    f"SELECT *, strftime({table.partition_by_day}, '%Y-%m-%d') AS day "
                    f"FROM {table.name}"
                )
                partitions.append("day")
            options = "FORMAT parquet, COMPRESSION zstd"
            destination = target / table.name
            if partitions and count:
                options += f", PARTITION_BY ({', '.join(partitions)})"
            else:
                destination = target / f"{table.name}.parquet"
            cursor.execute(
                f"COPY ({select} ORDER BY {order}) TO {_literal(destination)} ({options})"
            )
            manifest["tables"][table.name] = {
                "rows": count,
                "path": destination.name,
                "partitioned_by": partitions if partitions and count else [],
            }
    finally:
        cursor.execute("COMMIT")
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest

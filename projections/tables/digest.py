"""Content hashes of the tables: the proof that two states are the same."""

from __future__ import annotations

import hashlib

import duckdb

from projections.tables.schema import TABLES

__all__ = ["table_digests"]


def table_digests(
    cursor: duckdb.DuckDBPyConnection, *, exclude: frozenset[str] = frozenset()
) -> dict[str, str]:
    """SHA-256 per table over every row in the table's deterministic order."""
    digests: dict[str, str] = {}
    for table in TABLES.values():
        if table.name in exclude:
            continue
        h = hashlib.sha256()
        # Arrow, not fetchall: DuckDB's Python rows need pytz for TIMESTAMPTZ; Arrow does not.
        reader = cursor.sql(
            f"SELECT * FROM {table.name} ORDER BY {', '.join(table.order)}"
        ).to_arrow_reader(10_000)
        for batch in reader:
            for row in batch.to_pylist():
                h.update(repr(sorted(row.items())).encode())
                h.update(b"\n")
        digests[table.name] = h.hexdigest()
    return digests

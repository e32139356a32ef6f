"""How much memory an engine holds: rows per namespace and table, vectors and their index bytes
per namespace, and bytes on disk per store. Counted at scrape time (blocking: run it in a
thread), never on the hot path.

Label cardinality is bounded: with more namespaces than the limit, every per-namespace figure is
reported as one total under the namespace ``_all`` (``bounded``), so a thousand tenants never
make a thousand series per table. The tables' bytes on disk are one DuckDB file for every
namespace: they are reported per store, not per namespace.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from projections.file_names import directory_name
from projections.tables.schema import namespaced_tables
from projections.tables.store import DATABASE_FILE
from projections.vectors.projection import VectorProjection, VectorState

__all__ = [
    "ALL_NAMESPACES",
    "NO_NAMESPACE",
    "MemorySizes",
    "bounded",
    "disk_usage",
    "measure_rows",
    "measure_vectors",
]

ALL_NAMESPACES = "_all"
"""The namespace label of the totals reported instead of one series per namespace."""
NO_NAMESPACE = "_none"
"""The namespace label of rows that belong to no namespace (the engine's own bookkeeping)."""


@dataclass(frozen=True, slots=True)
class MemorySizes:
    """One count of an engine's memory (namespace labels already bounded)."""

    rows: dict[tuple[str, str], int] = field(default_factory=dict)
    """(namespace, table) -> rows."""
    vectors: dict[str, int] = field(default_factory=dict)
    """namespace -> vectors in the live index."""
    vector_disk_bytes: dict[str, int] = field(default_factory=dict)
    """namespace -> bytes of its saved index files."""
    namespaces: int = 0
    """Namespaces seen in the tables or the vectors (before bounding)."""
    disk_bytes: dict[str, int] = field(default_factory=dict)
    """store -> bytes under the data directory."""


def measure_rows(cursor: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], int]:
    """Rows per (namespace, table) of every namespaced table (a table's NULL namespace, the
    engine's own bookkeeping, counts as ``_none``)."""
    rows: dict[tuple[str, str], int] = {}
    for table in namespaced_tables():
        try:
            found = cursor.execute(  # the table names come from the schema, not a client
                f"SELECT coalesce(namespace, '{NO_NAMESPACE}'), count(*) FROM {table} GROUP BY 1"
            ).fetchall()
        except duckdb.CatalogException:  # an older database without this table
            continue
        for namespace, count in found:
            rows[(str(namespace), table)] = int(count)
    return rows


def measure_vectors(vectors: VectorProjection) -> tuple[dict[str, int], dict[str, int]]:
    """Vectors per namespace in the live index, and the bytes of each namespace's saved index
    directory (0 before its first save)."""

    def count(state: VectorState) -> dict[str, int]:
        per: dict[str, int] = defaultdict(int)
        pairs = state.indexes.keys()  # an IndexSet, not a dict
        for namespace, collection in pairs:
            index = state.indexes.get(namespace, collection)
            per[namespace] += 0 if index is None else len(index)
        return dict(per)

    counts = vectors.read(count)
    base = vectors.directory
    on_disk = {
        ns: _tree_bytes(base / directory_name(ns)) if base is not None else 0 for ns in counts
    }
    return counts, on_disk


def disk_usage(data_dir: Path, vectors_dir: Path, server_dir: Path) -> dict[str, int]:
    """Bytes under ``data_dir`` per store: ``tables`` (the DuckDB file and its WAL),
    ``vectors``, ``learner``, ``sessions``, ``nats`` (an embedded server's JetStream store) and
    ``other`` (snapshot work, exports, ...)."""
    named = {
        "tables": [data_dir / DATABASE_FILE, data_dir / f"{DATABASE_FILE}.wal"],
        "vectors": [vectors_dir],
        "learner": [data_dir / "patterns"],
        "sessions": [data_dir / "sessions"],
        "nats": [server_dir],
    }
    usage = {store: sum(_tree_bytes(p) for p in paths) for store, paths in named.items()}
    claimed = {p.resolve() for paths in named.values() for p in paths}
    try:
        entries = list(data_dir.iterdir())
    except OSError:
        entries = []
    usage["other"] = sum(_tree_bytes(e) for e in entries if e.resolve() not in claimed)
    return usage


def bounded(
    rows: dict[tuple[str, str], int],
    vectors: dict[str, int],
    vector_disk_bytes: dict[str, int],
    disk_bytes: dict[str, int],
    max_namespaces: int,
) -> MemorySizes:
    """The sizes with one label per namespace while there are at most ``max_namespaces`` of
    them; else every per-namespace figure summed under ``_all``."""
    namespaces = {ns for ns, _ in rows} | set(vectors) | set(vector_disk_bytes)
    namespaces.discard(NO_NAMESPACE)  # the engine's own rows: not a tenant
    if len(namespaces) <= max_namespaces:
        return MemorySizes(rows, vectors, vector_disk_bytes, len(namespaces), disk_bytes)
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for (_, table), count in rows.items():
        totals[(ALL_NAMESPACES, table)] += count
    return MemorySizes(
        dict(totals),
        {ALL_NAMESPACES: sum(vectors.values())},
        {ALL_NAMESPACES: sum(vector_disk_bytes.values())},
        len(namespaces),
        disk_bytes,
    )


def _tree_bytes(path: Path) -> int:
    """Bytes of the file at ``path``, or of every file under it (0 when it is not there)."""
    try:
        if not path.is_dir():
            return path.stat().st_size if path.exists() else 0
    except OSError:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed while walked
                continue
    return total

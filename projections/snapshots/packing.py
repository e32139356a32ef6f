"""Turning a projection directory into snapshot files and back.

A snapshot holds: each DuckDB table as one Parquet file (zstd), the vector index directory of
the active embedder as it was saved (index files, memories, manifest), the learner's state
file, the sessions' state and record log, and the semantic cache's directory as it was saved
(its manifest and the files it names: a save deletes the others). Packing reads a directory
whose projections were all flushed at one sequence. Each projection's record of the envelope ids
it applied travels inside those: the ``event_ids`` table, ``seen-<watermark>.bin`` beside the
vector manifest, the learner's state file, the sessions' record log and ``cache-seen-*.bin``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import duckdb

from engine.errors import ProjectionError
from projections.learning.persistence import STATE_FILE
from projections.sessions.persistence import saved_files as sessions_files
from projections.tables.schema import TABLES
from projections.tables.store import DATABASE_FILE, TableStore, connect_database

__all__ = ["RESTORE_DIR", "namespace_rows", "pack", "unpack"]

RESTORE_DIR = ".restoring"


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def pack(data_dir: Path, embedder: str) -> dict[str, bytes]:
    """The files of a snapshot of ``data_dir`` (whose projections are flushed and closed)."""
    files: dict[str, bytes] = {}
    connection = connect_database(data_dir / DATABASE_FILE, read_only=True)
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for table in TABLES.values():
                target = Path(scratch) / f"{table.name}.parquet"
                order = ", ".join(table.order)
                connection.execute(
                    f"COPY (SELECT * FROM {table.name} ORDER BY {order}) TO {_literal(target)} "
                    "(FORMAT parquet, COMPRESSION zstd)"
                )
                files[f"tables/{table.name}.parquet"] = target.read_bytes()
    finally:
        connection.close()
    vectors = data_dir / "vectors" / embedder
    for path in sorted(p for p in vectors.rglob("*") if p.is_file()):
        if not path.name.endswith(".tmp") and not path.name.startswith(".tmp-"):  # crash leftovers
            files[f"vectors/{embedder}/{path.relative_to(vectors)}"] = path.read_bytes()
    learner = data_dir / "patterns" / STATE_FILE
    if learner.exists():
        files[f"patterns/{STATE_FILE}"] = learner.read_bytes()
    for name in sessions_files(data_dir / "sessions"):  # the state file and the log it names
        files[f"sessions/{name}"] = (data_dir / "sessions" / name).read_bytes()
    cache = data_dir / "cache"
    if cache.is_dir():  # a snapshot from before the cache has none: it restores empty
        for path in sorted(p for p in cache.iterdir() if p.is_file()):
            if not path.name.endswith(".tmp"):  # crash leftovers
                files[f"cache/{path.name}"] = path.read_bytes()
    return files


_LATER = frozenset({"event_ids", "items"})
"""Tables added after snapshots were first taken: a snapshot without them restores them empty."""


def unpack(files: dict[str, bytes], data_dir: Path) -> None:
    """Materialise a verified snapshot into an empty ``data_dir``, all or nothing.

    The files are written under ``data_dir/.restoring`` first, then moved into place, the
    database last: its presence is what marks a directory as restored (``Engine.run`` restores
    only when it is missing). A restore that fails half-way (a full disk) leaves nothing but
    the error: the staging directory is removed, and the next start restores again.
    """
    if (data_dir / DATABASE_FILE).exists():
        raise ProjectionError(f"{data_dir} already holds a database: restore into a new one")
    # A snapshot from before event ids were recorded has no event_ids: restored with none (the
    # tables projection warns that repeats of the events it covers are not recognised). One
    # from before items existed has no items: no event it covers could have made one.
    missing = [t for t in TABLES if f"tables/{t}.parquet" not in files and t not in _LATER]
    if missing:
        raise ProjectionError(f"snapshot has no table {', '.join(missing)}")
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = data_dir / RESTORE_DIR
    shutil.rmtree(staging, ignore_errors=True)  # left by a restore that was killed
    try:
        _materialise(files, staging)
        for top in ("vectors", "patterns", "sessions", "cache"):
            if (staging / top).exists():
                shutil.rmtree(data_dir / top, ignore_errors=True)  # no database: not a state
                os.replace(staging / top, data_dir / top)
        wal = DATABASE_FILE + ".wal"
        if (staging / wal).exists():
            os.replace(staging / wal, data_dir / wal)
        os.replace(staging / DATABASE_FILE, data_dir / DATABASE_FILE)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _materialise(files: dict[str, bytes], data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        store = TableStore.open(data_dir)
        try:
            cursor = store.reader()
            cursor.execute("BEGIN TRANSACTION")
            for table in TABLES.values():
                body = files.get(f"tables/{table.name}.parquet")
                if body is None:  # a table an older snapshot lacks (see unpack)
                    continue
                source = Path(scratch) / f"{table.name}.parquet"
                source.write_bytes(body)
                # By name: a snapshot from before a column was added restores it as NULL.
                cursor.execute(
                    f"INSERT INTO {table.name} BY NAME "
                    f"SELECT * FROM read_parquet({_literal(source)})"
                )
            cursor.execute("COMMIT")
        except (duckdb.Error, ProjectionError):
            store.close()
            raise
        store.close()
    for name, body in files.items():
        if name.startswith(("vectors/", "patterns/", "sessions/", "cache/")):
            path = data_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)


_FIRST_SEQUENCE = {
    "decisions": "coalesce(sequence, outcome_sequence)",
    "sessions": "first_sequence",
}
"""How a table's row says the earliest stream sequence it comes from (``sequence`` otherwise)."""


def namespace_rows(files: dict[str, bytes], namespace: str, below: int | None = None) -> int:
    """How many rows of ``namespace`` the tables of a snapshot's ``files`` hold (every table
    with a namespace column, ``event_ids`` included when it records namespaces), of events
    stored below sequence ``below`` only when given: whether a snapshot holds a tenant's
    state (every agent event makes at least one such row)."""
    found = 0
    connection = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False})
    try:
        with tempfile.TemporaryDirectory() as scratch:
            for table in TABLES.values():
                body = files.get(f"tables/{table.name}.parquet")
                if body is None or "namespace" not in table.column_names:
                    continue
                source = Path(scratch) / f"{table.name}.parquet"
                source.write_bytes(body)
                columns = {
                    str(row[0])
                    for row in connection.execute(
                        f"DESCRIBE SELECT * FROM read_parquet({_literal(source)})"
                    ).fetchall()
                }
                if "namespace" not in columns:  # event_ids of a snapshot from before
                    continue
                where = "namespace = ?"
                if below is not None:
                    where += f" AND {_FIRST_SEQUENCE.get(table.name, 'sequence')} < {int(below)}"
                row = connection.execute(
                    f"SELECT count(*) FROM read_parquet({_literal(source)}) WHERE {where}",
                    [namespace],
                ).fetchone()
                found += int(row[0]) if row else 0
    finally:
        connection.close()
    return found

"""The DuckDB store of the tables projection: rows and checkpoint in one transaction.

Commit order (the exactly-once effect depends on it):
  1. BEGIN
  2. insert the batch's rows, delete the keys it deleted, merge its keyed rows (Arrow tables,
     never row by row)
  3. insert the batch's dead letters
  4. upsert the checkpoint to the batch's last sequence
  5. COMMIT            <- only now may the caller ack the messages
A crash before 5 leaves nothing of the batch; a redelivery after 5 is skipped by sequence.

A batch holding a ``namespace.purged`` event is committed as steps in stream order, in the same
transaction: the changes of the events before it, then the purge (every row of the namespace in
every table with a namespace column, ``event_ids`` included, and its dead letters, see
``projections.purging.belongs_to``), then the changes of the events after it.

Speed: DuckDB spends milliseconds per statement whatever the row count, and more on
``ON CONFLICT`` (it plans a merge against the table). So step 2 first inserts the rows of the
insert-only tables with a plain INSERT; the primary key refuses an event id stored already (the
same event published again after the dedup window), and then the whole batch is rolled back and
written again with ``ON CONFLICT DO NOTHING``: the same rows either way.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engine.errors import EngramError, StoreLockedError
from engine.events.derived import NamespacePurged
from projections.purging import body_namespace
from projections.records import DeadLetter
from projections.tables.rows import MERGE_RULES, TableChanges
from projections.tables.schema import TABLES, arrow_schema, create_statements, namespaced_tables

__all__ = ["DATABASE_FILE", "Batch", "Purge", "Step", "TableStore", "connect_database"]


@dataclass(frozen=True, slots=True)
class Batch:
    """The changes of consecutive events and the dead letters among them."""

    changes: TableChanges
    dead_letters: Sequence[DeadLetter] = ()


@dataclass(frozen=True, slots=True)
class Purge:
    """A tenant forgotten at ``sequence`` (its ``namespace.purged`` event)."""

    purge: NamespacePurged
    sequence: int


Step = Batch | Purge


def filter_regex(pattern: str) -> str:
    """The regular expression of a NATS subject filter (``*`` one token, ``>`` the rest)."""
    parts = [
        "[^.]+" if token == "*" else ".+" if token == ">" else re.escape(token)
        for token in pattern.split(".")
    ]
    return "^" + r"\.".join(parts) + "$"


DATABASE_FILE = "engram.duckdb"

CLOSE_WAIT_S = 10.0
"""The longest ``TableStore.close`` waits for a reader still running in another thread."""

_NO_NETWORK = {
    # Nothing may download DuckDB extensions at run time.
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def connect_database(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the engine's DuckDB file; raises StoreLockedError when another process holds it."""
    if read_only and not path.exists():
        raise EngramError(f"no engram database at {path}: run engram serve or engram replay")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        connection = duckdb.connect(str(path), read_only=read_only, config=dict(_NO_NETWORK))
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise StoreLockedError(
                f"{path} is in use by another process (is engram serve running?): {exc}"
            ) from None
        raise
    # Timestamps render and partition in UTC whatever the host's zone (same events, same state).
    connection.execute("SET TimeZone = 'UTC'")
    return connection


def _merge_sql(table: str, source: str) -> str:
    spec = TABLES[table]
    sets = []
    for column, rule in MERGE_RULES[table].items():
        if rule == "first":
            sets.append(f"{column} = COALESCE({table}.{column}, EXCLUDED.{column})")
        elif rule == "last":
            sets.append(f"{column} = COALESCE(EXCLUDED.{column}, {table}.{column})")
        elif rule == "add":
            sets.append(f"{column} = {table}.{column} + EXCLUDED.{column}")
        else:
            marker = rule.removeprefix("when:")
            sets.append(
                f"{column} = CASE WHEN EXCLUDED.{marker} IS NOT NULL "
                f"THEN EXCLUDED.{column} ELSE {table}.{column} END"
            )
    return (
        f"INSERT INTO {table} BY NAME SELECT * FROM {source} "
        f"ON CONFLICT ({', '.join(spec.key)}) DO UPDATE SET {', '.join(sets)}"
    )


def _arrow(table: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    schema = arrow_schema(TABLES[table])
    columns = {name: [row.get(name) for row in rows] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)


class TableStore:
    """Writes table changes with their checkpoint atomically; one cursor, guarded by a lock."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, path: Path | None = None) -> None:
        self._path = path
        """The database file, to reopen it after a fatal error (None: cannot be reopened)."""
        self._lock = threading.Lock()
        self._invalidated: BaseException | None = None
        with self._lock:
            self._attach(connection)

    def _attach(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection = connection
        self._db = connection.cursor()
        self._checkpointed: set[str] = set()
        """Projections whose checkpoint row is committed: step 4 is then a plain UPDATE."""
        # _write hands its Arrow batch to DuckDB as a Python variable (see there).
        self._db.execute("SET python_enable_replacements = true")
        for statement in create_statements():
            self._db.execute(statement)

    def _heal(self) -> None:
        """Reopen the database if a fatal error invalidated it (caller holds the lock).

        After a fatal error (a checkpoint that could not be written: a full disk) DuckDB refuses
        every statement until the database is opened again; reopening replays its WAL, so the
        store then holds exactly the batches whose COMMIT succeeded. Raises what reopening
        raises (the cause may still be there); the next call tries again.
        """
        if self._invalidated is None:
            return
        if self._path is None:
            raise EngramError(
                f"the in-memory table store was invalidated: {self._invalidated}"
            ) from self._invalidated
        with contextlib.suppress(duckdb.Error):
            self._connection.close()  # closes every cursor of the invalidated database too
        self._attach(connect_database(self._path))
        self._invalidated = None

    def _note(self, exc: BaseException) -> None:
        if isinstance(exc, duckdb.Error) and (
            isinstance(exc, duckdb.FatalException | duckdb.InternalException)
            or "database has been invalidated" in str(exc)
        ):
            self._invalidated = exc

    @classmethod
    def open(cls, data_dir: Path) -> TableStore:
        path = data_dir / DATABASE_FILE
        return cls(connect_database(path), path)

    @classmethod
    def in_memory(cls) -> TableStore:
        """A throwaway store (tests, what-if analyses); same schema, same rules."""
        connection = duckdb.connect(":memory:", config=dict(_NO_NETWORK))
        connection.execute("SET TimeZone = 'UTC'")
        return cls(connection)

    def reader(self) -> duckdb.DuckDBPyConnection:
        """A new cursor for a reader thread (sees committed state only)."""
        return self._connection.cursor()

    def checkpoint(self, projection: str) -> int:
        """The last sequence ``projection`` committed (0 when it never did)."""
        with self._lock:
            self._heal()
            try:
                row = self._db.execute(
                    "SELECT sequence FROM checkpoints WHERE projection = ?", [projection]
                ).fetchone()
            except duckdb.Error as exc:
                self._note(exc)
                raise
        return int(row[0]) if row else 0

    def commit(
        self,
        projection: str,
        changes: TableChanges,
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
        last_stored_at: datetime | None,
    ) -> None:
        """Apply one batch and move the checkpoint, all or nothing (see the module docstring).

        Raises what DuckDB raised (never a failed rollback's error instead of it). After a
        fatal error the database is reopened by the next call (see ``_heal``)."""
        self.commit_steps(projection, [Batch(changes, dead_letters)], last_sequence, last_stored_at)

    def commit_steps(
        self,
        projection: str,
        steps: Sequence[Step],
        last_sequence: int,
        last_stored_at: datetime | None,
    ) -> None:
        """Apply ``steps`` in order (changes, and purges of a tenant between them) and move the
        checkpoint, all in one transaction, all or nothing (see ``commit``)."""
        with self._lock:
            self._heal()
            try:
                try:
                    self._transaction(projection, steps, last_sequence, last_stored_at, plain=True)
                except duckdb.ConstraintException:
                    # An inserted key is stored already (or twice in the batch), or a NOT NULL
                    # column is empty: all rolled back. Again, skipping stored keys; a NOT NULL
                    # violation raises again, as it did before the plain INSERT was tried.
                    self._transaction(projection, steps, last_sequence, last_stored_at, plain=False)
            except BaseException as exc:
                self._note(exc)
                raise

    def _transaction(
        self,
        projection: str,
        steps: Sequence[Step],
        last_sequence: int,
        last_stored_at: datetime | None,
        *,
        plain: bool,
    ) -> None:
        self._db.execute("BEGIN TRANSACTION")
        try:
            for step in steps:
                if isinstance(step, Purge):
                    self._purge(step)
                else:
                    self._changes(step, plain=plain)
            if projection in self._checkpointed:
                self._db.execute(
                    "UPDATE checkpoints SET sequence = ?, stored_at = ? WHERE projection = ?",
                    [last_sequence, last_stored_at, projection],
                )
            else:
                self._db.execute(
                    "INSERT INTO checkpoints VALUES (?, ?, ?) ON CONFLICT (projection) DO UPDATE "
                    "SET sequence = EXCLUDED.sequence, stored_at = EXCLUDED.stored_at",
                    [projection, last_sequence, last_stored_at],
                )
            self._db.execute("COMMIT")
        except BaseException as failure:
            # A COMMIT that could not be written (a full disk) has ended the transaction
            # already, and after a fatal error nothing runs: the rollback's own error must not
            # replace the failure that says what happened.
            try:
                self._db.execute("ROLLBACK")
            except duckdb.Error as rollback_error:
                failure.add_note(f"(the rollback after it failed too: {rollback_error})")
            raise
        self._checkpointed.add(projection)

    def _changes(self, batch: Batch, *, plain: bool) -> None:
        insert = "INSERT INTO {table} BY NAME SELECT * FROM _batch"
        if not plain:
            insert += " ON CONFLICT DO NOTHING"
        changes = batch.changes
        for table, rows in changes.inserts.items():
            self._write(insert.format(table=table), table, rows)
        for table, doomed in changes.deletes.items():  # before the merges: a re-put is new
            match = " AND ".join(f"{table}.{c} = _batch.{c}" for c in TABLES[table].key)
            self._write(
                f"DELETE FROM {table} USING _batch WHERE {match}", table, list(doomed.values())
            )
        for table, keyed in changes.upserts.items():
            self._write(_merge_sql(table, "_batch"), table, list(keyed.values()))
        if batch.dead_letters:
            self._write(
                "INSERT INTO dead_letters BY NAME SELECT * FROM _batch ON CONFLICT DO NOTHING",
                "dead_letters",
                [
                    {
                        "projection": d.projection,
                        "sequence": d.sequence,
                        "subject": d.subject,
                        "stored_at": d.stored_at,
                        "kind": d.kind,
                        "reason": d.reason,
                        "raw": d.raw,
                        "raw_size": d.raw_size,
                    }
                    for d in batch.dead_letters
                ],
            )

    def _purge(self, step: Purge) -> None:
        """Delete every row of the purged tenant and its dead letters stored below the purge
        (inside the caller's transaction)."""
        purge = step.purge
        for table in namespaced_tables():
            self._db.execute(f"DELETE FROM {table} WHERE namespace = ?", [purge.namespace])
        self._db.execute(
            "DELETE FROM dead_letters WHERE sequence < ? AND regexp_full_match(subject, ?)",
            [step.sequence, filter_regex(purge.subject_filter)],
        )
        if purge.legacy_filter is None:
            return
        # v1 dead letters: the tenant's when their body names it (read here, not in SQL: a
        # dead letter's body need not be JSON, nor even text).
        candidates = self._db.execute(
            "SELECT projection, sequence, raw FROM dead_letters "
            "WHERE sequence < ? AND regexp_full_match(subject, ?)",
            [step.sequence, filter_regex(purge.legacy_filter)],
        ).fetchall()
        doomed = [
            [projection, sequence]
            for projection, sequence, raw in candidates
            if body_namespace(bytes(raw)) == purge.namespace
        ]
        if doomed:
            self._db.executemany(
                "DELETE FROM dead_letters WHERE projection = ? AND sequence = ?", doomed
            )

    def _write(self, sql: str, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        # ``FROM _batch`` in ``sql`` reads this local variable (DuckDB's replacement scan of the
        # calling frame): a millisecond less per statement than register() + unregister().
        _batch = _arrow(table, rows)
        self._db.execute(sql)

    def close(self) -> None:
        """Close the store. A reader cursor still running in a worker thread (a runner's start
        cancelled by a shutdown leaves its ``checkpoint()`` read going) makes DuckDB refuse to
        close the connection: wait for it, up to ``CLOSE_WAIT_S``, then raise."""
        with self._lock:
            self._db.close()
            deadline = time.monotonic() + CLOSE_WAIT_S
            while True:
                try:
                    self._connection.close()
                    return
                except duckdb.Error as exc:
                    if "busy" not in str(exc) or time.monotonic() > deadline:
                        raise
                time.sleep(0.02)

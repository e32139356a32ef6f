"""Operators' SQL, answered where it can change and reach nothing: a throwaway DuckDB.

DuckDB's configuration belongs to a database instance, not to a cursor: ``SET GLOBAL``,
``enable_external_access`` and ``lock_configuration`` on any cursor of the engine's database
would change the engine itself, and a statement that writes (a data-modifying CTE, ``COPY``,
``ATTACH``, ``CREATE MACRO``) would run with the engine's rights. So user SQL never runs on the
engine's database. Each statement gets a new in-memory instance, configured and locked before
it sees the statement: no file system, no network, no extensions, no Python objects, one thread,
a memory limit and no spilling to disk. The engine's tables that the statement names are copied
into it as Arrow tables, read in one transaction (one consistent state), and registered as
views: nothing the statement does can reach the engine's database, and what it does to its own
copy is thrown away with the instance. A timer interrupts a statement that runs too long.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import duckdb
import pyarrow as pa

from engine.errors import QueryError, UsageError
from engine.verbs.requests import SQL_MAX_ROWS
from projections.tables.schema import TABLES, VIEWS

__all__ = [
    "SQL_MAX_RESULT_BYTES",
    "SQL_MAX_ROWS",
    "SQL_MEMORY_LIMIT",
    "SQL_TIMEOUT_S",
    "copy_tables",
    "open_sandbox",
    "run_sandboxed",
    "sandbox_config",
]

SQL_TIMEOUT_S = 30.0
"""A statement running longer is interrupted (the engine's own work never waits for it)."""
SQL_MEMORY_LIMIT = "1GB"
"""DuckDB's own memory for one statement (the Arrow copies of the tables come on top)."""
SQL_MAX_RESULT_BYTES = 16 * 1024 * 1024
"""What the engine takes from one statement's result, in Arrow bytes: a reply carries less
anyway (the server's max_payload, 1 MB by default), so more would only cost memory."""
_BATCH_ROWS = 256

_READABLE = frozenset(TABLES) | frozenset(VIEWS)
_ONE_AT_A_TIME = threading.Lock()
"""One statement at a time (memory holds one sandbox and one copy at most); another one asked
meanwhile is refused at once rather than holding a worker thread of the query service."""


def sandbox_config() -> dict[str, Any]:
    """The configuration of a sandbox instance (locked after the time zone is set)."""
    return {
        # Files, URLs, extension loading, Python replacement scans: all off.
        "enable_external_access": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "allow_community_extensions": False,
        "allow_unsigned_extensions": False,
        "python_enable_replacements": False,
        # Bounded: one thread, a memory limit, nothing spilled to a temporary directory.
        "threads": 1,
        "memory_limit": SQL_MEMORY_LIMIT,
        "temp_directory": "",
    }


def open_sandbox() -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB instance whose configuration can no longer be changed."""
    sandbox = duckdb.connect(":memory:", config=sandbox_config())
    # TimeZone (ICU's) and the progress bar (a connection's) are unknown to the connect config:
    # set them, then lock everything.
    sandbox.execute("SET TimeZone = 'UTC'")
    sandbox.execute("SET enable_progress_bar = false")  # it would print on the engine's stdout
    sandbox.execute("SET lock_configuration = true")
    return sandbox


def _named_tables(sandbox: duckdb.DuckDBPyConnection, sql: str) -> set[str]:
    """The engine's tables and views ``sql`` names (parsed and bound in the sandbox only).

    Only an optimisation: a name missed here is simply absent from the sandbox. Raises
    duckdb.Error for a statement that does not parse or bind.
    """
    names: set[str] = set()
    for statement in sandbox.extract_statements(sql):
        names |= sandbox.get_table_names(statement.query, qualified=False)
    return {name for name in names if name in _READABLE}


def copy_tables(cursor: duckdb.DuckDBPyConnection, names: Iterable[str]) -> dict[str, pa.Table]:
    """Arrow copies of the engine's tables or views ``names``, all read in one transaction."""
    wanted = sorted(set(names) & _READABLE)  # never a name from the request into SQL unchecked
    if not wanted:
        return {}
    cursor.execute("BEGIN TRANSACTION")
    try:
        return {name: cursor.sql(f"SELECT * FROM {name}").to_arrow_table() for name in wanted}
    finally:
        cursor.execute("ROLLBACK")


def run_sandboxed(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    limit: int,
    timeout_s: float | None = None,
    max_bytes: int = SQL_MAX_RESULT_BYTES,
) -> tuple[pa.Table, bool]:
    """At most ``limit`` rows of ``sql`` run in a sandbox over copies of ``cursor``'s tables,
    and whether it was cut short (more rows than ``limit``, or over ``max_bytes`` of them).

    Rows are read in small batches and reading stops at the limit or the byte budget, so a
    statement producing millions of rows (or huge ones) costs no more than that. ``cursor`` (the
    engine's database) is only read, by the engine's own SELECTs. Raises UsageError for a
    statement DuckDB refuses (naming files or the network when that is why), QueryError when it
    runs longer than ``timeout_s`` (SQL_TIMEOUT_S by default), needs more memory than allowed,
    or another statement is running.
    """
    if not _ONE_AT_A_TIME.acquire(blocking=False):
        raise QueryError("another sql statement is running (one at a time): try again shortly")
    try:
        return _run(
            cursor, sql, limit, SQL_TIMEOUT_S if timeout_s is None else timeout_s, max_bytes
        )
    finally:
        _ONE_AT_A_TIME.release()


def _read(relation: duckdb.DuckDBPyRelation, limit: int, max_bytes: int) -> tuple[pa.Table, bool]:
    reader = relation.limit(limit + 1).to_arrow_reader(_BATCH_ROWS)
    batches, rows, size, cut = [], 0, 0, False
    try:
        for batch in reader:
            batches.append(batch)
            rows, size = rows + batch.num_rows, size + batch.nbytes
            if rows > limit or size > max_bytes:
                cut = True
                break
    finally:
        reader.close()
    table = pa.Table.from_batches(batches, schema=reader.schema)
    return table.slice(0, limit), cut


def _run(
    cursor: duckdb.DuckDBPyConnection, sql: str, limit: int, timeout_s: float, max_bytes: int
) -> tuple[pa.Table, bool]:
    box = open_sandbox()
    try:
        for name, table in copy_tables(cursor, _named_tables(box, sql)).items():
            box.register(name, table)
        timer = threading.Timer(timeout_s, box.interrupt)
        timer.daemon = True
        timer.start()
        try:
            relation = box.sql(sql)
            if relation is None:
                return pa.table({}), False
            return _read(relation, limit, max_bytes)
        finally:
            timer.cancel()
    except duckdb.PermissionException as exc:
        raise UsageError(
            f"sql cannot read or write files, reach the network or load extensions: {exc}"
        ) from None
    except duckdb.InterruptException:
        raise QueryError(f"the query ran longer than {timeout_s:g} s and was stopped") from None
    except duckdb.OutOfMemoryException as exc:
        raise QueryError(f"the query needs more than sql's {SQL_MEMORY_LIMIT}: {exc}") from None
    except duckdb.Error as exc:
        raise UsageError(f"query failed: {exc}") from None
    finally:
        box.close()

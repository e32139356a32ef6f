"""Injected I/O failures: a directory whose disk is full, a database whose COMMIT fails.

``DiskFull`` makes every file opened for writing under its roots (through ``pathlib``, which is
how every whole-state save and snapshot file is written) accept half of what is written and then
raise OSError(ENOSPC), as a full disk does. ``FailingCommits`` makes a TableStore's COMMIT fail
the way DuckDB's does on a full disk: the transaction is over and the error names the WAL.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import duckdb
import pytest

from projections.tables.store import TableStore

__all__ = ["ENOSPC_TEXT", "DiskFull", "FailingCommits", "leftovers"]

ENOSPC_TEXT = "No space left on device"


class _FullFile:
    """A file object whose writes fail half-way with ENOSPC."""

    def __init__(self, handle: IO[Any], path: Path, fault: DiskFull) -> None:
        self._handle = handle
        self._path = path
        self._fault = fault

    def write(self, data: Any) -> int:
        self._handle.write(data[: len(data) // 2])
        self._fault.failures += 1
        raise OSError(errno.ENOSPC, ENOSPC_TEXT, str(self._path))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> _FullFile:
        return self

    def __exit__(
        self,
        _kind: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self._handle.close()


class DiskFull:
    """A switchable full disk under ``roots`` (install it with ``install(monkeypatch)``)."""

    def __init__(self, *roots: Path) -> None:
        self.roots = [r.resolve() for r in roots]
        self.active = False
        self.failures = 0

    def covers(self, path: Path) -> bool:
        resolved = path.resolve()
        return self.active and any(resolved.is_relative_to(root) for root in self.roots)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> DiskFull:
        real_open = Path.open
        fault = self

        def open_(path: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            handle = real_open(path, mode, *args, **kwargs)
            if any(flag in mode for flag in "wax+") and fault.covers(path):
                return _FullFile(handle, path, fault)
            return handle

        monkeypatch.setattr(Path, "open", open_)
        return self


class _Cursor:
    """A DuckDB cursor whose COMMIT fails like a full disk's while ``fault.active``."""

    def __init__(self, real: duckdb.DuckDBPyConnection, fault: FailingCommits) -> None:
        self._real = real
        self._fault = fault

    def execute(self, sql: str, parameters: Any = None) -> Any:
        # The store hands its Arrow batch to DuckDB as the caller's local ``_batch``, which
        # DuckDB looks up in the frame calling execute: this one now.
        caller = sys._getframe(1).f_locals
        if "_batch" in caller:
            _batch = caller["_batch"]  # read by DuckDB's replacement scan, from this frame
        if self._fault.active and sql.strip().upper() == "COMMIT":
            self._real.execute("ROLLBACK")  # DuckDB ends a transaction whose commit failed
            self._fault.failures += 1
            raise self._fault.error()
        if parameters is None:
            return self._real.execute(sql)
        return self._real.execute(sql, parameters)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class FailingCommits:
    """Makes ``store``'s commits fail while active; ``fatal`` raises DuckDB's fatal error, which
    invalidates the database until it is reopened."""

    def __init__(self, store: TableStore, *, fatal: bool = False) -> None:
        self.store = store
        self.fatal = fatal
        self.active = False
        self.failures = 0
        store._db = _Cursor(store._db, self)  # type: ignore[assignment]
        reattach = store._attach

        def attach(connection: duckdb.DuckDBPyConnection) -> None:
            # A reopened database fails the same way while the fault lasts.
            reattach(connection)
            store._db = _Cursor(store._db, self)  # type: ignore[assignment]

        store._attach = attach  # type: ignore[method-assign]

    def error(self) -> duckdb.Error:
        where = f'"{self.store._path}.wal"'
        if self.fatal:
            return duckdb.FatalException(
                "FATAL Error: Failed to create checkpoint because of error: Could not write "
                f"file {where}: {ENOSPC_TEXT}"
            )
        return duckdb.TransactionException(
            f"TransactionContext Error: Failed to commit: Could not write file {where}: "
            f"{ENOSPC_TEXT}"
        )


def leftovers(directory: Path) -> list[Path]:
    """Temporary files under ``directory`` (what a failed save must not leave behind)."""

    def temporary(path: Path) -> bool:
        return path.name.endswith(".tmp") or path.name.startswith(".tmp-")

    found: Iterator[Path] = directory.rglob("*")
    return sorted(p for p in found if temporary(p) or p.name == ".restoring")

"""Whose fault is a failure: the event's content, or the environment the projection runs in.

Only a failure caused by an event's content may turn that event into a dead letter. A failure of
the environment (a full disk, an I/O error, memory, a database connection that broke) says
nothing about the event: the projection must stop where it is, say why, and go on from the same
place when the cause is gone. Dead-lettering such an event would drop a valid event for good.

The classification is pure (no I/O) and conservative on one side on purpose: when in doubt an
error is environmental, because a projection that waits is visible (``engram status`` shows it
degraded with the reason) and recovers, while a valid event dead-lettered is lost silently.
"""

from __future__ import annotations

import duckdb

from engine.errors import StoreLockedError

__all__ = ["describe", "environmental_cause", "is_environmental"]

# DuckDB's DB-API OperationalError covers IOException, OutOfMemoryException,
# ConnectionException, TransactionException (a commit that could not be written, a rollback
# after it) and ResourceInUseException: the database's operation, never an event's content.
# FatalException and InternalException invalidate the database until it is reopened;
# PermissionException is the file's; InterruptException a query stopped from outside.
_DUCKDB_ENVIRONMENTAL: tuple[type[BaseException], ...] = (
    duckdb.OperationalError,
    duckdb.FatalException,
    duckdb.InternalException,
    duckdb.PermissionException,
    duckdb.InterruptException,
)
_ENVIRONMENTAL: tuple[type[BaseException], ...] = (
    OSError,  # ENOSPC, EIO, EACCES, a missing directory ... (TimeoutError and ConnectionError too)
    MemoryError,
    StoreLockedError,
    *_DUCKDB_ENVIRONMENTAL,
)
# DuckDB raises plain errors too once a fatal error has invalidated the database.
_INVALIDATED = "database has been invalidated"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it was raised from or while handling, without cycles."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and not any(current is s for s in seen) and len(seen) < 16:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _environmental_one(exc: BaseException) -> bool:
    if isinstance(exc, _ENVIRONMENTAL):
        return True
    return isinstance(exc, duckdb.Error) and _INVALIDATED in str(exc)


def environmental_cause(exc: BaseException) -> BaseException | None:
    """The first environmental failure in ``exc``'s chain (itself, what it was raised from, what
    was being handled when it was raised), or None when the chain holds none."""
    for link in _chain(exc):
        if _environmental_one(link):
            return link
    return None


def is_environmental(exc: BaseException) -> bool:
    """Whether ``exc`` is the environment's fault rather than an event's content.

    True for OSError (ENOSPC, EIO, a closed file ...), MemoryError, DuckDB's operational errors
    (I/O, out of memory, connection, transaction), fatal and internal errors (the database is
    invalidated and must be reopened), a database locked by another process, and any error
    raised from or while handling one of these (a failed rollback after a failed commit). False
    otherwise: a constraint or conversion error, a wrong vector dimension, a bug's ValueError.
    """
    return environmental_cause(exc) is not None


def describe(exc: BaseException, limit: int = 300) -> str:
    """A one-line reason for logs and ``engram status``: the environmental cause when there is
    one (not the error that hid it), its type and message, at most ``limit`` characters."""
    cause = environmental_cause(exc) or exc
    if isinstance(cause, OSError) and cause.strerror:
        where = f" {cause.filename}" if cause.filename else ""
        text = f"{type(cause).__name__}: [Errno {cause.errno}] {cause.strerror}{where}"
    else:
        message = " ".join(str(cause).split()) or repr(cause)
        text = f"{type(cause).__name__}: {message}"
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""A small readers-writer lock: reads (queries, saves) run together, a change runs alone.

The projections whose state is saved whole (learner, sessions, vectors) and each hnswlib index
use it so that no query waits for a save: a save only reads the state, so it holds the lock
shared, beside the queries, while the change that precedes it (a batch's apply) holds it alone
for the few milliseconds it takes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["ReadWriteLock"]


class ReadWriteLock:
    """Many readers or one writer, never both; waiting writers go first.

    hnswlib answers concurrent queries safely (and releases the GIL while it searches), but a
    query running during ``add_items`` or ``resize_index`` can read a half-linked graph or freed
    memory; a query iterating a dict while a batch changes it fails the same way. Writer
    preference keeps a steady stream of queries from starving the projection; the price is that
    a writer waiting for a long reader (a save) holds new readers back too, so whoever saves must
    not have another thread write meanwhile (the projections serialise their writes and saves
    with a separate save lock, the writer being the saver). Not reentrant: a thread holding the
    lock must not take it again.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared for the duration of the ``with`` block."""
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively for the duration of the ``with`` block."""
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writing or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()

"""The shared base of the whole-state projections (learner, sessions, vectors): a state in
memory, saved whole with its watermark by a SavePolicy, read beside its saves.

Why by policy: saving the whole state on every batch would cost O(state) per batch, so the state
is saved by a ``SavePolicy`` (``save_every`` events, at most a bounded share of the time spent
saving) and on ``flush`` / ``close``. ``checkpoint()`` is the saved watermark: after a crash the
runner restarts from it and the events after it are applied again, deterministically, so they
decide the same (the same pattern versions, the same compactions under the same event ids, the
same memory labels). Acks before a save are harmless for the same reason.

Commit order of a batch:

0. prepare the change outside any lock (``_prepare``: the vectors embed the batch's texts here);
1. take the save lock (writers and saves, one at a time);
2. change the state under the state's lock held alone (the prepared change: milliseconds), moving
   its watermark to the batch's ``last_sequence`` (dead letters and ignored events included);
3. count the batch's events as unsaved; if the policy says a save is due, save (below), still
   holding the save lock, so the thread that applied a batch is the one that saves it;
4. a save writes the state and its watermark under the state's lock held SHARED (``_write``),
   then, once written, moves ``checkpoint()`` to that watermark. A save that raises leaves the
   checkpoint where it was, and the policy owes the save: the runner's retry of the same batch
   (whose events are skipped: at or below the state's watermark) saves at once.

Locking: a save can take seconds on a large state and must not hold queries up. The state's lock
is a readers-writer lock (``projections._rwlock``): a batch's changes hold it alone; queries
(``read``), announcements and the save hold it shared. The save lock serialises writers with
saves, so nothing changes the state while a save reads it, and the watermark written is the
sequence of exactly the state written.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

from projections._rwlock import ReadWriteLock
from projections.records import DeadLetter, SequencedEvent
from projections.save_policy import SavePolicy

__all__ = ["WholeStateBase"]

S = TypeVar("S")
T = TypeVar("T")


class WholeStateBase(ABC, Generic[S]):
    """A ``projections.base.WholeStateProjection`` over a state of type ``S``.

    Subclasses load (or create) the state before calling ``__init__`` and provide three hooks:
    ``_watermark`` (the state's applied sequence), ``_prepare`` (the batch's change, to run
    under the lock held alone) and ``_write`` (the save, under the lock held shared).
    ``directory`` None keeps the state in memory only: nothing is saved and ``checkpoint()``
    stays at 0.
    """

    name: str

    def __init__(self, directory: Path | None, state: S, save_policy: SavePolicy) -> None:
        self.directory = directory
        self.save_policy = save_policy
        self.state = state
        self._lock = ReadWriteLock()  # the state: a batch's changes alone, reads shared
        self._save_lock = threading.Lock()  # writers and saves, one at a time; _saved, _unsaved
        self._saved = self._watermark()
        self._unsaved = 0

    # -- hooks ---------------------------------------------------------------------------------

    @abstractmethod
    def _watermark(self) -> int:
        """The last stream sequence the state has taken in (applied or skipped)."""

    @abstractmethod
    def _prepare(self, events: Sequence[SequencedEvent], last_sequence: int) -> Callable[[], None]:
        """Work out the batch's change without any lock (validation, embedding: the slow part
        that needs no state lock) and return it: a function that folds the batch into the state
        and moves its watermark to at least ``last_sequence``, run under the save lock and the
        state's lock held alone. Raising here changes nothing."""

    @abstractmethod
    def _write(self, directory: Path) -> None:
        """Write the state and its watermark to ``directory`` (the caller holds the save lock
        and the state's lock shared: queries go on beside it)."""

    # -- the projection port -------------------------------------------------------------------

    def checkpoint(self) -> int:
        """The saved watermark (0: nothing saved)."""
        return self._saved

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None:
        change = self._prepare(events, last_sequence)
        with self._save_lock:
            with self._lock.write():
                change()
            self._unsaved += len(events) + len(dead_letters)
            if self.save_policy.due(self._unsaved):
                self.save_policy.timed(self._save)

    def _save(self) -> None:
        """Write the state with its watermark; the caller holds the save lock, so no batch
        changes the state meanwhile, and queries go on reading it beside the save."""
        if self.directory is not None and self._watermark() > self._saved:
            with self._lock.read():
                sequence = self._watermark()
                self._write(self.directory)
            self._saved = sequence
        self._unsaved = 0

    def flush(self) -> None:
        """Save now, whatever the policy (``close`` calls this; so can a caller that must have
        the state on disk before it goes on)."""
        with self._save_lock:
            self._save()

    def read(self, query: Callable[[S], T]) -> T:
        """Run a read-only ``query`` against the state. It waits for a batch being applied
        (milliseconds), never for a save. Blocking: call it off the event loop."""
        with self._lock.read():
            return query(self.state)

    def close(self) -> None:
        self.flush()

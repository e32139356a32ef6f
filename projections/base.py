"""The projection port and the two kinds of projection behind it: transactional and whole-state.

Every projection is a named state builder that the runner (``consumers.runner``) and the replay
(``consumers.replay``) feed with ordered batches: ``Projection``. How a projection makes its
effect durable comes in two kinds, each with its own reading of ``checkpoint()``:

- ``TransactionalProjection``: each ``apply`` stores the batch's effect and the checkpoint
  together, atomically (the tables: rows and checkpoint in one DuckDB transaction; the recent
  tier: in memory only, under one lock, rebuilt from the stream's tail at start).
  ``checkpoint()`` is the last batch applied.
- ``WholeStateProjection``: ``apply`` changes a state held in memory; the state is saved whole,
  with its watermark, when a ``SavePolicy`` says so, on ``flush`` and on ``close`` (the learner,
  the session compactor, the vectors; see ``projections.whole_state`` for the shared locking and
  commit order). ``checkpoint()`` is the SAVED watermark: after a crash the runner re-reads the
  stream from it and the projection applies the tail again, deterministically. Reads go through
  ``read(query)``, which never waits for a save.

A projection that derives events of its own for the runner to publish (pattern.learned,
session.compacted) is also an ``Announcer``. The protocols are ``runtime_checkable``: the
composition root asks ``isinstance(projection, Announcer)`` rather than naming projections.
(``TransactionalProjection`` adds no method to the port, so ``isinstance`` cannot tell it
apart: a projection that is not whole-state is transactional.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar, runtime_checkable

from engine.events import Event
from projections.records import DeadLetter, SequencedEvent

__all__ = ["Announcer", "Projection", "TransactionalProjection", "WholeStateProjection"]

S_co = TypeVar("S_co", covariant=True)
T = TypeVar("T")


@runtime_checkable
class Projection(Protocol):
    """A state builder fed from the log: the port the runner and the replay use.

    Contract, whatever the kind: ``apply`` is called with events in stream order; events at
    or below what the projection has applied (a redelivery) change nothing; ``last_sequence`` may
    be above the last event's (the batch ended with dead letters or with events this
    projection ignores) and the projection's watermark moves to it. If ``apply`` raises,
    ``checkpoint()`` does not move past the batch, and applying the same batch again is safe.
    Any batching of the same events gives the same state (tests/test_projection_contract.py
    runs every implementation through these rules).

    ``apply`` must not raise because of an event's content: the runner has already
    dead-lettered what cannot be decoded, and a projection that cannot use an event ignores it
    (its watermark still moves). What raises is the environment (a full disk, a lost file),
    and the runner applies the same batch again after a pause.
    """

    name: str

    def checkpoint(self) -> int:
        """The last stream sequence whose effect is durable (0: none); the runner resumes
        above it after a restart."""
        ...

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None: ...

    def close(self) -> None:
        """Make everything applied durable (whole-state: save) and release the resources."""
        ...


@runtime_checkable
class TransactionalProjection(Projection, Protocol):
    """A projection whose ``apply`` stores the batch's effect and moves the checkpoint to
    ``last_sequence`` atomically: when it returns, ``checkpoint() == last_sequence``; when it
    raises, nothing of the batch is stored. No save step: ``close`` only releases resources."""


@runtime_checkable
class WholeStateProjection(Projection, Protocol[S_co]):
    """A projection whose state lives in memory and is saved whole, with its watermark, by a
    ``SavePolicy`` (a bounded share of the time), on ``flush`` and on ``close``.

    ``checkpoint()`` is the saved watermark, at or below what ``apply`` has taken in: the
    events above it are applied again after a crash (deterministically, so they decide the
    same). A save that fails raises out of ``apply`` (and is then owed: the next ``apply``
    saves first, whatever the policy's counts) or out of ``flush`` (whose caller retries).
    ``apply`` is called by one thread at a time (the projection's runner); the batch's change
    is prepared outside the locks (``WholeStateBase._prepare``), which relies on that.
    """

    def flush(self) -> None:
        """Save now, whatever the policy (no-op without a directory or with nothing new)."""
        ...

    def read(self, query: Callable[[S_co], T]) -> T:
        """Run a read-only ``query`` against the state; it waits for a batch being applied
        (milliseconds), never for a save. Blocking: call it off the event loop."""
        ...


@runtime_checkable
class Announcer(Protocol):
    """A projection that derives events (pattern.learned, session.compacted) for the runner to
    publish. ``take_pending`` returns what is not yet on the stream; deterministic event ids
    make a repeated publish a duplicate JetStream drops."""

    def take_pending(self) -> list[Event]: ...

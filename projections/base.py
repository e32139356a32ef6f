"""The projection port: a named state builder that applies ordered batches exactly once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from projections.records import DeadLetter, SequencedEvent

__all__ = ["Projection"]


class Projection(Protocol):
    """A state builder fed from the log.

    Contract: ``apply`` stores the batch's effect and moves the checkpoint to ``last_sequence``
    atomically; it is called with events above ``checkpoint()`` only, in stream order; if it
    raises, nothing of the batch is stored. ``last_sequence`` may be above the last event's
    (the batch ended with dead letters or with events this projection ignores).
    """

    name: str

    def checkpoint(self) -> int:
        """The last stream sequence whose effect is stored (0: none)."""
        ...

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None: ...

    def close(self) -> None: ...

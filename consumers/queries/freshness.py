"""Read your writes: how fresh an answer is, and waiting (bounded) until it is fresh enough.

Every write returns the stream sequence it was stored at. A query carrying that sequence as
``min_sequence`` is answered once every projection its verb reads (``VerbSpec.reads``) has
applied it, or after ``wait_s`` at the latest, then marked ``stale`` with the sequence the answer
does reflect. The sequence an answer reflects is the lowest checkpoint of the projections it
read: each of them holds everything up to it (the runners' in-memory checkpoint, which is what
queries see, not the saved one).

The runners wake the waiters (``Progress.advanced``) each time a batch is applied, so a fresh
enough answer costs no polling. An engine owning some namespaces only never receives the other
tenants' events, so its checkpoints stop at its own tenants' last event: there, a projection
whose consumer has nothing pending has applied every event of its tenants the stream holds
(``Applied.settled``), which answers for any sequence the stream has reached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from engine.errors import UsageError
from engine.verbs.replies import Consistency

__all__ = ["PROJECTION_READS", "Applied", "Freshness", "Progress"]

PROJECTION_READS = frozenset({"tables", "patterns", "vectors", "sessions", "recent", "cache"})
"""The ``VerbSpec.reads`` that are projections (the others, ``stream`` and ``runners``, are read
live: an answer from them is always current)."""

SETTLED_EVERY_S = 0.25
"""How often a waiter asks whether a projection has nothing pending (engines owning some
namespaces only; see the module)."""


class Progress:
    """Wakes every waiter when a projection applied a batch (one event per round, replaced on
    each ``advanced`` so every waiter of the round is woken once)."""

    def __init__(self) -> None:
        self._moved = asyncio.Event()

    def advanced(self) -> None:
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def wait(self, timeout_s: float) -> None:
        """Until the next ``advanced`` or ``timeout_s``, whichever is first."""
        moved = self._moved
        try:
            async with asyncio.timeout(max(0.0, timeout_s)):
                await moved.wait()
        except TimeoutError:
            pass


class Applied(Protocol):
    """What an engine's projections have applied (the engine implements it)."""

    def checkpoints(self) -> Mapping[str, int]:
        """The sequence each running projection has applied, by projection name."""
        ...

    async def settled(self, names: Iterable[str], sequence: int) -> bool:
        """True when each of ``names`` has applied every event of its tenants up to
        ``sequence`` even though its checkpoint is lower (nothing of its tenants pending)."""
        ...

    async def last_sequence(self) -> int:
        """The stream's last sequence."""
        ...


@dataclass(slots=True)
class Freshness:
    """Answers "how fresh is it" and "wait until it is" for the verbs of one engine."""

    applied: Applied
    progress: Progress
    wait_s: float = 2.0

    def reflects(self, reads: Iterable[str]) -> int | None:
        """The sequence an answer from ``reads`` reflects (None: it reads no projection, or
        one of them is not running here)."""
        names = PROJECTION_READS.intersection(reads)
        checkpoints = self.applied.checkpoints()
        known = [checkpoints[name] for name in names if name in checkpoints]
        return min(known) if known and len(known) == len(names) else None

    async def consistency(
        self, reads: Iterable[str], min_sequence: int | None
    ) -> Consistency | None:
        """Wait (at most ``wait_s``) until the projections of ``reads`` applied
        ``min_sequence``; the consistency of an answer read then (None: ``reads`` holds no
        projection). Raises UsageError for a sequence the stream has not reached: no write
        returned it, and waiting for it would only hold a query worker."""
        names = PROJECTION_READS.intersection(reads)
        now = self.reflects(names)
        if now is None:
            return None
        if min_sequence is None or now >= min_sequence:
            return Consistency(sequence=now)
        last = await self.applied.last_sequence()
        if min_sequence > last:
            raise UsageError(
                f"min_sequence {min_sequence} is beyond the stream's last sequence {last}: pass "
                "the sequence a write returned"
            )
        started = time.monotonic()
        deadline = started + self.wait_s
        ask_settled = started + SETTLED_EVERY_S
        while True:
            moment = time.monotonic()
            if moment >= ask_settled:
                ask_settled = moment + SETTLED_EVERY_S
                if await self.applied.settled(names, min_sequence):
                    return Consistency(sequence=max(min_sequence, self.reflects(names) or 0))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Consistency(sequence=self.reflects(names) or 0, stale=True)
            await self.progress.wait(min(remaining, max(0.0, ask_settled - time.monotonic())))
            now = self.reflects(names)
            if now is not None and now >= min_sequence:
                return Consistency(sequence=now)

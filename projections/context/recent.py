"""The operational tier: a ring buffer of the most recent events and the active sessions.

In memory only, rebuilt on start from the tail of the stream (``checkpoint`` tells the runner to
start ``capacity`` events before the end), so it obeys the same rule as every projection: a
replay gives the same buffer.

A repeated envelope id is ignored here as everywhere (the first occurrence wins). To know the ids
first seen before the tail it starts from, it takes them from ``history`` (the tables
projection): it then starts at the older of the tail's start and that projection's checkpoint.
Its count of repeats covers what it applied since it started.

A ``namespace.purged`` event takes the tenant's events out of the buffer, its active sessions and
its envelope ids. The buffer holds the last ``capacity`` events of every namespace together, so
right after a purge it holds fewer events than a buffer rebuilt without the tenant would (the
purged events' places are not refilled with older ones); events arriving after the purge fill
it again.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Sequence

from engine.events import SessionEnded, SessionStarted
from projections.identity import IdHistory, SeenIds, event_key
from projections.purging import purged_namespace
from projections.records import DeadLetter, SequencedEvent

__all__ = ["RecentEvents"]


class RecentEvents:
    """Keeps the last ``capacity`` events and the sessions started but not ended."""

    name = "recent"

    def __init__(
        self,
        capacity: int = 10_000,
        *,
        stream_last_sequence: int = 0,
        history: IdHistory | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._events: deque[SequencedEvent] = deque(maxlen=capacity)
        self._active: dict[tuple[str, str], SequencedEvent] = {}
        self._start = max(0, stream_last_sequence - capacity)
        self._seen = SeenIds()
        if history is not None and self._start:
            self._seen, self._start = history.seen_through(self._start)
        self._applied = self._start
        self._lock = threading.Lock()

    def checkpoint(self) -> int:
        return self._applied

    def duplicates_seen(self) -> int:
        """Events ignored since start because their envelope id was applied before."""
        return self._seen.duplicates

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None:
        with self._lock:
            for item in events:
                owner = item.event.namespace
                if item.sequence <= self._applied or not self._seen.first(item.event.id, owner):
                    continue
                purged = purged_namespace(item.event)
                if purged is not None:
                    self._forget(purged)
                    self._seen.add(event_key(item.event.id), owner)  # as a replay records it
                self._events.append(item)
                data = item.event.data
                if isinstance(data, SessionStarted):
                    self._active[(item.event.namespace, data.session_id)] = item
                elif isinstance(data, SessionEnded):
                    self._active.pop((item.event.namespace, data.session_id), None)
            self._applied = max(self._applied, last_sequence)

    def _forget(self, namespace: str) -> None:
        """Take ``namespace``'s events, active sessions and ids out (the caller holds the
        lock)."""
        kept = [e for e in self._events if e.event.namespace != namespace]
        self._events = deque(kept, maxlen=self.capacity)
        self._active = {k: e for k, e in self._active.items() if k[0] != namespace}
        self._seen.forget(namespace)

    def recent(self, namespace: str, limit: int | None = None) -> list[SequencedEvent]:
        """Newest first, this namespace only."""
        with self._lock:
            newest_first = (e for e in reversed(self._events) if e.event.namespace == namespace)
            return list(itertools.islice(newest_first, limit))

    def active_sessions(self, namespace: str) -> list[SequencedEvent]:
        with self._lock:
            return [e for (ns, _), e in self._active.items() if ns == namespace]

    def close(self) -> None:
        return None

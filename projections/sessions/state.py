"""The session compactor's state and how each event changes it (pure apart from timing one step).

Per (namespace, session id) an open segment accumulates compact facts of the session's events.
A segment is closed, summarised and compressed into one ``CompactedSession`` when:

1. its session.ended arrives (reason ``ended``);
2. it has been idle longer than ``idle_timeout_s`` of event time: the stream clock is the
   greatest ``occurred_at`` seen so far, and the first event that moves it past the limit closes
   the segment (reason ``idle``), so a replay closes it at the same sequence;
3. more than ``max_open_sessions`` segments are open: the least recently active one is closed
   (reason ``evicted``).

A closed segment's facts are dropped (only the compressed record stays) and a session.compacted
announcement is queued under a deterministic event id. The state reads the stream's
session.compacted events back: an id seen there is ``announced`` and never queued again, so a
replay, a restart or a second engine never publishes the same compaction twice.

Open segments are kept in ``open`` in order of last activity (every event touching a segment
moves it to the end and the stream clock never goes back), so finding idle ones costs nothing per
event beyond those it closes.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Literal

from engine.events import SessionCompacted, SessionEnded, encode_event
from projections.identity import SeenIds
from projections.records import SequencedEvent
from projections.sessions.facts import SessionConfig, SessionFacts, session_of
from projections.sessions.summary import CompactedSession, Reason, compact
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier

__all__ = ["JournalEntry", "SessionKey", "SessionState"]

SessionKey = tuple[str, str]
JournalEntry = tuple[Literal["record", "announced"], str, float]
"""(kind, event id, published duration in ms for ``announced``; 0.0 for ``record``)."""


class SessionState:
    """Open session segments, compacted records and announcements, evolved one event at a time.

    ``apply`` is idempotent (events at or below ``sequence``, and envelope ids applied before,
    are ignored) and deterministic in everything but the ``compaction_duration_ms`` of the
    records it creates.
    """

    def __init__(
        self, config: SessionConfig | None = None, classifier: TaskTypeClassifier | None = None
    ) -> None:
        self.config = config or SessionConfig()
        self.classifier = classifier or KeywordTaskTypeClassifier()
        # Orchestrators repeat request texts; the classifier is deterministic, so caching it
        # changes nothing but the time.
        self._classify = functools.lru_cache(maxsize=4_096)(self.classifier.classify)
        self.open: dict[SessionKey, SessionFacts] = {}
        self.records: dict[str, CompactedSession] = {}
        """event id -> record, in the order they were closed."""
        self.announced: set[str] = set()
        """Ids of the session.compacted events seen on the stream."""
        self.pending: dict[str, None] = {}
        """Ids of records decided but not yet seen on the stream (ordered set)."""
        self.journal: list[JournalEntry] = []
        """Record and announcement changes not yet saved (persistence appends and clears it)."""
        self.clock: float | None = None
        """The stream clock: the greatest ``occurred_at`` (POSIX seconds) seen so far."""
        self.seen = SeenIds(journal=True)
        """The envelope ids applied (a later event with one of them is ignored and counted);
        its journal holds the ids not saved yet (persistence appends and clears it)."""
        self.sequence = 0

    def apply(self, item: SequencedEvent) -> None:
        """Fold one event in. A repeated envelope id changes nothing (not even the clock)."""
        if item.sequence <= self.sequence:
            return
        self.sequence = item.sequence
        if not self.seen.first(item.event.id):
            return
        event = item.event
        stamp = event.occurred_at.timestamp()
        self.clock = stamp if self.clock is None else max(self.clock, stamp)
        self._close_idle(item)
        if isinstance(event.data, SessionCompacted):
            self._seen_on_stream(event.id, event.data.compaction_duration_ms)
            return
        session_id = session_of(event)
        if session_id is None or not session_id.strip():
            return
        key = (event.namespace, session_id)
        facts = self.open.pop(key, None)  # re-inserted below: moves it to the end
        if facts is None:
            facts = SessionFacts(event.namespace, session_id, item.sequence)
        facts.add(item, len(encode_event(event)), self.clock, self.config, self._classify)
        self.open[key] = facts
        if isinstance(event.data, SessionEnded):
            self._close(key, "ended", item)
        while len(self.open) > self.config.max_open_sessions:
            self._close(next(iter(self.open)), "evicted", item)

    def _close_idle(self, item: SequencedEvent) -> None:
        timeout = self.config.idle_timeout_s
        if timeout is None or self.clock is None:
            return
        while self.open:
            key, facts = next(iter(self.open.items()))
            if self.clock - facts.last_active_ts <= timeout:
                return
            self._close(key, "idle", item)

    def _close(self, key: SessionKey, reason: Reason, item: SequencedEvent) -> None:
        facts = self.open.pop(key)
        closed_at = item.event.occurred_at.isoformat()
        record = compact(facts, reason, item.sequence, closed_at, self.config)
        self.records[record.event_id] = record
        self.journal.append(("record", record.event_id, 0.0))
        if record.event_id not in self.announced:
            self.pending[record.event_id] = None

    def _seen_on_stream(self, event_id: str, duration_ms: float) -> None:
        """A session.compacted event on the stream (ours or another engine's): never queue it
        again, and adopt the duration it published (the first one, should it appear twice)."""
        if event_id in self.announced:
            return
        self.announced.add(event_id)
        self.pending.pop(event_id, None)
        self.journal.append(("announced", event_id, duration_ms))
        adopt(self, event_id, duration_ms)

    def take_pending(self) -> list[CompactedSession]:
        """Records whose session.compacted event is not on the stream yet, oldest first."""
        return [self.records[event_id] for event_id in self.pending]

    def open_sessions(self, namespace: str) -> list[SessionFacts]:
        """The namespace's open segments, least recently active first."""
        return [facts for (ns, _), facts in self.open.items() if ns == namespace]


def adopt(state: SessionState, event_id: str, duration_ms: float) -> None:
    """Give a record the duration published for it (no-op for an unknown id)."""
    record = state.records.get(event_id)
    if record is not None and record.compaction_duration_ms != duration_ms:
        state.records[event_id] = replace(record, compaction_duration_ms=duration_ms)

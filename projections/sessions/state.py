"""The session compactor's state and how each event changes it (pure apart from timing one step).

Per (namespace, session id) an open segment accumulates compact facts of the session's events.
A segment is closed, summarised and compressed into one ``CompactedSession`` when:

1. its session.ended arrives (reason ``ended``);
2. it has been idle longer than ``idle_timeout_s`` of event time: its namespace's clock is the
   greatest ``occurred_at`` of the namespace's events so far, and the first of its events that
   moves it past the limit closes the segment (reason ``idle``), so a replay closes it at the
   same sequence;
3. more than ``max_open_sessions`` segments of one namespace are open: its least recently
   active one is closed (reason ``evicted``).

Namespaces never meet: each has its own clock and its own limit, so what one tenant's events
decide does not depend on the other tenants' events. An engine owning some tenants only decides
the same compactions for them as one owning all, and a purged tenant (``namespace.purged``)
is forgotten whole: its open segments, records, announcements, clock and envelope ids, leaving
the state the other tenants' events alone decide.

A closed segment's facts are dropped (only the compressed record stays) and a session.compacted
announcement is queued under a deterministic event id. The state reads the stream's
session.compacted events back: an id seen there is ``announced`` and never queued again, so a
replay, a restart or a second engine never publishes the same compaction twice.

Open segments are kept in ``open`` in order of last activity, and each namespace's in
``_active`` likewise (every event touching a segment moves it to the end and a clock never goes
back), so finding idle ones costs nothing per event beyond those it closes.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Literal

from engine.events import SessionCompacted, SessionEnded, encode_event
from projections.identity import SeenIds, event_key
from projections.purging import purged_namespace
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
        self._active: dict[str, dict[SessionKey, None]] = {}
        """namespace -> its open segments' keys, least recently active first."""
        self.records: dict[str, CompactedSession] = {}
        """event id -> record, in the order they were closed."""
        self.announced: dict[str, str] = {}
        """Ids of the session.compacted events seen on the stream -> their namespace."""
        self.pending: dict[str, None] = {}
        """Ids of records decided but not yet seen on the stream (ordered set)."""
        self.journal: list[JournalEntry] = []
        """Record and announcement changes not yet saved (persistence appends and clears it)."""
        self.rewrite = False
        """A namespace was forgotten since the last save: the next save writes the record log
        anew (without it) instead of appending to it."""
        self.clocks: dict[str, float] = {}
        """Each namespace's clock: the greatest ``occurred_at`` (POSIX seconds) of its events
        so far."""
        self.seen = SeenIds(journal=True)
        """The envelope ids applied (a later event with one of them is ignored and counted);
        its journal holds the ids not saved yet (persistence appends and clears it)."""
        self.sequence = 0

    def apply(self, item: SequencedEvent) -> None:
        """Fold one event in. A repeated envelope id changes nothing (not even the clock)."""
        if item.sequence <= self.sequence:
            return
        self.sequence = item.sequence
        event = item.event
        namespace = event.namespace
        if not self.seen.first(event.id, namespace):
            return
        purged = purged_namespace(event)
        if purged is not None:
            self.forget(purged)
            self.seen.add(event_key(event.id), namespace)  # as a replay records it
        stamp = event.occurred_at.timestamp()
        clock = self.clocks[namespace] = max(self.clocks.get(namespace, stamp), stamp)
        self._close_idle(namespace, clock, item)
        if isinstance(event.data, SessionCompacted):
            self._seen_on_stream(event.id, namespace, event.data.compaction_duration_ms)
            return
        session_id = session_of(event)
        if session_id is None or not session_id.strip():
            return
        key = (namespace, session_id)
        active = self._active.setdefault(namespace, {})
        facts = self.open.pop(key, None)  # re-inserted below: moves it to the end
        active.pop(key, None)
        if facts is None:
            facts = SessionFacts(namespace, session_id, item.sequence)
        facts.add(item, len(encode_event(event)), clock, self.config, self._classify)
        self.open[key] = facts
        active[key] = None
        if isinstance(event.data, SessionEnded):
            self._close(key, "ended", item)
        while len(active) > self.config.max_open_sessions:
            self._close(next(iter(active)), "evicted", item)

    def _close_idle(self, namespace: str, clock: float, item: SequencedEvent) -> None:
        timeout = self.config.idle_timeout_s
        active = self._active.get(namespace)
        if timeout is None or not active:
            return
        while active:
            key = next(iter(active))
            if clock - self.open[key].last_active_ts <= timeout:
                return
            self._close(key, "idle", item)

    def forget(self, namespace: str) -> None:
        """Forget everything ``namespace``'s events decided (a ``namespace.purged``): its open
        segments, compacted records (pending or not), the session.compacted events of it read
        back, its clock, and the envelope ids and repeats of its events. The next save writes
        the record log anew, without its records."""
        for key in self._active.pop(namespace, {}):
            del self.open[key]
        gone = [i for i, record in self.records.items() if record.namespace == namespace]
        for event_id in gone:
            del self.records[event_id]
            self.pending.pop(event_id, None)
        for event_id in [i for i, ns in self.announced.items() if ns == namespace]:
            del self.announced[event_id]
        self.clocks.pop(namespace, None)
        self.seen.forget(namespace)
        self.journal.clear()  # the rewrite saves every record and announcement anyway
        self.rewrite = True

    def holds(self, namespace: str) -> bool:
        """Whether anything ``namespace``'s events decided is in the state: what ``forget``
        would remove (a snapshot's session state is checked with it after a purge)."""
        return (
            any(key[0] == namespace for key in self.open)
            or any(r.namespace == namespace for r in self.records.values())
            or namespace in self.announced.values()
            or namespace in self.seen.owners()
        )

    def restore_open(self, segments: list[SessionFacts]) -> None:
        """Open ``segments`` (saved in order of last activity) as they were."""
        for facts in segments:
            key = (facts.namespace, facts.session_id)
            self.open[key] = facts
            self._active.setdefault(facts.namespace, {})[key] = None

    def _close(self, key: SessionKey, reason: Reason, item: SequencedEvent) -> None:
        facts = self.open.pop(key)
        active = self._active[key[0]]
        del active[key]
        if not active:
            del self._active[key[0]]
        closed_at = item.event.occurred_at.isoformat()
        record = compact(facts, reason, item.sequence, closed_at, self.config)
        self.records[record.event_id] = record
        self.journal.append(("record", record.event_id, 0.0))
        if record.event_id not in self.announced:
            self.pending[record.event_id] = None

    def _seen_on_stream(self, event_id: str, namespace: str, duration_ms: float) -> None:
        """A session.compacted event on the stream (ours or another engine's): never queue it
        again, and adopt the duration it published (the first one, should it appear twice)."""
        if event_id in self.announced:
            return
        self.announced[event_id] = namespace
        self.pending.pop(event_id, None)
        self.journal.append(("announced", event_id, duration_ms))
        adopt(self, event_id, duration_ms)

    def take_pending(self) -> list[CompactedSession]:
        """Records whose session.compacted event is not on the stream yet, oldest first."""
        return [self.records[event_id] for event_id in self.pending]

    def open_sessions(self, namespace: str) -> list[SessionFacts]:
        """The namespace's open segments, least recently active first."""
        return [self.open[key] for key in self._active.get(namespace, {})]


def adopt(state: SessionState, event_id: str, duration_ms: float) -> None:
    """Give a record the duration published for it (no-op for an unknown id)."""
    record = state.records.get(event_id)
    if record is not None and record.compaction_duration_ms != duration_ms:
        state.records[event_id] = replace(record, compaction_duration_ms=duration_ms)

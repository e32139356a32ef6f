"""The session compactor projection: SessionState fed from the log, saved with its watermark.

Like the learner, the state is saved by a SavePolicy (``save_every`` events, a bounded share of the
time) and on close, not on every batch; ``checkpoint()`` is the saved watermark. After a crash the
runner restarts from it and the events after it are applied again, deterministically, so the same
sessions are compacted under the same event ids (only the measured ``compaction_duration_ms`` of
those records may differ, until the stream's session.compacted event is read back). It is an
Announcer for the runner: ``take_pending`` returns the session.compacted events not yet on the
stream.

Locking, as in the learner: the state's lock is a readers-writer lock (a batch's changes alone,
queries, announcements and the save shared) and the save lock serialises writers with saves, so
a save never holds a query up and writes the watermark of exactly the state it writes. The
unsaved journal belongs to the save lock's holder (apply appends to it, the save clears it;
queries never read it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import structlog

from engine.events import Event, make_event
from projections._rwlock import ReadWriteLock
from projections.records import DeadLetter, SequencedEvent
from projections.save_policy import SavePolicy, policy_for
from projections.sessions.facts import SessionConfig
from projections.sessions.persistence import load_state, save_state
from projections.sessions.queries import compacted_sessions
from projections.sessions.state import SessionState
from projections.sessions.summary import CompactedSession
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier

__all__ = ["AGENT_ID", "SessionCompactor", "compaction_event"]

T = TypeVar("T")
AGENT_ID = "engram-sessions"

log = structlog.get_logger(__name__)


def compaction_event(record: CompactedSession) -> Event:
    """The session.compacted event of a record: its id and time are deterministic (the body's
    ``compaction_duration_ms`` is this engine's measurement; JetStream keeps the first)."""
    return make_event(
        record.metrics(),
        namespace=record.namespace,
        agent_id=AGENT_ID,
        session_id=record.session_id,
        occurred_at=datetime.fromisoformat(record.closed_at),
        event_id=record.event_id,
    )


class SessionCompactor:
    """Compacts ended (or idle) sessions into compressed summaries; queues session.compacted."""

    name = "sessions"

    def __init__(
        self,
        directory: Path | None,
        *,
        config: SessionConfig | None = None,
        classifier: TaskTypeClassifier | None = None,
        save_every: int | None = None,
        save_policy: SavePolicy | None = None,
    ) -> None:
        self.directory = directory
        self.config = config or SessionConfig()
        self.classifier = classifier or KeywordTaskTypeClassifier()
        self.save_policy = policy_for(save_every, save_policy)
        self._lock = ReadWriteLock()  # the state: a batch's changes alone, reads shared
        self._save_lock = threading.Lock()  # writers and saves, one at a time; the journal
        self._records_bytes = 0
        if directory is not None:
            self.state, self._records_bytes = load_state(directory, self.config, self.classifier)
            log.debug(
                "session state loaded",
                sequence=self.state.sequence,
                open=len(self.state.open),
                records=len(self.state.records),
            )
        else:
            self.state = SessionState(self.config, self.classifier)
        self._saved = self.state.sequence
        self._unsaved = 0

    def checkpoint(self) -> int:
        return self._saved

    def duplicates_seen(self) -> int:
        """Events ignored because their envelope id was applied before (no lock: one int)."""
        return self.state.seen.duplicates

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None:
        with self._save_lock:
            with self._lock.write():
                for item in events:
                    self.state.apply(item)
                # Dead letters and ignored events still move the watermark.
                self.state.sequence = max(self.state.sequence, last_sequence)
                if self.directory is None:
                    self.state.journal.clear()  # nothing to save it to
                    self.state.seen.clear_journal()
            self._unsaved += len(events) + len(dead_letters)
            if self.save_policy.due(self._unsaved):
                self.save_policy.timed(self._save)

    def _save(self) -> None:
        """Write the state with its watermark; the caller holds the save lock, so no batch
        changes the state meanwhile, and queries go on reading it beside the save."""
        if self.directory is not None and self.state.sequence > self._saved:
            with self._lock.read():
                sequence = self.state.sequence
                self._records_bytes = save_state(self.directory, self.state, self._records_bytes)
            self._saved = sequence
        self._unsaved = 0

    def flush(self) -> None:
        """Save now (the replay and the engine's shutdown call this)."""
        with self._save_lock:
            self._save()

    def take_pending(self) -> list[Event]:
        """session.compacted events decided but not yet seen on the stream."""
        with self._lock.read():
            pending = self.state.take_pending()
        return [compaction_event(record) for record in pending]

    def read(self, query: Callable[[SessionState], T]) -> T:
        """Run a read-only ``query`` against the state. It waits for a batch being applied
        (milliseconds), never for a save. Blocking: call it off the event loop."""
        with self._lock.read():
            return query(self.state)

    def compacted_sessions(
        self, namespace: str = "default", session_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The namespace's compacted sessions, newest first: metrics and decompressed summary
        (see ``queries.compacted_sessions``); [] when none matches."""
        return self.read(lambda s: compacted_sessions(s, namespace, session_id, limit=limit))

    def close(self) -> None:
        self.flush()

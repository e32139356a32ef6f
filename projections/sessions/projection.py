"""The session compactor projection: SessionState fed from the log, saved whole with its
watermark.

A whole-state projection (``projections.whole_state``: saved by a SavePolicy and on close,
``checkpoint()`` the saved watermark, the commit order and locking written there). After a crash
the events after the watermark are applied again, deterministically, so the same sessions are
compacted under the same event ids (only the measured ``compaction_duration_ms`` of those records
may differ, until the stream's session.compacted event is read back). It is an Announcer for the
runner: ``take_pending`` returns the session.compacted events not yet on the stream.

The unsaved journal belongs to the save lock's holder (apply appends to it, the save clears it;
queries never read it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from engine.events import Event, make_event
from projections.records import SequencedEvent
from projections.save_policy import SavePolicy, policy_for
from projections.sessions.facts import SessionConfig
from projections.sessions.persistence import RecordLog, load_state, save_state
from projections.sessions.queries import compacted_sessions
from projections.sessions.state import SessionState
from projections.sessions.summary import CompactedSession
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier
from projections.whole_state import WholeStateBase

__all__ = ["AGENT_ID", "SessionCompactor", "compaction_event"]

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


class SessionCompactor(WholeStateBase[SessionState]):
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
        self.config = config or SessionConfig()
        self.classifier = classifier or KeywordTaskTypeClassifier()
        self._log = RecordLog()
        if directory is not None:
            state, self._log = load_state(directory, self.config, self.classifier)
            log.debug(
                "session state loaded",
                sequence=state.sequence,
                open=len(state.open),
                records=len(state.records),
            )
        else:
            state = SessionState(self.config, self.classifier)
        super().__init__(directory, state, policy_for(save_every, save_policy))

    def duplicates_seen(self) -> int:
        """Events ignored because their envelope id was applied before (no lock: one int)."""
        return self.state.seen.duplicates

    def take_pending(self) -> list[Event]:
        """session.compacted events decided but not yet seen on the stream."""
        with self._lock.read():
            pending = self.state.take_pending()
        return [compaction_event(record) for record in pending]

    def compacted_sessions(
        self, namespace: str = "default", session_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The namespace's compacted sessions, newest first: metrics and decompressed summary
        (see ``queries.compacted_sessions``); [] when none matches."""
        return self.read(lambda s: compacted_sessions(s, namespace, session_id, limit=limit))

    # -- the whole-state hooks ------------------------------------------------------------------

    def _watermark(self) -> int:
        return self.state.sequence

    def _prepare(self, events: Sequence[SequencedEvent], last_sequence: int) -> Callable[[], None]:
        def fold() -> None:
            for item in events:
                self.state.apply(item)
            # Dead letters and ignored events still move the watermark.
            self.state.sequence = max(self.state.sequence, last_sequence)
            if self.directory is None:
                self.state.journal.clear()  # nothing to save it to
                self.state.seen.clear_journal()
                self.state.rewrite = False

        return fold

    def _write(self, directory: Path) -> None:
        self._log = save_state(directory, self.state, self._log)

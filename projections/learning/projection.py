"""The learner projection: LearnerState fed from the log, saved with its watermark.

Saving the whole state on every batch would cost O(state) per batch, so the state is saved by a
SavePolicy (after ``save_every`` events, at most a tenth of the time spent saving) and on close.
``checkpoint()`` is the saved watermark: after a crash the runner restarts from it and the events
after it are applied again (deterministically, so the same versions are decided). Acks before a save
are harmless for the same reason.

Locking: a save can take seconds on a large state and must not hold queries up. The state's lock
is a readers-writer lock: a batch's changes hold it alone (milliseconds); queries, announcements
and the save hold it shared. A second lock, the save lock, serialises writers with saves (the
thread that applied a batch is the one that saves it), so nothing changes the state while a save
reads it, and the watermark written is the sequence of exactly the state written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from engine.events import Event, make_event
from projections._rwlock import ReadWriteLock
from projections.learning.persistence import load_state, save_state
from projections.learning.scoring import LearnerConfig
from projections.learning.state import Announcement, LearnerState
from projections.records import DeadLetter, SequencedEvent
from projections.save_policy import SavePolicy, policy_for
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier

__all__ = ["LearnerProjection", "announcement_event"]

T = TypeVar("T")


def announcement_event(announcement: Announcement) -> Event:
    """The pattern.learned event of an announcement: id, time and body are deterministic."""
    return make_event(
        announcement.data,
        namespace=announcement.namespace,
        agent_id="engram-learner",
        occurred_at=datetime.fromisoformat(announcement.occurred_at),
        event_id=announcement.event_id,
    )


class LearnerProjection:
    """Learns workflow, success and failure patterns; queues pattern.learned announcements."""

    name = "patterns"

    def __init__(
        self,
        directory: Path | None,
        *,
        config: LearnerConfig | None = None,
        classifier: TaskTypeClassifier | None = None,
        save_every: int | None = None,
        save_policy: SavePolicy | None = None,
    ) -> None:
        self.directory = directory
        self.config = config or LearnerConfig()
        self.classifier = classifier or KeywordTaskTypeClassifier()
        self.save_policy = policy_for(save_every, save_policy)
        self._lock = ReadWriteLock()  # the state: a batch's changes alone, reads shared
        self._save_lock = threading.Lock()  # writers and saves, one at a time; _saved, _unsaved
        self.state = (
            load_state(directory, self.config, self.classifier)
            if directory is not None
            else LearnerState(self.config, self.classifier)
        )
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
            self._unsaved += len(events) + len(dead_letters)
            if self.save_policy.due(self._unsaved):
                self.save_policy.timed(self._save)

    def _save(self) -> None:
        """Write the state with its watermark; the caller holds the save lock, so no batch
        changes the state meanwhile, and queries go on reading it beside the save."""
        if self.directory is not None and self.state.sequence > self._saved:
            with self._lock.read():
                sequence = self.state.sequence
                save_state(self.directory, self.state)
            self._saved = sequence
        self._unsaved = 0

    def flush(self) -> None:
        """Save now (the replay and the engine's shutdown call this)."""
        with self._save_lock:
            self._save()

    def take_pending(self) -> list[Event]:
        """pattern.learned events decided but not yet seen on the stream."""
        with self._lock.read():
            pending = self.state.take_pending()
        return [announcement_event(a) for a in pending]

    def read(self, query: Callable[[LearnerState], T]) -> T:
        """Run a read-only ``query`` against the state. It waits for a batch being applied
        (milliseconds), never for a save. Blocking: call it off the event loop."""
        with self._lock.read():
            return query(self.state)

    def close(self) -> None:
        self.flush()

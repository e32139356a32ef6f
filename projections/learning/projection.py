"""The learner projection: LearnerState fed from the log, saved whole with its watermark.

A whole-state projection (``projections.whole_state``: saved by a SavePolicy and on close,
``checkpoint()`` the saved watermark, the commit order and locking written there). After a crash
the events after the watermark are applied again and decide the same pattern versions. It is an
Announcer for the runner: ``take_pending`` returns the pattern.learned events not yet on the
stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from engine.events import Event, make_event
from projections.learning.persistence import load_state, save_state
from projections.learning.scoring import LearnerConfig
from projections.learning.state import Announcement, LearnerState
from projections.records import SequencedEvent
from projections.save_policy import SavePolicy, policy_for
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier
from projections.whole_state import WholeStateBase

__all__ = ["LearnerProjection", "announcement_event"]


def announcement_event(announcement: Announcement) -> Event:
    """The pattern.learned event of an announcement: id, time and body are deterministic."""
    return make_event(
        announcement.data,
        namespace=announcement.namespace,
        agent_id="engram-learner",
        occurred_at=datetime.fromisoformat(announcement.occurred_at),
        event_id=announcement.event_id,
    )


class LearnerProjection(WholeStateBase[LearnerState]):
    """Learns workflow, success and failure patterns; queues pattern.learned announcements."""

    name = "patterns"
    """Named for what it holds rather than what it is (the learner): the name is its directory
    under the data directory, its durable consumer and its row in ``engram status``, so renaming
    it would orphan every existing data directory and consumer."""

    def __init__(
        self,
        directory: Path | None,
        *,
        config: LearnerConfig | None = None,
        classifier: TaskTypeClassifier | None = None,
        save_every: int | None = None,
        save_policy: SavePolicy | None = None,
    ) -> None:
        self.config = config or LearnerConfig()
        self.classifier = classifier or KeywordTaskTypeClassifier()
        state = (
            load_state(directory, self.config, self.classifier)
            if directory is not None
            else LearnerState(self.config, self.classifier)
        )
        super().__init__(directory, state, policy_for(save_every, save_policy))

    def duplicates_seen(self) -> int:
        """Events ignored because their envelope id was applied before (no lock: one int)."""
        return self.state.seen.duplicates

    def take_pending(self) -> list[Event]:
        """pattern.learned events decided but not yet seen on the stream."""
        with self._lock.read():
            pending = self.state.take_pending()
        return [announcement_event(a) for a in pending]

    # -- the whole-state hooks ------------------------------------------------------------------

    def _watermark(self) -> int:
        return self.state.sequence

    def _prepare(self, events: Sequence[SequencedEvent], last_sequence: int) -> Callable[[], None]:
        def fold() -> None:
            for item in events:
                self.state.apply(item)
            # Dead letters and ignored events still move the watermark.
            self.state.sequence = max(self.state.sequence, last_sequence)

        return fold

    def _write(self, directory: Path) -> None:
        save_state(directory, self.state)

"""The tables projection: every agent event into the DuckDB working-memory tables."""

from __future__ import annotations

from collections.abc import Sequence

from projections.records import DeadLetter, SequencedEvent
from projections.tables.rows import fold_batch
from projections.tables.store import TableStore
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier

__all__ = ["TablesProjection"]


class TablesProjection:
    """Folds a batch into table changes (pure) and commits them with the checkpoint."""

    name = "tables"

    def __init__(self, store: TableStore, classifier: TaskTypeClassifier | None = None) -> None:
        self.store = store
        self.classifier = classifier or KeywordTaskTypeClassifier()
        self._checkpoint: int | None = None

    def checkpoint(self) -> int:
        if self._checkpoint is None:
            self._checkpoint = self.store.checkpoint(self.name)
        return self._checkpoint

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None:
        floor = self.checkpoint()
        if last_sequence <= floor:
            return  # already applied: a redelivered batch changes nothing
        events = [e for e in events if e.sequence > floor]
        dead_letters = [d for d in dead_letters if d.sequence > floor]
        changes = fold_batch(events, self.classifier)
        stored_at = events[-1].stored_at if events else None
        if dead_letters and (not events or dead_letters[-1].sequence > events[-1].sequence):
            stored_at = dead_letters[-1].stored_at
        try:
            self.store.commit(self.name, changes, dead_letters, last_sequence, stored_at)
        except BaseException:
            # Whether a COMMIT that raised is stored is the database's to say (a fatal error
            # after the WAL write): read the checkpoint again before the next batch.
            self._checkpoint = None
            raise
        self._checkpoint = last_sequence

    def close(self) -> None:
        self.store.close()

"""The tables projection: every agent event into the DuckDB working-memory tables.

The envelope ids it applied are the ``event_ids`` table, committed with the rows and the
checkpoint; a copy of their keys is held in memory (``SeenIds``, 8 bytes per id), read again
from the table whenever the checkpoint is, and changed only after a commit succeeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from projections.identity import SeenIds
from projections.records import DeadLetter, SequencedEvent
from projections.tables.rows import fold_batch
from projections.tables.store import TableStore
from projections.task_types import KeywordTaskTypeClassifier, TaskTypeClassifier

__all__ = ["TablesProjection"]

log = structlog.get_logger(__name__)


class TablesProjection:
    """Folds a batch into table changes (pure) and commits them with the checkpoint."""

    name = "tables"

    def __init__(self, store: TableStore, classifier: TaskTypeClassifier | None = None) -> None:
        self.store = store
        self.classifier = classifier or KeywordTaskTypeClassifier()
        self._checkpoint: int | None = None
        self._seen = SeenIds()

    def checkpoint(self) -> int:
        if self._checkpoint is None:
            self._checkpoint = self.store.checkpoint(self.name)
            self._seen = self._stored_ids()
        return self._checkpoint

    def _stored_ids(self) -> SeenIds:
        cursor = self.store.reader()
        try:
            keys = cursor.execute(
                "SELECT event_key FROM event_ids WHERE NOT duplicate"
            ).fetchnumpy()["event_key"]
            row = cursor.execute("SELECT count(*) FROM event_ids WHERE duplicate").fetchone()
        finally:
            cursor.close()
        seen = SeenIds(keys, duplicates=int(row[0]) if row else 0)
        if self._checkpoint and not len(seen):
            log.warning(
                "no event ids recorded below the tables' checkpoint: if an engram from before "
                "duplicates were tracked built them, repeats of those events are not recognised "
                "(rebuild by replay)",
                checkpoint=self._checkpoint,
            )
        return seen

    def duplicates_seen(self) -> int:
        """Events ignored because their envelope id was applied before."""
        return self._seen.duplicates

    def seen_through(self, sequence: int) -> tuple[SeenIds, int]:
        """The ids first seen at or below ``min(sequence, checkpoint)``, and that sequence: what
        a projection starting there (the recent tier) must already know."""
        through = min(sequence, self.checkpoint())
        cursor = self.store.reader()
        try:
            keys = cursor.execute(
                "SELECT event_key FROM event_ids WHERE NOT duplicate AND sequence <= ?",
                [through],
            ).fetchnumpy()["event_key"]
        finally:
            cursor.close()
        return SeenIds(keys), through

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
        changes = fold_batch(events, self.classifier, self._seen)
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
        self._seen.extend(changes.new_keys)
        self._seen.duplicates += changes.duplicates

    def close(self) -> None:
        self.store.close()

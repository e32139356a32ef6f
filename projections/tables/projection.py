"""The tables projection: every agent event into the DuckDB working-memory tables.

The envelope ids it applied are the ``event_ids`` table, committed with the rows and the
checkpoint; a copy of their keys is held in memory (``SeenIds``, 8 bytes per id), read again
from the table whenever the checkpoint is, and changed only after a commit succeeded.

A ``namespace.purged`` event splits its batch: the events before it are folded against the ids
applied so far, the events after it against those ids less the purged tenant's, and the changes
and the purge are committed as steps of one transaction (``TableStore.commit_steps``). The ids
are then read again from the table, which no longer holds the tenant's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import structlog

from engine.events.derived import NamespacePurged
from projections.identity import SeenIds, event_key
from projections.purging import purged_namespace
from projections.records import DeadLetter, SequencedEvent
from projections.tables.rows import TableChanges, fold_batch
from projections.tables.store import Batch, Purge, Step, TableStore
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
            found = cursor.execute(
                "SELECT event_key, namespace FROM event_ids WHERE NOT duplicate AND sequence <= ?",
                [through],
            ).fetchnumpy()
        finally:
            cursor.close()
        keys = np.asarray(found["event_key"], dtype=np.uint64)
        seen = SeenIds(keys)
        namespaces = [str(ns) if ns is not None else None for ns in found["namespace"].tolist()]
        owned: dict[str, list[int]] = {}
        for key, namespace in zip(keys.tolist(), namespaces, strict=True):
            if namespace is not None:
                owned.setdefault(namespace, []).append(key)
        for namespace, its in sorted(owned.items()):
            seen.attribute(namespace, np.asarray(its, dtype=np.uint64))
        return seen, through

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
        steps = self._steps(events, dead_letters)
        stored_at = events[-1].stored_at if events else None
        if dead_letters and (not events or dead_letters[-1].sequence > events[-1].sequence):
            stored_at = dead_letters[-1].stored_at
        try:
            self.store.commit_steps(self.name, steps, last_sequence, stored_at)
        except BaseException:
            # Whether a COMMIT that raised is stored is the database's to say (a fatal error
            # after the WAL write): read the checkpoint again before the next batch.
            self._checkpoint = None
            raise
        self._checkpoint = last_sequence
        if len(steps) > 1:  # a tenant was purged: its ids left the table
            self._seen = self._stored_ids()
            return
        [only] = steps
        assert isinstance(only, Batch)
        self._seen.extend(only.changes.new_keys)
        self._seen.duplicates += only.changes.duplicates

    def _steps(
        self, events: Sequence[SequencedEvent], dead_letters: Sequence[DeadLetter]
    ) -> list[Step]:
        """The batch as commit steps: one Batch, or, around each purge (a first occurrence of
        a ``namespace.purged``), the Batch before it, the Purge, and what follows, each folded
        against the ids applied before it."""
        seen = self._seen
        steps: list[Step] = []
        segment: list[SequencedEvent] = []
        keys: set[int] = set()
        letters = sorted(dead_letters, key=lambda d: d.sequence)
        for item in events:
            key = event_key(item.event.id)
            purged = purged_namespace(item.event)
            if purged is not None and key not in keys and key not in seen:
                before = [d for d in letters if d.sequence < item.sequence]
                letters = letters[len(before) :]
                changes = fold_batch(segment, self.classifier, seen)
                data = item.event.data
                assert isinstance(data, NamespacePurged)  # purged_namespace said so
                steps += [Batch(changes, before), Purge(data, item.sequence)]
                seen = self._without(purged, seen, changes, steps)
                segment, keys = [], set()
            segment.append(item)
            keys.add(key)
        steps.append(Batch(fold_batch(segment, self.classifier, seen), letters))
        return steps

    def _without(
        self, namespace: str, seen: SeenIds, last: TableChanges, steps: list[Step]
    ) -> SeenIds:
        """The ids applied once ``namespace`` is purged: ``seen`` and ``last``'s new ids, less
        the ids the namespace's events used first (stored, or earlier in this batch)."""
        cursor = self.store.reader()
        try:
            stored = cursor.execute(
                "SELECT event_key FROM event_ids WHERE namespace = ? AND NOT duplicate",
                [namespace],
            ).fetchnumpy()["event_key"]
        finally:
            cursor.close()
        theirs = set(np.asarray(stored, dtype=np.uint64).tolist())
        for step in steps:
            if isinstance(step, Batch):
                theirs.update(
                    row["event_key"]
                    for row in step.changes.inserts.get("event_ids", [])
                    if row["namespace"] == namespace and not row["duplicate"]
                )
        kept = set(seen.keys().tolist()) | set(last.new_keys)
        return SeenIds(np.asarray(sorted(kept - theirs), dtype=np.uint64))

    def close(self) -> None:
        self.store.close()

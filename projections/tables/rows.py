"""Pure mapping from a batch of events to table changes (no I/O, no clock, no randomness).

Insert-only tables get one row per event. Keyed tables (decisions, sessions, knowledge, items)
get one folded row per key per batch, so a batch never touches a key twice; the store merges each
folded row with what is already stored (see ``MERGE_RULES``). A key deleted in a batch
(``item.deleted``) is in ``deletes``: the store removes the stored row before it merges the
batch's rows, so an item deleted and put again in one batch starts afresh (``created_at``).

The envelope id is an event's identity: only its first occurrence changes a table. A repeat
(same id, later sequence) is not folded at all: the keyed merges would otherwise count it again
(``sessions.event_count`` and the other counts add up; ``decisions`` and ``knowledge`` would take
its sequence). Every event gets an ``event_ids`` row, marked ``duplicate`` for a repeat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    KnowledgeAdded,
    PatternFeedback,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
)
from engine.events.items import ItemDeleted, ItemPut
from projections.identity import SeenIds, event_key
from projections.records import SequencedEvent
from projections.tables.items import expires_at, join_path, search_text
from projections.task_types import TaskTypeClassifier
from projections.workflows import workflow_key

__all__ = ["MERGE_RULES", "TableChanges", "fold_batch"]

Row = dict[str, Any]


# What json.dumps builds on every call with these options, built once (same output).
_METADATA_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


# An item's value as stored and answered: its keys in the order the publisher gave them.
_ITEM_VALUE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json(value: dict[str, Any]) -> str | None:
    return _METADATA_ENCODER.encode(value) if value else None


@dataclass
class TableChanges:
    """What one batch does to the tables."""

    inserts: dict[str, list[Row]] = field(default_factory=dict)
    upserts: dict[str, dict[tuple[str, ...], Row]] = field(default_factory=dict)
    deletes: dict[str, dict[tuple[str, ...], Row]] = field(default_factory=dict)
    """Keys whose stored row goes before the upserts are merged (the row: its key columns)."""
    new_keys: list[int] = field(default_factory=list)
    """Keys of the envelope ids first seen in this batch (to record once committed)."""
    duplicates: int = 0
    """Events of this batch that repeat an envelope id seen before (and were not folded)."""

    def insert(self, table: str, row: Row) -> None:
        self.inserts.setdefault(table, []).append(row)

    def keyed(self, table: str, key: tuple[str, ...], seed: Row) -> Row:
        rows = self.upserts.setdefault(table, {})
        if key not in rows:
            rows[key] = seed
        return rows[key]

    def delete(self, table: str, key: tuple[str, ...], row: Row) -> None:
        """Remove ``key``'s stored row, and what this batch folded for it so far."""
        self.upserts.get(table, {}).pop(key, None)
        self.deletes.setdefault(table, {})[key] = row


# How a folded row merges with the stored one:
#   "first": keep the stored value when there is one      (COALESCE(stored, new))
#   "last":  take the new value when there is one          (COALESCE(new, stored))
#   "add":   sum                                            (stored + new)
#   "when:<marker>": the new value if this batch set <marker> (the column group it belongs to
#            was written, even to NULL), else the stored one. Decisions have two groups:
#            what was decided (marker event_id) and how it turned out (outcome_sequence).
_LOGGED = (
    "sequence",
    "event_id",
    "occurred_at",
    "agent_id",
    "session_id",
    "actor",
    "decision",
    "rationale",
    "context",
    "alternatives",
    "task_id",
)
_OUTCOME = ("outcome_success", "outcome_notes", "outcome_at", "outcome_sequence")
_KNOWLEDGE = (
    "sequence",
    "event_id",
    "occurred_at",
    "agent_id",
    "session_id",
    "kind",
    "title",
    "content",
    "tags",
    "metadata",
)
_ITEM = (
    "value",
    "text",
    "updated_at",
    "expires_at",
    "ttl_minutes",
    "sequence",
    "event_id",
    "agent_id",
)
MERGE_RULES: dict[str, dict[str, str]] = {
    "decisions": {
        **{c: "when:event_id" for c in _LOGGED},
        **{c: "when:outcome_sequence" for c in _OUTCOME},
    },
    "sessions": {
        "agent_id": "first",
        "goal": "first",
        "started_at": "first",
        "ended_at": "last",
        "success": "last",
        "first_sequence": "first",
        "last_sequence": "last",
        "event_count": "add",
        "workflow_count": "add",
        "workflow_successes": "add",
        "task_count": "add",
        "decision_count": "add",
    },
    # A knowledge document is replaced whole by a later version with the same id.
    "knowledge": {c: "when:event_id" for c in _KNOWLEDGE},
    # An item is replaced whole by a later put, but for when it was created.
    "items": {
        "created_at": "first",
        **{c: "when:sequence" for c in _ITEM},
    },
}


def _base(item: SequencedEvent) -> Row:
    e = item.event
    return {
        "sequence": item.sequence,
        "event_id": e.id,
        "namespace": e.namespace,
        "occurred_at": e.occurred_at,
        "agent_id": e.agent_id,
        "session_id": e.session_id,
    }


def _session_row(changes: TableChanges, event: Event, session_id: str, sequence: int) -> Row:
    row = changes.keyed(
        "sessions",
        (event.namespace, session_id),
        {
            "namespace": event.namespace,
            "session_id": session_id,
            "agent_id": event.agent_id,
            "goal": None,
            "started_at": None,
            "ended_at": None,
            "success": None,
            "first_sequence": sequence,
            "last_sequence": sequence,
            "event_count": 0,
            "workflow_count": 0,
            "workflow_successes": 0,
            "task_count": 0,
            "decision_count": 0,
        },
    )
    row["last_sequence"] = sequence
    row["event_count"] += 1
    if row["agent_id"] is None:
        row["agent_id"] = event.agent_id
    return row


def _own_session(
    changes: TableChanges, event: Event, session_id: str, sequence: int, envelope_row: Row | None
) -> Row:
    """The row of the session an event is about (counted once even if the envelope names it)."""
    if envelope_row is not None and event.session_id == session_id:
        return envelope_row
    return _session_row(changes, event, session_id, sequence)


def _task_type(
    given: str | None, text: str | None, classifier: TaskTypeClassifier
) -> tuple[str, bool]:
    if given:
        return given, False
    return classifier.classify(text or ""), True


def fold_batch(
    batch: Sequence[SequencedEvent],
    classifier: TaskTypeClassifier,
    seen: SeenIds | None = None,
) -> TableChanges:
    """The table changes of ``batch`` (events in stream order). An event whose envelope id is in
    ``seen`` (the ids applied before) or earlier in the batch only gets its ``event_ids`` row.
    ``seen`` is not changed: the caller records ``new_keys`` once the changes are committed."""
    changes = TableChanges()
    known = seen if seen is not None else SeenIds()
    in_batch: set[int] = set()
    for item in batch:
        key = event_key(item.event.id)
        repeat = key in in_batch or key in known
        changes.insert(
            "event_ids",
            {
                "sequence": item.sequence,
                "event_key": key,
                "duplicate": repeat,
                "namespace": item.event.namespace,
            },
        )
        if repeat:
            changes.duplicates += 1
            continue
        in_batch.add(key)
        changes.new_keys.append(key)
        _fold_event(changes, item, classifier)
    return changes


def _fold_event(
    changes: TableChanges, item: SequencedEvent, classifier: TaskTypeClassifier
) -> None:
    """Fold one first occurrence into ``changes``."""
    event, data, seq = item.event, item.event.data, item.sequence
    session = _session_row(changes, event, event.session_id, seq) if event.session_id else None
    match data:
        case WorkflowExecuted():
            task_type, inferred = _task_type(data.task_type, data.request, classifier)
            changes.insert(
                "workflows",
                {
                    **_base(item),
                    "task_type": task_type,
                    "task_type_inferred": inferred,
                    "request": data.request,
                    "workflow_steps": list(data.workflow_steps),
                    "workflow_key": workflow_key(data.workflow_steps),
                    "success": data.success,
                    "duration": data.duration,
                    "cost": data.cost,
                    "metadata": _json(data.metadata),
                },
            )
            if session is not None:
                session["workflow_count"] += 1
                session["workflow_successes"] += int(data.success)
        case TaskExecuted():
            task_type, inferred = _task_type(data.task_type, data.execution_summary, classifier)
            changes.insert(
                "task_executions",
                {
                    **_base(item),
                    "task_id": data.task_id,
                    "task_type": task_type,
                    "task_type_inferred": inferred,
                    "execution_summary": data.execution_summary,
                    "success": data.success,
                    "error_patterns": list(data.error_patterns),
                    "has_embedding": data.embedding is not None,
                    "metadata": _json(data.metadata),
                },
            )
            if session is not None:
                session["task_count"] += 1
        case DecisionLogged():
            row = changes.keyed(
                "decisions",
                (event.namespace, data.decision_id),
                {"namespace": event.namespace, "decision_id": data.decision_id},
            )
            row.update(
                {
                    "sequence": seq,
                    "event_id": event.id,
                    "occurred_at": event.occurred_at,
                    "agent_id": event.agent_id,
                    "session_id": event.session_id,
                    "actor": data.actor,
                    "decision": data.decision,
                    "rationale": data.rationale,
                    "context": data.context,
                    "alternatives": list(data.alternatives),
                    "task_id": data.task_id,
                }
            )
            if session is not None:
                session["decision_count"] += 1
        case DecisionOutcome():
            row = changes.keyed(
                "decisions",
                (event.namespace, data.decision_id),
                {"namespace": event.namespace, "decision_id": data.decision_id},
            )
            row.update(
                {
                    "outcome_success": data.success,
                    "outcome_notes": data.notes,
                    "outcome_at": event.occurred_at,
                    "outcome_sequence": seq,
                }
            )
        case PatternFeedback():
            changes.insert(
                "feedback",
                {
                    **_base(item),
                    "pattern_id": data.pattern_id,
                    "helpful": data.helpful,
                    "confidence_adjustment": data.confidence_adjustment,
                },
            )
        case SessionStarted():
            row = _own_session(changes, event, data.session_id, seq, session)
            if row["started_at"] is None:
                row["started_at"] = event.occurred_at
            if row["goal"] is None:
                row["goal"] = data.goal
        case SessionEnded():
            row = _own_session(changes, event, data.session_id, seq, session)
            row["ended_at"] = event.occurred_at
            if data.success is not None:
                row["success"] = data.success
        case KnowledgeAdded():
            knowledge_id = data.knowledge_id or event.id
            row = changes.keyed(
                "knowledge",
                (event.namespace, knowledge_id),
                {"namespace": event.namespace, "knowledge_id": knowledge_id},
            )
            row.update(
                {
                    **_base(item),
                    "kind": data.kind,
                    "title": data.title,
                    "content": data.content,
                    "tags": list(data.tags),
                    "metadata": _json(data.metadata),
                }
            )
        case ItemPut():
            _put_item(changes, item, data)
        case ItemDeleted():
            path = join_path(data.path)
            changes.delete(
                "items",
                (event.namespace, path, data.key),
                {"namespace": event.namespace, "path": path, "key": data.key},
            )
        case _:
            pass  # engine-derived events are projected by their own projections


def _put_item(changes: TableChanges, item: SequencedEvent, data: ItemPut) -> None:
    """Fold a put: the item's row holds the new value; ``created_at`` is this put's time
    unless the batch holds the item already (then it keeps the batch's first put since the
    last delete) or the store does (the merge keeps the stored one, see MERGE_RULES)."""
    event = item.event
    path = join_path(data.path)
    row = changes.keyed(
        "items",
        (event.namespace, path, data.key),
        {
            "namespace": event.namespace,
            "path": path,
            "key": data.key,
            "created_at": event.occurred_at,
        },
    )
    row.update(
        {
            "value": _ITEM_VALUE.encode(data.value),
            "text": search_text(data.value, data.index),
            "updated_at": event.occurred_at,
            "expires_at": expires_at(event.occurred_at, data.ttl),
            "ttl_minutes": data.ttl,
            "sequence": item.sequence,
            "event_id": event.id,
            "agent_id": event.agent_id,
        }
    )

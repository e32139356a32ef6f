"""What the vector projection remembers about each vector: the memory behind a label.

A label is the stream sequence of the event that created the memory (unique, deterministic).
Pure mapping from events to memory records lives here; the index lives in ``index_set``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.events import DecisionLogged, Event, KnowledgeAdded, TaskExecuted

__all__ = ["COLLECTIONS", "Memory", "memory_of"]

COLLECTIONS = ("tasks", "decisions", "knowledge")


@dataclass
class Memory:
    """One searchable memory. ``success`` of a decision arrives later with its outcome."""

    id: str
    collection: str
    namespace: str
    text: str
    occurred_at: str
    sequence: int
    success: bool | None = None
    task_id: str | None = None
    task_type: str | None = None
    key: str | None = None
    """Identity that a later event may update or supersede (decision_id, knowledge_id)."""
    reused_count: int = 0
    superseded: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def hit(self, similarity: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "collection": self.collection,
            "namespace": self.namespace,
            "similarity_score": round(similarity, 6),
            "text": self.text,
            "success": self.success,
            "task_id": self.task_id,
            "task_type": self.task_type,
            "occurred_at": self.occurred_at,
            "sequence": self.sequence,
            "reused_count": self.reused_count,
        }


def memory_of(event: Event, sequence: int, task_type: str | None) -> Memory | None:
    """The memory an event creates (None for events that are not memories)."""
    data = event.data
    ns, eid, when = event.namespace, event.id, event.occurred_at.isoformat()
    match data:
        case TaskExecuted():
            return Memory(
                eid,
                "tasks",
                ns,
                data.execution_summary,
                when,
                sequence,
                success=data.success,
                task_id=data.task_id,
                task_type=task_type,
            )
        case DecisionLogged():
            parts = [data.decision, data.rationale, data.context]
            return Memory(
                eid,
                "decisions",
                ns,
                "\n".join(p for p in parts if p),
                when,
                sequence,
                task_id=data.task_id,
                key=data.decision_id,
            )
        case KnowledgeAdded():
            return Memory(
                eid,
                "knowledge",
                ns,
                f"{data.title}\n{data.content}",
                when,
                sequence,
                task_type=data.kind,
                key=data.knowledge_id or eid,
            )
        case _:
            return None

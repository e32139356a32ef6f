"""What the vector projection remembers about each vector: the memory behind a label.

A label is the stream sequence of the event that created the memory (unique, deterministic).
Pure mapping from events to memory records lives here; the index lives in ``index_set``, the
bookkeeping of keys, ids and duplicate texts in ``registry``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field, fields
from typing import Any, get_args

from engine.events import DecisionLogged, Event, KnowledgeAdded, TaskExecuted
from engine.verbs.requests import Collection

__all__ = ["COLLECTIONS", "Memory", "memory_of", "normalised_text"]

COLLECTIONS: tuple[str, ...] = get_args(Collection)


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
    occurrences: int = 1
    """How many times this text was stored in its namespace and collection (a retry with a new
    id, an agent repeating itself): identical texts are one memory (see ``registry``)."""
    merged_ids: list[str] = field(default_factory=list)
    """Envelope ids of the later occurrences, in stream order (``id`` is the first's; a hit
    shows the last one, ``latest_id``)."""
    keys: list[str] = field(default_factory=list)
    """The live keys (decision_id, knowledge_id) that name this memory; a keyed memory whose
    keys were all taken by newer versions is superseded."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Memory:
        """A record written by ``to_json``, also one saved before duplicates collapsed (no
        occurrences, merged ids or keys: the live key was ``key`` unless superseded)."""
        known = {f.name for f in fields(cls)}
        memory = cls(**{k: v for k, v in raw.items() if k in known})
        if "keys" not in raw and memory.key is not None and not memory.superseded:
            memory.keys = [memory.key]
        return memory

    @property
    def latest_id(self) -> str:
        """The envelope id of the latest occurrence (``id`` when stored once): what a hit shows,
        beside the latest task_id and outcome, so a retry that succeeded is named by its own id."""
        return self.merged_ids[-1] if self.merged_ids else self.id

    def hit(self, similarity: float) -> dict[str, Any]:
        return {
            "id": self.latest_id,
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
            "occurrences": self.occurrences,
        }


def normalised_text(text: str) -> str:
    """What makes two memory texts the same: NFKC, case-folded, whitespace runs as one space."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


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
                keys=[data.decision_id],
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
                keys=[data.knowledge_id or eid],
            )
        case _:
            return None

"""The catalogue of event types: name, payload model, current schema version, who publishes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.errors import ForbiddenEventTypeError
from engine.events._base import EventData
from engine.events.agent import (
    DecisionLogged,
    DecisionOutcome,
    KnowledgeAdded,
    PatternFeedback,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
)
from engine.events.cache import CacheEvicted, CachePut
from engine.events.derived import (
    ContextSuggested,
    MemoryRecalled,
    NamespacePurged,
    PatternLearned,
    PatternMatched,
    SessionCompacted,
    SnapshotCreated,
)
from engine.events.items import ItemDeleted, ItemPut
from engine.subjects import DEFAULT_SUBJECTS

__all__ = [
    "AGENT_TYPES",
    "DERIVED_TYPES",
    "EVENT_TYPES",
    "SUBJECT_PREFIX",
    "EventSpec",
    "is_derived",
    "require_agent_type",
    "spec_for",
    "subject_for",
    "type_of",
]

SUBJECT_PREFIX = DEFAULT_SUBJECTS.prefix + "."
"""``memory.``: events of a stream with the default prefix (``StreamSettings.subject_prefix``;
``engine.subjects.EventSubjects`` for any prefix)."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    """What engram knows about one event type."""

    name: str
    model: type[EventData]
    version: int
    publisher: Literal["agent", "engine"]
    """Who may publish it: ``agent`` (anyone, through the SDK, the CLI or a plain client) or
    ``engine`` (derived from the log: the SDK and CLI refuse it, and the engine ignores one it
    did not sign; see engine.signing)."""

    def subject(self, namespace: str | None) -> str:
        """The subject of this type in ``namespace`` under the default prefix
        (``memory.<type>.<namespace>``; the v1 ``memory.<type>`` when None)."""
        return DEFAULT_SUBJECTS.subject(self.name, namespace)


EVENT_TYPES: dict[str, EventSpec] = {
    spec.name: spec
    for spec in (
        EventSpec("workflow.executed", WorkflowExecuted, 1, "agent"),
        EventSpec("task.executed", TaskExecuted, 1, "agent"),
        EventSpec("decision.logged", DecisionLogged, 1, "agent"),
        EventSpec("decision.outcome", DecisionOutcome, 1, "agent"),
        EventSpec("pattern.feedback", PatternFeedback, 1, "agent"),
        EventSpec("session.started", SessionStarted, 1, "agent"),
        EventSpec("session.ended", SessionEnded, 1, "agent"),
        EventSpec("knowledge.added", KnowledgeAdded, 1, "agent"),
        EventSpec("item.put", ItemPut, 1, "agent"),
        EventSpec("item.deleted", ItemDeleted, 1, "agent"),
        EventSpec("cache.put", CachePut, 1, "agent"),
        EventSpec("cache.evicted", CacheEvicted, 1, "agent"),
        EventSpec("pattern.learned", PatternLearned, 1, "engine"),
        EventSpec("session.compacted", SessionCompacted, 1, "engine"),
        EventSpec("snapshot.created", SnapshotCreated, 1, "engine"),
        EventSpec("memory.recalled", MemoryRecalled, 1, "engine"),
        EventSpec("context.suggested", ContextSuggested, 1, "engine"),
        EventSpec("pattern.matched", PatternMatched, 1, "engine"),
        EventSpec("namespace.purged", NamespacePurged, 1, "engine"),
    )
}


AGENT_TYPES: frozenset[str] = frozenset(
    name for name, spec in EVENT_TYPES.items() if spec.publisher == "agent"
)
"""The types agents publish."""

DERIVED_TYPES: frozenset[str] = frozenset(
    name for name, spec in EVENT_TYPES.items() if spec.publisher == "engine"
)
"""The types only the engine publishes (derived from the log)."""


def is_derived(event_type: str) -> bool:
    """True for a type only the engine may publish (False for agent and unknown types)."""
    return event_type in DERIVED_TYPES


def require_agent_type(event_type: str) -> None:
    """Raise ForbiddenEventTypeError when ``event_type`` is one only the engine publishes."""
    if event_type in DERIVED_TYPES:
        raise ForbiddenEventTypeError(
            f"{event_type} is published by the engine only (it is derived from the log); "
            f"agents publish {', '.join(sorted(AGENT_TYPES))}",
            (f"type: {event_type} is published by the engine only",),
        )


def spec_for(event_type: str) -> EventSpec | None:
    """The spec of ``event_type``, or None when engram does not know that type."""
    return EVENT_TYPES.get(event_type)


def subject_for(event_type: str, namespace: str | None) -> str:
    """The NATS subject an event of this type in ``namespace`` is published on under the default
    prefix (``memory.<type>.<namespace>``); the v1 subject ``memory.<type>``, which is still
    read but no longer published on, when ``namespace`` is None."""
    return DEFAULT_SUBJECTS.subject(event_type, namespace)


def type_of(subject: str) -> str | None:
    """The event type carried by ``subject`` (v2 or v1) under the default prefix, or None when
    it is not an event subject."""
    return DEFAULT_SUBJECTS.type_of(subject)

"""The event model: envelope, per-type payloads, the type catalogue, upcasting and the codec."""

from engine.events._base import EventData
from engine.events.agent import (
    DecisionLogged,
    DecisionOutcome,
    KnowledgeAdded,
    KnowledgeKind,
    PatternFeedback,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
)
from engine.events.codec import decode_event, encode_event, validate_event
from engine.events.derived import (
    ContextSuggested,
    MemoryRecalled,
    PatternLearned,
    PatternMatched,
    PatternType,
    SessionCompacted,
    SnapshotCreated,
)
from engine.events.envelope import NAMESPACE_PATTERN, Event, check_namespace, typed_event_model
from engine.events.factory import make_event
from engine.events.registry import EVENT_TYPES, SUBJECT_PREFIX, EventSpec, spec_for, subject_for
from engine.events.upcasting import DEFAULT_UPCASTERS, Upcaster, UpcasterRegistry

__all__ = [
    "DEFAULT_UPCASTERS",
    "EVENT_TYPES",
    "NAMESPACE_PATTERN",
    "SUBJECT_PREFIX",
    "ContextSuggested",
    "DecisionLogged",
    "DecisionOutcome",
    "Event",
    "EventData",
    "EventSpec",
    "KnowledgeAdded",
    "KnowledgeKind",
    "MemoryRecalled",
    "PatternFeedback",
    "PatternLearned",
    "PatternMatched",
    "PatternType",
    "SessionCompacted",
    "SessionEnded",
    "SessionStarted",
    "SnapshotCreated",
    "TaskExecuted",
    "Upcaster",
    "UpcasterRegistry",
    "WorkflowExecuted",
    "check_namespace",
    "decode_event",
    "encode_event",
    "make_event",
    "spec_for",
    "subject_for",
    "typed_event_model",
    "validate_event",
]

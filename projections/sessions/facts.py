"""What an open session remembers about its events: compact facts, folded one event at a time.

Pure (no I/O, no clock, no randomness). An event is kept as a few counters and short excerpts,
never as itself: workflows grouped by (task type, steps) with their outcomes,
tasks with their outcome and error patterns, decisions with their outcome, feedback counts,
knowledge titles. Every collection is capped at ``SessionConfig.max_items`` (what does not fit is
counted in ``omitted``) and every text at ``max_text`` characters, so one open session holds a
bounded amount of memory whatever its length. The events' encoded sizes are summed as they pass
(``original_bytes``), which is what the compression ratio is measured against: the canonical
encoding (``encode_event``) of the event as applied, which is its wire body for events published
at the current schema version (an upcast event counts at its upcast size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    KnowledgeAdded,
    PatternFeedback,
    SessionCompacted,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
)
from projections.records import SequencedEvent

__all__ = [
    "DecisionFact",
    "SessionConfig",
    "SessionFacts",
    "TaskFact",
    "WorkflowFact",
    "session_of",
]


@dataclass(frozen=True, slots=True)
class SessionConfig:
    """How sessions are closed and how much of an open one is kept.

    ``idle_timeout_s``: a session with no event for this long, measured in event time (the
    greatest ``occurred_at`` seen in the stream so far, never the wall clock), is compacted when
    a later event reveals it; None turns idle compaction off. ``max_open_sessions``: beyond it,
    the least recently active session is compacted early (reason ``evicted``).
    """

    idle_timeout_s: float | None = 3_600.0
    max_open_sessions: int = 10_000
    max_items: int = 200
    max_text: int = 160
    compression_level: int = 9

    def __post_init__(self) -> None:
        if self.idle_timeout_s is not None and self.idle_timeout_s < 0:
            raise ValueError("idle_timeout_s must be >= 0 or None")
        if self.max_open_sessions < 1 or self.max_items < 1 or self.max_text < 1:
            raise ValueError("max_open_sessions, max_items and max_text must be >= 1")
        if not 0 <= self.compression_level <= 9:
            raise ValueError("compression_level must be 0..9")


def session_of(event: Event) -> str | None:
    """The session an event belongs to: ``data.session_id`` for session.started/ended, else the
    envelope's ``session_id``. None for events of no session and for session.compacted (the
    engine's own record of a session is not one of its memories)."""
    data = event.data
    if isinstance(data, SessionStarted | SessionEnded):
        return data.session_id
    if isinstance(data, SessionCompacted):
        return None
    return event.session_id


@dataclass(slots=True)
class WorkflowFact:
    """Runs of one step sequence for one task type within the session."""

    task_type: str
    steps: list[str]
    runs: int = 0
    successes: int = 0
    duration_sum: float = 0.0
    cost_sum: float = 0.0
    cost_count: int = 0


@dataclass(slots=True)
class TaskFact:
    task_id: str
    task_type: str
    success: bool
    error_patterns: list[str]
    summary: str


@dataclass(slots=True)
class DecisionFact:
    """A decision logged in the session and/or its outcome (either may come alone)."""

    decision_id: str
    actor: str | None = None
    decision: str | None = None
    task_id: str | None = None
    alternatives: int = 0
    success: bool | None = None
    notes: str | None = None


@dataclass(slots=True)
class SessionFacts:
    """One open session segment (events from ``first_sequence`` on, until it is compacted)."""

    namespace: str
    session_id: str
    first_sequence: int
    last_sequence: int = 0
    started_at: str = ""
    last_event_at: str = ""
    last_event_ts: float = 0.0
    last_active_ts: float = 0.0
    """The stream clock when the session last had an event (what idleness is measured from)."""
    goal: str | None = None
    outcome: bool | None = None
    num_events: int = 0
    original_bytes: int = 0
    types: dict[str, int] = field(default_factory=dict)
    agents: list[str] = field(default_factory=list)
    workflows: dict[tuple[str, ...], WorkflowFact] = field(default_factory=dict)
    """(task type, *steps) -> its runs."""
    tasks: list[TaskFact] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    decisions: dict[str, DecisionFact] = field(default_factory=dict)
    feedback: list[int] = field(default_factory=lambda: [0, 0])
    """[helpful, unhelpful] pattern.feedback votes."""
    knowledge: list[str] = field(default_factory=list)
    omitted: dict[str, int] = field(default_factory=dict)

    def add(
        self,
        item: SequencedEvent,
        size: int,
        clock: float,
        config: SessionConfig,
        classify: Callable[[str], str],
    ) -> None:
        """Fold one of the session's events in (``size``: its encoded length in bytes;
        ``classify``: the task type of a text, for events that do not name theirs)."""
        event, data = item.event, item.event.data
        when, ts = event.occurred_at.isoformat(), event.occurred_at.timestamp()
        if not self.num_events:
            self.started_at = when
        if not self.num_events or ts >= self.last_event_ts:
            self.last_event_at, self.last_event_ts = when, ts
        self.last_sequence = item.sequence
        self.last_active_ts = clock
        self.num_events += 1
        self.original_bytes += size
        self.types[event.type] = self.types.get(event.type, 0) + 1
        if event.agent_id is not None and event.agent_id not in self.agents:
            self._append(self.agents, event.agent_id, "agents", config)
        cut = config.max_text
        match data:
            case WorkflowExecuted():
                task_type = data.task_type or classify(data.request or "")
                key = (task_type, *data.workflow_steps)
                fact = self.workflows.get(key)
                if fact is None:
                    if not self._room(len(self.workflows), "workflows", config):
                        return
                    fact = self.workflows[key] = WorkflowFact(task_type, list(data.workflow_steps))
                fact.runs += 1
                fact.successes += int(data.success)
                fact.duration_sum += data.duration
                if data.cost is not None:
                    fact.cost_sum += data.cost
                    fact.cost_count += 1
            case TaskExecuted():
                task_type = data.task_type or classify(data.execution_summary)
                errors = [e[:cut] for e in data.error_patterns[: config.max_items]]
                task = TaskFact(
                    data.task_id, task_type, data.success, errors, data.execution_summary[:cut]
                )
                self._append(self.tasks, task, "tasks", config)
                for error in dict.fromkeys(errors):
                    if error in self.errors or self._room(len(self.errors), "errors", config):
                        self.errors[error] = self.errors.get(error, 0) + 1
            case DecisionLogged():
                decision = self._decision(data.decision_id, config)
                if decision is not None:
                    decision.actor = data.actor[:cut]
                    decision.decision = data.decision[:cut]
                    decision.task_id = data.task_id
                    decision.alternatives = len(data.alternatives)
            case DecisionOutcome():
                decision = self._decision(data.decision_id, config)
                if decision is not None:
                    decision.success = data.success
                    decision.notes = data.notes[:cut] or None
            case PatternFeedback():
                self.feedback[0 if data.helpful else 1] += 1
            case KnowledgeAdded():
                self._append(self.knowledge, data.title[:cut], "knowledge", config)
            case SessionStarted():
                if data.goal:
                    self.goal = data.goal[:cut]
            case SessionEnded():
                self.outcome = data.success
            case _:
                pass

    def _decision(self, decision_id: str, config: SessionConfig) -> DecisionFact | None:
        found = self.decisions.get(decision_id)
        if found is None and self._room(len(self.decisions), "decisions", config):
            found = self.decisions[decision_id] = DecisionFact(decision_id)
        return found

    def _room(self, used: int, what: str, config: SessionConfig) -> bool:
        if used < config.max_items:
            return True
        self.omitted[what] = self.omitted.get(what, 0) + 1
        return False

    def _append(self, items: list[Any], value: Any, what: str, config: SessionConfig) -> None:
        if self._room(len(items), what, config):
            items.append(value)

"""One line of text per event, for the operational tier of an assembled context."""

from __future__ import annotations

from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    KnowledgeAdded,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
)

__all__ = ["describe_event"]


def _outcome(success: bool | None) -> str:
    return "unknown outcome" if success is None else ("succeeded" if success else "failed")


def describe_event(event: Event, *, active: bool = False) -> str:
    """A short sentence saying what happened (who, what, outcome)."""
    data, who = event.data, event.agent_id or "an agent"
    match data:
        case WorkflowExecuted():
            what = data.task_type or (data.request or "a task")[:80]
            return (
                f"{who} ran {' -> '.join(data.workflow_steps)} for {what}: "
                f"{_outcome(data.success)} in {data.duration:.1f} s"
            )
        case TaskExecuted():
            return f"{who} {_outcome(data.success)} task {data.task_id}: {data.execution_summary}"
        case DecisionLogged():
            return f"{data.actor} decided: {data.decision}" + (
                f" because {data.rationale}" if data.rationale else ""
            )
        case DecisionOutcome():
            return f"decision {data.decision_id} {_outcome(data.success)}" + (
                f": {data.notes}" if data.notes else ""
            )
        case SessionStarted():
            state = "is active" if active else "started"
            goal = f" (goal: {data.goal})" if data.goal else ""
            return f"session {data.session_id} {state}{goal}"
        case SessionEnded():
            return f"session {data.session_id} ended, {_outcome(data.success)}"
        case KnowledgeAdded():
            return f"{data.kind} added: {data.title}"
        case _:
            return f"{event.type} by {who}"

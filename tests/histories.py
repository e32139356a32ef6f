"""Deterministic, realistic event histories for end-to-end tests."""

from __future__ import annotations

from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    EventData,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    make_event,
)

__all__ = ["realistic_history"]


def realistic_history(start: int, count: int) -> list[Event]:
    """A realistic mix: sessions with workflows, tasks and decisions with outcomes."""
    events: list[Event] = []
    for i in range(start, start + count):
        ns = ("default", "team-a")[i % 2]
        session = f"s{i // 10}"
        kind = i % 10
        if kind == 0:
            data: EventData = SessionStarted(session_id=session)
        elif kind == 9:
            data = SessionEnded(session_id=session, success=i % 3 == 0)
        elif kind in (1, 2, 3, 4):
            data = WorkflowExecuted(
                request="Fix the crash in the parser" if i % 4 else None,
                workflow_steps=["plan", "code", f"v{i % 5}"],
                success=i % 7 != 0,
                duration=float(i % 50),
            )
        elif kind in (5, 6):
            data = TaskExecuted(
                task_id=f"t{i}", execution_summary=f"did thing {i}", success=i % 5 != 0
            )
        elif kind == 7:
            data = DecisionLogged(decision_id=f"d{i // 10}", actor="planner", decision="go")
        else:
            data = DecisionOutcome(decision_id=f"d{i // 10}", success=True)
        events.append(make_event(data, namespace=ns, session_id=session, event_id=f"e{i}"))
    return events

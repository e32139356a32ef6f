"""Reading compacted sessions: pure functions over SessionState (the ``sessions`` query verb's
answer). Results are JSON-ready dicts; metrics use the SessionMetrics field names.
"""

from __future__ import annotations

from typing import Any

from projections.learning.state import workflow_pattern_id
from projections.sessions.state import SessionState
from projections.sessions.summary import CompactedSession, decompress_summary
from projections.workflows import workflow_key

__all__ = [
    "compacted_sessions",
    "record_view",
    "sessions_overview",
    "summary_view",
]


_DEFAULTS: dict[str, Any] = {
    "goal": None,
    "success": None,
    "agents": [],
    "events": {},
    "workflows": [],
    "tasks": [],
    "error_patterns": {},
    "decisions": [],
    "knowledge": [],
    "omitted": {},
}


def summary_view(record: CompactedSession) -> dict[str, Any]:
    """The record's summary with every part present, and what the stored form leaves to be
    derived: ``patterns`` as objects (steps, runs, task types, the learner's pattern ids),
    per-step tallies (``steps``) and ``task_outcomes``."""
    stored = decompress_summary(record.blob)
    view = {**_DEFAULTS, **stored}
    workflows: list[dict[str, Any]] = view["workflows"]
    patterns = []
    for index in stored.get("patterns", []):
        wf = workflows[index]
        key = workflow_key(wf["workflow_steps"])
        task_types = sorted(wf["task_types"])
        patterns.append(
            {
                "workflow_steps": wf["workflow_steps"],
                "runs": wf["runs"],
                "successes": wf["successes"],
                "task_types": task_types,
                "pattern_ids": [workflow_pattern_id(record.namespace, t, key) for t in task_types],
            }
        )
    steps: dict[str, dict[str, int]] = {}
    for wf in workflows:
        for step in dict.fromkeys(wf["workflow_steps"]):
            tally = steps.setdefault(step, {"runs": 0, "successes": 0})
            tally["runs"] += wf["runs"]
            tally["successes"] += wf["successes"]
    successes = sum(1 for t in view["tasks"] if t["success"])
    feedback = stored.get("feedback", {})
    view.update(
        patterns=patterns,
        steps=steps,
        task_outcomes={"successes": successes, "failures": len(view["tasks"]) - successes},
        feedback={"helpful": feedback.get("helpful", 0), "unhelpful": feedback.get("unhelpful", 0)},
    )
    return view


def record_view(record: CompactedSession, state: SessionState, *, summary: bool) -> dict[str, Any]:
    """One compacted session: where it sits, its SessionMetrics and (optionally) its summary."""
    view: dict[str, Any] = {
        "event_id": record.event_id,
        "namespace": record.namespace,
        "session_id": record.session_id,
        "reason": record.reason,
        "first_sequence": record.first_sequence,
        "last_sequence": record.last_sequence,
        "closed_by_sequence": record.closed_by_sequence,
        "closed_at": record.closed_at,
        "announced": record.event_id in state.announced,
        "metrics": record.metrics().model_dump(mode="json"),
    }
    if summary:
        view["summary"] = summary_view(record)
    return view


def compacted_sessions(
    state: SessionState,
    namespace: str,
    session_id: str | None = None,
    *,
    limit: int | None = None,
    summary: bool = True,
) -> list[dict[str, Any]]:
    """Compacted sessions of ``namespace`` (of one ``session_id`` when given: a session that
    went idle and resumed has several records), newest first, at most ``limit``; [] when none
    matches. Open sessions are not listed (see ``sessions_overview``)."""
    found = [
        r
        for r in reversed(state.records.values())
        if r.namespace == namespace and (session_id is None or r.session_id == session_id)
    ]
    if limit is not None:
        found = found[:limit]
    return [record_view(r, state, summary=summary) for r in found]


def sessions_overview(state: SessionState, namespace: str) -> dict[str, Any]:
    """Totals of ``namespace``: open segments, compacted records, bytes before and after."""
    records = [r for r in state.records.values() if r.namespace == namespace]
    original = sum(r.original_size_bytes for r in records)
    compressed = sum(r.compressed_size_bytes for r in records)
    return {
        "open_sessions": len(state.open_sessions(namespace)),
        "compacted_sessions": len(records),
        "original_size_bytes": original,
        "compressed_size_bytes": compressed,
        "compression_ratio": max(0.0, 1.0 - compressed / original) if original else 0.0,
        "pending_announcements": sum(1 for r in records if r.event_id in state.pending),
    }

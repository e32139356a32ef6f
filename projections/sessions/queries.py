"""Reading compacted sessions: pure functions over SessionState, and the ``sessions`` query verb.

Results are JSON-ready dicts; metrics use seed 000's SessionMetrics field names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import UsageError
from projections.learning.state import workflow_pattern_id
from projections.sessions.state import SessionState
from projections.sessions.summary import CompactedSession, decompress_summary
from projections.workflows import workflow_key

if TYPE_CHECKING:
    from projections.sessions.projection import SessionCompactor

__all__ = [
    "compacted_sessions",
    "record_view",
    "sessions_overview",
    "sessions_verb",
    "summary_view",
]

Handler = Callable[[Mapping[str, Any]], Awaitable[dict[str, Any]]]


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


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{key} must be a string, got {type(value).__name__}")
    return value


def sessions_verb(compactor: SessionCompactor) -> Handler:
    """The ``sessions`` query verb. Payload: ``namespace`` (default "default"), ``session``
    (or ``session_id``), ``limit`` (default 50), ``summary`` (default true). Reply:
    ``{"sessions": [...], "overview": {...}}``. Raises UsageError on a malformed payload."""

    async def sessions(payload: Mapping[str, Any]) -> dict[str, Any]:
        namespace = _text(payload, "namespace") or "default"
        session_id = _text(payload, "session") or _text(payload, "session_id")
        limit = payload.get("limit", 50)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise UsageError(f"limit must be a positive integer, got {limit!r}")
        with_summary = payload.get("summary", True)
        if not isinstance(with_summary, bool):
            raise UsageError("summary must be true or false")

        def read(state: SessionState) -> dict[str, Any]:
            return {
                "sessions": compacted_sessions(
                    state, namespace, session_id, limit=limit, summary=with_summary
                ),
                "overview": sessions_overview(state, namespace),
            }

        # Off the event loop: reading takes the state's lock and decompresses summaries.
        return await asyncio.to_thread(compactor.read, read)

    return sessions

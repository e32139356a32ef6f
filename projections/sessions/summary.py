"""Closing a session: its facts become one summary, stored compressed, with SessionMetrics.

The summary is canonical JSON (sorted keys, compact separators) compressed with zlib, so the same
facts give the same bytes and the same sizes on every engine (with the same zlib). Every figure
of a record is decided by the events alone except ``compaction_duration_ms``: the time this
engine took to build and compress the summary, measured with ``time.perf_counter``. It is the
only non-deterministic number; it stays out of the record's event id and out of
``SessionState.digest``, and a record adopts the figure actually published on the stream once
its session.compacted event is read back, so engines converge on the published one.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from engine.events import SessionCompacted
from projections.learning.state import workflow_pattern_id
from projections.sessions.facts import SessionConfig, SessionFacts
from projections.tables.rows import workflow_key

__all__ = [
    "CompactedSession",
    "Reason",
    "compact",
    "compaction_event_id",
    "decompress_summary",
    "summarise",
]

Reason = Literal["ended", "idle", "evicted"]
SUMMARY_FORMAT = 1
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compaction_event_id(namespace: str, session_id: str, first: int, closed_by: int) -> str:
    """The session.compacted event id of one session segment: the same on every engine.

    A segment is identified by the stream sequence of its first event (segments of a session
    are disjoint) and of the event that closed it; a session that went idle and resumed has
    several segments, hence several records."""
    digest = hashlib.sha256(f"{namespace}\x00{session_id}".encode()).hexdigest()[:20]
    return f"session-{digest}-{first}-{closed_by}"


@dataclass(frozen=True, slots=True)
class CompactedSession:
    """One compacted session segment: where it sits, its metrics, and its compressed summary."""

    event_id: str
    namespace: str
    session_id: str
    reason: str
    first_sequence: int
    last_sequence: int
    closed_by_sequence: int
    closed_at: str
    """``occurred_at`` of the closing event (the session.compacted event carries it)."""
    original_size_bytes: int
    compressed_size_bytes: int
    num_memories: int
    num_patterns_extracted: int
    compaction_duration_ms: float
    blob: bytes

    @property
    def compression_ratio(self) -> float:
        """1 - compressed / original, clamped to 0..1 (0 when the summary is not smaller)."""
        if self.original_size_bytes <= 0:
            return 0.0
        return min(1.0, max(0.0, 1.0 - self.compressed_size_bytes / self.original_size_bytes))

    def metrics(self) -> SessionCompacted:
        """The SessionMetrics payload of the session.compacted event."""
        return SessionCompacted(
            session_id=self.session_id,
            original_size_bytes=self.original_size_bytes,
            compressed_size_bytes=self.compressed_size_bytes,
            compression_ratio=self.compression_ratio,
            num_memories=self.num_memories,
            num_patterns_extracted=self.num_patterns_extracted,
            compaction_duration_ms=self.compaction_duration_ms,
        )


def _patterns(facts: SessionFacts) -> list[dict[str, Any]]:
    """Distinct step sequences with at least one successful run in the session."""
    found: dict[str, dict[str, Any]] = {}
    for wf in facts.workflows.values():
        if not wf.successes:
            continue
        key = workflow_key(wf.steps)
        entry = found.setdefault(
            key,
            {
                "workflow_steps": wf.steps,
                "task_types": [],
                "runs": 0,
                "successes": 0,
                "pattern_ids": [],
            },
        )
        entry["task_types"].append(wf.task_type)
        entry["pattern_ids"].append(workflow_pattern_id(facts.namespace, wf.task_type, key))
        entry["runs"] += wf.runs
        entry["successes"] += wf.successes
    return [found[k] for k in sorted(found)]


def summarise(facts: SessionFacts, reason: Reason, closed_by: int) -> dict[str, Any]:
    """The JSON-ready summary of a session segment (what ``compacted_sessions`` shows)."""
    tasks_ok = sum(1 for t in facts.tasks if t.success)
    return {
        "format": SUMMARY_FORMAT,
        "namespace": facts.namespace,
        "session_id": facts.session_id,
        "reason": reason,
        "first_sequence": facts.first_sequence,
        "last_sequence": facts.last_sequence,
        "closed_by_sequence": closed_by,
        "started_at": facts.started_at,
        "last_event_at": facts.last_event_at,
        "goal": facts.goal,
        "success": facts.outcome,
        "agents": facts.agents,
        "events": facts.types,
        "workflows": [
            {
                "task_type": wf.task_type,
                "workflow_steps": wf.steps,
                "runs": wf.runs,
                "successes": wf.successes,
                "total_duration": round(wf.duration_sum, 6),
                "total_cost": round(wf.cost_sum, 6) if wf.cost_count else None,
            }
            for wf in facts.workflows.values()
        ],
        "steps": {step: {"runs": r, "successes": s} for step, (r, s) in facts.steps.items()},
        "tasks": [
            {
                "task_id": t.task_id,
                "task_type": t.task_type,
                "success": t.success,
                "error_patterns": t.error_patterns,
                "summary": t.summary,
            }
            for t in facts.tasks
        ],
        "task_outcomes": {"successes": tasks_ok, "failures": len(facts.tasks) - tasks_ok},
        "error_patterns": facts.errors,
        "decisions": [
            {
                "decision_id": d.decision_id,
                "actor": d.actor,
                "decision": d.decision,
                "task_id": d.task_id,
                "alternatives": d.alternatives,
                "success": d.success,
                "notes": d.notes,
            }
            for d in facts.decisions.values()
        ],
        "feedback": {"helpful": facts.feedback[0], "unhelpful": facts.feedback[1]},
        "knowledge": facts.knowledge,
        "patterns": _patterns(facts),
        "omitted": facts.omitted,
    }


def compress_summary(summary: dict[str, Any], level: int) -> bytes:
    return zlib.compress(_CANONICAL.encode(summary).encode(), level)


def decompress_summary(blob: bytes) -> dict[str, Any]:
    """The summary a record stores (raises zlib.error / ValueError when the blob is corrupt)."""
    value: dict[str, Any] = json.loads(zlib.decompress(blob))
    return value


def compact(
    facts: SessionFacts, reason: Reason, closed_by: int, closed_at: str, config: SessionConfig
) -> CompactedSession:
    """Summarise and compress ``facts``; the record's figures are all decided by the events
    except ``compaction_duration_ms`` (see the module docstring)."""
    began = time.perf_counter()
    summary = summarise(facts, reason, closed_by)
    blob = compress_summary(summary, config.compression_level)
    elapsed_ms = (time.perf_counter() - began) * 1_000.0
    return CompactedSession(
        event_id=compaction_event_id(
            facts.namespace, facts.session_id, facts.first_sequence, closed_by
        ),
        namespace=facts.namespace,
        session_id=facts.session_id,
        reason=reason,
        first_sequence=facts.first_sequence,
        last_sequence=facts.last_sequence,
        closed_by_sequence=closed_by,
        closed_at=closed_at,
        original_size_bytes=facts.original_bytes,
        compressed_size_bytes=len(blob),
        num_memories=facts.num_events,
        num_patterns_extracted=len(summary["patterns"]),
        compaction_duration_ms=elapsed_ms,
        blob=blob,
    )

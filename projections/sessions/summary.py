"""Closing a session: its facts become one summary, stored compressed, with SessionMetrics.

The summary is canonical JSON (sorted keys, compact separators) compressed with zlib primed with
a preset dictionary, so the same facts give the same bytes and sizes on every engine built on
the same zlib (a different zlib build may pick other bytes of the same summary: the sizes of
records created on it could differ by a few bytes, which is why the published figure, not a
recomputed one, is what ``session.compacted`` carries). Every figure of a record is decided by the
events alone except ``compaction_duration_ms``: the time this engine took to build and compress
the summary, measured with ``time.perf_counter``. It is the only non-deterministic number; it
stays out of the record's event id and out of ``persistence.state_digest``, and a record adopts
the figure actually published once its session.compacted event is read back from the stream, so
engines converge on the published one.
"""

from __future__ import annotations

import hashlib
import json
import time
import zlib
from dataclasses import dataclass
from typing import Any, Literal

from engine.events import SessionCompacted
from projections.sessions.facts import SessionConfig, SessionFacts

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
_ZDICT = (
    b'"+00:00","decision_id":"actor":"alternatives":"notes":"task_id":"summary":"error_patterns":'
    b'"success":false},{"task_type":"code_generation","debugging","testing","deployment",'
    b'"data_analysis","system_design","documentation","optimization","general","cost":'
    b'"duration":"runs":"successes":"task_types":{"workflow_steps":["knowledge":["omitted":{'
    b'"feedback":{"helpful":"unhelpful":"events":{"decision.logged":"decision.outcome":'
    b'"knowledge.added":"pattern.feedback":"task.executed":"session.ended":1,'
    b'"session.started":1,"workflow.executed":"format":1,"goal":"last_event_at":"'
    b'"patterns":[0,1,2],"started_at":"success":true,"tasks":[{"decisions":[{"workflows":[{'
    b'{"agents":["'
)
"""A preset dictionary for zlib: the summary's keys and common values. Summaries are small
(hundreds of bytes), where deflate would otherwise spend much of its output on the first
occurrence of every key. Part of ``SUMMARY_FORMAT``: changing it needs a new format."""


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


def _workflows(facts: SessionFacts) -> list[dict[str, Any]]:
    """One entry per distinct step sequence (first seen first), with its task types."""
    by_steps: dict[tuple[str, ...], dict[str, Any]] = {}
    for wf in facts.workflows.values():
        entry = by_steps.setdefault(
            tuple(wf.steps),
            {"workflow_steps": wf.steps, "runs": 0, "successes": 0, "duration": 0.0},
        )
        entry["runs"] += wf.runs
        entry["successes"] += wf.successes
        entry["duration"] = round(entry["duration"] + wf.duration_sum, 6)
        if wf.cost_count:
            entry["cost"] = round(entry.get("cost", 0.0) + wf.cost_sum, 6)
        entry.setdefault("task_types", {})[wf.task_type] = [wf.runs, wf.successes]
    return list(by_steps.values())


def _drop_empty(value: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in value.items() if v not in (None, [], {}, 0)}


def summarise(facts: SessionFacts) -> dict[str, Any]:
    """The stored summary of a session segment: compact (empty parts are left out; what can be
    derived, such as pattern ids and per-step tallies, is derived when read, see
    ``queries.summary_view``). ``patterns`` indexes ``workflows``: the distinct step sequences
    with at least one successful run in the session."""
    workflows = _workflows(facts)
    summary = {
        "format": SUMMARY_FORMAT,
        "started_at": facts.started_at,
        "last_event_at": facts.last_event_at,
        "goal": facts.goal,
        "agents": facts.agents,
        "events": facts.types,
        "workflows": workflows,
        "patterns": [i for i, wf in enumerate(workflows) if wf["successes"]],
        "tasks": [
            _drop_empty(
                {
                    "task_id": t.task_id,
                    "task_type": t.task_type,
                    "error_patterns": t.error_patterns,
                    "summary": t.summary,
                }
            )
            | {"success": t.success}
            for t in facts.tasks
        ],
        "error_patterns": facts.errors,
        "decisions": [
            _drop_empty(
                {
                    "decision_id": d.decision_id,
                    "actor": d.actor,
                    "decision": d.decision,
                    "task_id": d.task_id,
                    "alternatives": d.alternatives,
                    "notes": d.notes,
                }
            )
            | ({} if d.success is None else {"success": d.success})
            for d in facts.decisions.values()
        ],
        "feedback": _drop_empty({"helpful": facts.feedback[0], "unhelpful": facts.feedback[1]}),
        "knowledge": facts.knowledge,
        "omitted": facts.omitted,
    }
    summary = _drop_empty(summary)
    if facts.outcome is not None:
        summary["success"] = facts.outcome
    return summary


def compress_summary(summary: dict[str, Any], level: int) -> bytes:
    """zlib (with its checksum) over the canonical JSON, primed with ``_ZDICT``."""
    compressor = zlib.compressobj(level, zdict=_ZDICT)
    body = _CANONICAL.encode(summary).encode()
    return compressor.compress(body) + compressor.flush()


def decompress_summary(blob: bytes) -> dict[str, Any]:
    """The summary a record stores (raises zlib.error / ValueError when the blob is corrupt)."""
    decompressor = zlib.decompressobj(zdict=_ZDICT)
    value: dict[str, Any] = json.loads(decompressor.decompress(blob) + decompressor.flush())
    return value


def compact(
    facts: SessionFacts, reason: Reason, closed_by: int, closed_at: str, config: SessionConfig
) -> CompactedSession:
    """Summarise and compress ``facts``; the record's figures are all decided by the events
    except ``compaction_duration_ms`` (see the module docstring)."""
    began = time.perf_counter()
    summary = summarise(facts)
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
        num_patterns_extracted=len(summary.get("patterns", [])),
        compaction_duration_ms=elapsed_ms,
        blob=blob,
    )

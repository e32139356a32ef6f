"""Session compaction: ended or idle sessions summarised into compressed records with metrics."""

from projections.sessions.facts import SessionConfig, SessionFacts, session_of
from projections.sessions.persistence import load_state, save_state, state_digest
from projections.sessions.projection import SessionCompactor, compaction_event
from projections.sessions.queries import compacted_sessions, sessions_overview
from projections.sessions.state import SessionState
from projections.sessions.summary import (
    CompactedSession,
    compaction_event_id,
    decompress_summary,
    summarise,
)

__all__ = [
    "CompactedSession",
    "SessionCompactor",
    "SessionConfig",
    "SessionFacts",
    "SessionState",
    "compacted_sessions",
    "compaction_event",
    "compaction_event_id",
    "decompress_summary",
    "load_state",
    "save_state",
    "session_of",
    "sessions_overview",
    "state_digest",
    "summarise",
]

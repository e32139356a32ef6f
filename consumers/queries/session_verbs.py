"""The ``sessions`` query verb, answered from the session compactor's state."""

from __future__ import annotations

import asyncio
from typing import Any

from consumers.queries.dispatch import QueryDispatcher
from engine.verbs.requests import SessionsRequest
from projections.sessions import SessionCompactor, compacted_sessions, sessions_overview
from projections.sessions.state import SessionState

__all__ = ["register_session_verbs"]


def register_session_verbs(dispatcher: QueryDispatcher, compactor: SessionCompactor) -> None:
    """Serve ``sessions``: a namespace's compacted sessions (of one session when ``session``,
    or its older spelling ``session_id``, is given), newest first, and the namespace's totals."""

    async def sessions(r: SessionsRequest) -> dict[str, Any]:
        session_id = r.session or r.session_id

        def read(state: SessionState) -> dict[str, Any]:
            return {
                "sessions": compacted_sessions(
                    state, r.namespace, session_id, limit=r.limit, summary=r.summary
                ),
                "overview": sessions_overview(state, r.namespace),
            }

        # Off the event loop: reading takes the state's lock and decompresses summaries.
        return await asyncio.to_thread(compactor.read, read)

    dispatcher.register("sessions", sessions)

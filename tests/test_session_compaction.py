"""Session compaction (issue 6): honest SessionMetrics, idle sessions closed by event
time, deterministic compactions announced once, and a state that survives save and restore.
(On a real server: tests/test_session_announcements.py. Any batching, restarts and crashes with
compactions read back: the Projection contract, tests/test_projection_contract.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from consumers.queries.dispatch import QueryDispatcher
from consumers.queries.session_verbs import register_session_verbs
from engine.errors import ProjectionError, UsageError
from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    EventData,
    SessionCompacted,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    decode_event,
    encode_event,
    make_event,
)
from projections.learning import workflow_pattern_id
from projections.records import SequencedEvent
from projections.sessions import (
    SessionCompactor,
    SessionConfig,
    SessionState,
    compaction_event,
    compaction_event_id,
    decompress_summary,
    state_digest,
)
from projections.sessions.persistence import RECORDS_FILE
from projections.sessions.queries import summary_view
from projections.workflows import workflow_key

T0 = datetime(2026, 11, 20, tzinfo=UTC)
STEPS_A = ["plan", "code", "test"]
STEPS_B = ["plan", "code", "review", "deploy"]
STEPS_C = ["guess"]


def _seq(events: Sequence[Event], start: int = 1) -> list[SequencedEvent]:
    return [SequencedEvent(start + i, T0, e) for i, e in enumerate(events)]


def _ev(data: EventData, second: float, session: str | None = "s1", ns: str = "default") -> Event:
    return make_event(
        data,
        namespace=ns,
        session_id=session,
        agent_id="orch-1",
        occurred_at=T0 + timedelta(seconds=second),
    )


def _wf(steps: list[str], ok: bool, second: float, session: str | None = "s1") -> Event:
    data = WorkflowExecuted(
        task_type="code_generation",
        request="Implement the REST API",
        workflow_steps=steps,
        success=ok,
        duration=40.0 + second,
        cost=0.01,
        metadata={"validation_score": 0.95},
    )
    return _ev(data, second, session)


def known_session() -> list[Event]:
    """A session of 16 memories: 10 workflows over three step sequences (C never succeeds),
    two tasks (one failing with two error patterns), one decision with its outcome."""
    plan = [(STEPS_A, True), (STEPS_A, False), (STEPS_B, True), (STEPS_C, False)] * 2
    plan += [(STEPS_A, True), (STEPS_B, False)]
    errors = ["timeout", "flaky test"]
    failed = TaskExecuted(task_id="t2", execution_summary="x", success=False, error_patterns=errors)
    return [
        _ev(SessionStarted(session_id="s1", goal="ship the REST API"), 0, None),
        *(_wf(steps, ok, i) for i, (steps, ok) in enumerate(plan, start=1)),
        _ev(TaskExecuted(task_id="t1", execution_summary="wrote it", success=True), 11),
        _ev(failed, 12),
        _ev(DecisionLogged(decision_id="d1", actor="lead", decision="use REST"), 13),
        _ev(DecisionOutcome(decision_id="d1", success=True, notes="worked"), 14),
        _ev(SessionEnded(session_id="s1", success=True), 15, None),
    ]


def _apply(state: SessionState, items: Sequence[SequencedEvent]) -> SessionState:
    for item in items:
        state.apply(item)
    return state


def test_metrics_of_a_known_session_are_exact() -> None:
    """Sizes are the encoded events' bytes and the stored blob's length; ratio, memories and
    patterns follow; events of other sessions and of no session are not counted."""
    session = known_session()
    noise = [
        _wf(["x"], True, 3.5, "s2"),
        _wf(["y"], True, 4.5, None),
        _ev(TaskExecuted(task_id="t9", execution_summary="other", success=True), 5.5, "s1", "ns2"),
    ]
    history = sorted([*session, *noise], key=lambda e: e.occurred_at)
    state = _apply(SessionState(), _seq(history))
    [record] = state.take_pending()
    expected_original = sum(len(encode_event(e)) for e in session)
    assert record.original_size_bytes == expected_original
    assert record.compressed_size_bytes == len(record.blob)
    assert record.compression_ratio == 1 - len(record.blob) / expected_original
    assert 0.5 < record.compression_ratio < 1.0
    assert record.num_memories == 16
    assert record.num_patterns_extracted == 2  # A and B succeeded at least once; C never
    assert record.reason == "ended" and record.closed_by_sequence == len(history)
    summary = summary_view(record)
    assert [p["workflow_steps"] for p in summary["patterns"]] == [STEPS_A, STEPS_B]
    assert decompress_summary(record.blob)["patterns"] == [0, 1]  # stored as indices
    learner_id = workflow_pattern_id("default", "code_generation", workflow_key(STEPS_A))
    assert summary["patterns"][0]["pattern_ids"] == [learner_id]
    runs = {tuple(w["workflow_steps"]): (w["runs"], w["successes"]) for w in summary["workflows"]}
    assert runs == {tuple(STEPS_A): (5, 3), tuple(STEPS_B): (3, 2), tuple(STEPS_C): (2, 0)}
    assert summary["steps"]["plan"] == {"runs": 8, "successes": 5}
    assert summary["error_patterns"] == {"timeout": 1, "flaky test": 1}
    assert summary["task_outcomes"] == {"successes": 1, "failures": 1}
    assert summary["decisions"][0]["decision"] == "use REST"
    assert summary["decisions"][0]["success"] is True
    assert summary["goal"] == "ship the REST API" and summary["success"] is True
    assert ("default", "s1") not in state.open  # facts dropped once compacted
    event = compaction_event(record)
    assert event.id == compaction_event_id("default", "s1", 1, len(history))
    assert decode_event(encode_event(event), "memory.session.compacted") == event
    assert isinstance(event.data, SessionCompacted)
    assert event.data.original_size_bytes == expected_original


def test_idle_session_is_compacted_by_event_time_only() -> None:
    """With a 60 s idle timeout, a session closes when a later event (any session's) is more
    than 60 s of event time after its last one; the wall clock never closes it."""
    state = SessionState(SessionConfig(idle_timeout_s=60))
    _apply(state, _seq([_wf(STEPS_A, True, 0), _wf(STEPS_A, True, 5)]))
    # Events dated T0 (days before the wall clock): by wall time s1 would be long idle.
    _apply(state, _seq([_ev(SessionStarted(session_id="s2"), 65, None)], start=3))
    assert state.take_pending() == [] and ("default", "s1") in state.open  # 60 s exactly: open
    _apply(state, _seq([_ev(SessionStarted(session_id="s3"), 65.5, None)], start=4))
    [record] = state.take_pending()
    assert (record.session_id, record.reason, record.closed_by_sequence) == ("s1", "idle", 4)
    assert record.num_memories == 2 and ("default", "s1") not in state.open
    # s1 resumes: a new segment with its own id, closed by its session.ended.
    _apply(state, _seq([_ev(SessionEnded(session_id="s1"), 70, None)], start=5))
    ids = [r.event_id for r in state.take_pending()]
    assert ids == [record.event_id, compaction_event_id("default", "s1", 5, 5)]


def test_least_recently_active_session_is_evicted_beyond_the_limit() -> None:
    """Opening a third session with max_open_sessions=2 compacts the least recently active."""
    state = SessionState(SessionConfig(max_open_sessions=2, idle_timeout_s=None))
    events = [_ev(SessionStarted(session_id=s), i, None) for i, s in enumerate(["a", "b"])]
    events += [_ev(TaskExecuted(task_id="t", execution_summary="x", success=True), 2, "a")]
    events += [_ev(SessionStarted(session_id="c"), 3, None)]
    _apply(state, _seq(events))
    [record] = state.take_pending()
    assert (record.session_id, record.reason) == ("b", "evicted")
    assert list(state.open) == [("default", "a"), ("default", "c")]


def test_open_session_memory_is_capped() -> None:
    """Beyond max_items, tasks are counted as omitted and texts are cut to max_text."""
    state = SessionState(SessionConfig(max_items=3, max_text=10))
    tasks = [
        _ev(TaskExecuted(task_id=f"t{i}", execution_summary="y" * 500, success=True), i)
        for i in range(10)
    ]
    _apply(state, _seq(tasks))
    facts = state.open[("default", "s1")]
    assert len(facts.tasks) == 3 and facts.omitted == {"tasks": 7}
    assert facts.tasks[0].summary == "y" * 10
    assert facts.original_bytes == sum(len(encode_event(e)) for e in tasks)


def test_session_compacted_read_back_drops_the_pending_one() -> None:
    """The stream's session.compacted (any engine's, any duration) is never queued again, and
    the record adopts the duration published; a replay including it queues nothing."""
    history = _seq(known_session())
    state = _apply(SessionState(), history)
    [record] = state.take_pending()
    published = compaction_event(record).replace_data(
        record.metrics().model_copy(update={"compaction_duration_ms": 12.5})
    )
    echo = SequencedEvent(len(history) + 1, T0, published)
    state.apply(echo)
    assert state.take_pending() == [] and record.event_id in state.announced
    assert state.records[record.event_id].compaction_duration_ms == 12.5
    second_engine = _apply(SessionState(), [*history, echo])
    assert second_engine.take_pending() == []
    assert state_digest(second_engine) == state_digest(state)


def test_save_restore_round_trip_and_a_torn_append(tmp_path: Path) -> None:
    """A reopened compactor has the same state, durations included; log lines a crash left
    past the saved length are ignored, and the replayed events re-decide the same records."""
    history = _seq([*known_session(), _ev(SessionStarted(session_id="s9"), 20, None)])
    compactor = SessionCompactor(tmp_path, save_every=10**9)
    compactor.apply(history[:-1], [], history[-2].sequence)
    compactor.close()
    reopened = SessionCompactor(tmp_path)
    assert state_digest(reopened.state) == state_digest(compactor.state)
    assert reopened.compacted_sessions() == compactor.compacted_sessions()
    assert reopened.checkpoint() == history[-2].sequence
    # A crash after appending to the log but before the state file: the tail is ignored.
    with (tmp_path / RECORDS_FILE).open("ab") as log:
        log.write(b'{"k":"r","torn')
    crashed = SessionCompactor(tmp_path)
    assert state_digest(crashed.state) == state_digest(compactor.state)
    crashed.apply(history[-1:], [], history[-1].sequence)
    crashed.close()
    again = SessionCompactor(tmp_path)
    assert again.checkpoint() == history[-1].sequence
    assert ("default", "s9") in again.state.open
    (tmp_path / RECORDS_FILE).write_bytes(b"")
    with pytest.raises(ProjectionError, match="unreadable"):
        SessionCompactor(tmp_path)


async def test_sessions_verb_answers_with_metrics_and_summary() -> None:
    """The query verb lists a namespace's compacted sessions newest first, filters by session,
    and refuses a malformed limit."""
    compactor = SessionCompactor(None)
    events = [
        *known_session(),
        _ev(SessionStarted(session_id="s2"), 20, None),
        _ev(SessionEnded(session_id="s2"), 21, None),
    ]
    compactor.apply(_seq(events), [], len(events))
    dispatcher = QueryDispatcher(lambda: duckdb.connect())
    register_session_verbs(dispatcher, compactor)

    async def verb(payload: dict[str, Any]) -> dict[str, Any]:
        return await dispatcher.handle("sessions", payload)

    reply = await verb({})
    assert [s["session_id"] for s in reply["sessions"]] == ["s2", "s1"]
    one = await verb({"session": "s1", "namespace": "default"})
    [view] = one["sessions"]
    assert view["metrics"]["num_memories"] == 16 and view["announced"] is False
    assert [p["workflow_steps"] for p in view["summary"]["patterns"]] == [STEPS_A, STEPS_B]
    assert reply["overview"]["compacted_sessions"] == 2
    assert reply["overview"]["pending_announcements"] == 2
    assert (await verb({"namespace": "other"}))["sessions"] == []
    with pytest.raises(UsageError, match="limit must be at least 1"):
        await verb({"limit": 0})

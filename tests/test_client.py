"""The Python SDK: typed verbs validate, publish and return where the event was stored."""

from __future__ import annotations

import math
import socket
from datetime import UTC, datetime
from typing import Any

import pytest

from engine import (
    ConcurrencyConflictError,
    ConnectionFailedError,
    EngramError,
    InvalidEventError,
    MemoryClient,
    PayloadTooLargeError,
    Settings,
)
from engine.events import (
    EVENT_TYPES,
    DecisionLogged,
    DecisionOutcome,
    Event,
    EventData,
    KnowledgeAdded,
    PatternFeedback,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    decode_event,
)
from engine.events.cache import CacheEvicted, CachePut
from engine.events.items import ItemDeleted, ItemPut
from engine.stream import AppendResult, EventLog, ReadRange

VERBS: list[tuple[str, dict[str, Any], type[EventData]]] = [
    (
        "store_workflow",
        {
            "workflow_steps": ("plan", "code", "test"),
            "success": True,
            "duration": 3.5,
            "task_type": "code_review",
            "request": "Review PR 12",
            "cost": 0.1,
            "metadata": {"model": "m-1"},
        },
        WorkflowExecuted,
    ),
    (
        "store_execution",
        {
            "task_id": "t-1",
            "execution_summary": "Fixed the flaky test",
            "success": False,
            "task_type": "bug_fix",
            "error_patterns": ["timeout"],
            "embedding": [0.25, -0.5],
            "metadata": {"attempt": 2},
        },
        TaskExecuted,
    ),
    (
        "log_decision",
        {
            "decision_id": "d-1",
            "actor": "planner",
            "decision": "add a cache",
            "rationale": "reads dominate",
            "context": "service A",
            "alternatives": ["no cache"],
            "task_id": "t-1",
        },
        DecisionLogged,
    ),
    (
        "record_outcome",
        {"decision_id": "d-1", "success": True, "notes": "latency halved"},
        DecisionOutcome,
    ),
    (
        "give_feedback",
        {"pattern_id": "p-1", "helpful": False, "confidence_adjustment": -0.3},
        PatternFeedback,
    ),
    ("start_session", {"session_id": "s-1", "goal": "ship it"}, SessionStarted),
    ("end_session", {"session_id": "s-1", "success": True}, SessionEnded),
    (
        "add_knowledge",
        {
            "kind": "incident",
            "title": "DB outage",
            "content": "The primary failed over.",
            "knowledge_id": "k-1",
            "tags": ["db", "ops"],
            "metadata": {"severity": 2},
        },
        KnowledgeAdded,
    ),
    (
        "put_item",
        {
            "path": ("users", "u1"),
            "key": "prefs",
            "value": {"theme": "dark"},
            "index": ["theme"],
            "ttl": 60.0,
        },
        ItemPut,
    ),
    ("delete_item", {"path": ("users", "u1"), "key": "prefs"}, ItemDeleted),
    (
        "cache_put",
        {
            "prompt": "What is the capital of France?",
            "response": {"answer": "Paris"},
            "ttl": 120.0,
            "model": "m-1",
            "metadata": {"tokens": 7},
        },
        CachePut,
    ),
    ("cache_evict", {"prompt": "What is the capital of France?", "reason": "stale"}, CacheEvicted),
]


async def stored_at(log: EventLog, sequence: int) -> Event:
    """The event stored at ``sequence``, decoded and checked against its subject."""
    [message] = [m async for m in log.read(ReadRange(from_seq=sequence, until_seq=sequence))]
    return decode_event(message.data, message.subject)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_every_agent_event_type_has_a_verb() -> None:
    """Each event type agents publish has exactly one typed verb in the table above."""
    agent_models = {spec.model for spec in EVENT_TYPES.values() if spec.publisher == "agent"}
    assert {model for _, _, model in VERBS} == agent_models


@pytest.mark.parametrize(("verb", "fields", "model"), VERBS, ids=[v[0] for v in VERBS])
async def test_verb_stores_its_event(
    verb: str,
    fields: dict[str, Any],
    model: type[EventData],
    settings: Settings,
    event_log: EventLog,
) -> None:
    """Each verb returns the stream sequence; the stored body decodes to its type and fields."""
    async with MemoryClient(settings=settings, namespace="team-a", agent_id="agent-7") as memory:
        sequence = await getattr(memory, verb)(**fields)
    assert sequence == 1
    assert (await event_log.state()).last_sequence == 1
    event = await stored_at(event_log, sequence)
    assert isinstance(event.data, model)
    for name, value in fields.items():
        expected = list(value) if isinstance(value, tuple) else value
        assert getattr(event.data, name) == expected, name
    assert event.namespace == "team-a"
    assert event.agent_id == "agent-7"
    if model in (SessionStarted, SessionEnded):
        assert event.session_id == fields["session_id"]


async def test_envelope_options_override_the_defaults(
    settings: Settings, event_log: EventLog
) -> None:
    """namespace, agent_id, session_id, occurred_at and event_id given to a verb are stored."""
    at = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    async with MemoryClient(settings=settings, namespace="team-a") as memory:
        first = await memory.record_outcome(decision_id="d-1", success=True)
        second = await memory.record_outcome(
            decision_id="d-2",
            success=False,
            namespace="team-b",
            agent_id="a-2",
            session_id="s-9",
            occurred_at=at,
            event_id="outcome-2",
        )
    assert (first, second) == (1, 2)
    event = await stored_at(event_log, second)
    assert event.id == "outcome-2"
    assert (event.namespace, event.agent_id, event.session_id) == ("team-b", "a-2", "s-9")
    assert event.occurred_at == at
    assert (await stored_at(event_log, first)).namespace == "team-a"


INVALID: list[tuple[str, dict[str, Any], str]] = [
    (
        "store_workflow",
        {"workflow_steps": [], "success": True, "duration": 1},
        "data.workflow_steps",
    ),
    ("store_workflow", {"workflow_steps": ["a"], "success": True, "duration": -1}, "data.duration"),
    (
        "store_workflow",
        {"workflow_steps": ["a"], "success": True, "duration": math.nan},
        "data.duration",
    ),
    ("store_workflow", {"workflow_steps": ["a"], "success": "yes", "duration": 1}, "data.success"),
    (
        "store_workflow",
        {"workflow_steps": ["a"], "success": True, "duration": 1, "namespace": "bad ns"},
        "namespace",
    ),
    (
        "store_workflow",
        {
            "workflow_steps": ["a"],
            "success": True,
            "duration": 1,
            "occurred_at": datetime(2026, 1, 1),  # naive on purpose
        },
        "occurred_at",
    ),
    ("store_execution", {"task_id": "", "execution_summary": "s", "success": True}, "data.task_id"),
    (
        "store_execution",
        {"task_id": "t", "execution_summary": "s", "success": True, "metadata": {"x": math.inf}},
        "data.metadata",
    ),
    ("log_decision", {"decision_id": "d", "actor": "", "decision": "x"}, "data.actor"),
    ("record_outcome", {"decision_id": "d", "success": None}, "data.success"),
    (
        "give_feedback",
        {"pattern_id": "p", "helpful": True, "confidence_adjustment": 2},
        "data.confidence_adjustment",
    ),
    ("start_session", {"session_id": " "}, "data.session_id"),
    ("end_session", {"session_id": "s", "success": "no"}, "data.success"),
    ("add_knowledge", {"kind": "memo", "title": "t", "content": "c"}, "data.kind"),
]


@pytest.mark.parametrize(("verb", "fields", "field"), INVALID)
async def test_invalid_input_is_refused_before_sending(
    verb: str, fields: dict[str, Any], field: str, settings: Settings, event_log: EventLog
) -> None:
    """Invalid verb input raises InvalidEventError naming the field; nothing is stored."""
    async with MemoryClient(settings=settings) as memory:
        with pytest.raises(InvalidEventError) as info:
            await getattr(memory, verb)(**fields)
    assert field in str(info.value)
    assert any(problem.startswith(field) for problem in info.value.problems)
    assert (await event_log.state()).messages == 0


async def test_publish_many_reports_accepted_and_rejected(
    settings: Settings, event_log: EventLog
) -> None:
    """publish_many reports each event: stored ones with sequences, an oversized one rejected."""
    async with MemoryClient(settings=settings) as memory:
        a = memory.event(SessionStarted(session_id="a"))
        b = memory.event(SessionStarted(session_id="b"))
        big = memory.event(
            WorkflowExecuted(
                workflow_steps=["x"], success=True, duration=1, metadata={"blob": "x" * 2**20}
            )
        )
        report = await memory.publish_many([a, big, b, a])
    assert report.accepted == 3
    assert report.rejected == 1
    assert report.sequences == [1, None, 2, 1]
    assert isinstance(report.results[1], PayloadTooLargeError)
    assert report.results[3] == AppendResult(a.id, 1, duplicate=True)
    assert (await event_log.state()).messages == 2


async def test_same_event_id_is_stored_once(settings: Settings, event_log: EventLog) -> None:
    """A verb retried with the same event_id returns the same sequence and stores one event."""
    fields: dict[str, Any] = {"task_id": "t-1", "execution_summary": "done", "success": True}
    async with MemoryClient(settings=settings) as memory:
        first = await memory.store_execution(**fields, event_id="exec-1")
        second = await memory.store_execution(**fields, event_id="exec-1")
        third = await memory.store_execution(**fields, event_id="exec-2")
    assert (first, second, third) == (1, 1, 2)
    assert (await event_log.state()).messages == 2
    assert (await stored_at(event_log, 1)).id == "exec-1"


async def test_publish_passes_the_expected_sequence(
    settings: Settings, event_log: EventLog
) -> None:
    """publish with a stale expected_last_subject_seq raises ConcurrencyConflictError."""
    async with MemoryClient(settings=settings) as memory:
        first = await memory.publish(
            memory.event(SessionStarted(session_id="a")), expected_last_subject_seq=0
        )
        with pytest.raises(ConcurrencyConflictError):
            await memory.publish(
                memory.event(SessionStarted(session_id="b")), expected_last_subject_seq=0
            )
    assert first == 1
    assert (await event_log.state()).messages == 1


async def test_client_reports_its_url_and_refuses_use_outside_the_block(
    settings: Settings, event_log: EventLog
) -> None:
    """Inside the block the client is connected to the configured URL; outside it refuses."""
    memory = MemoryClient(settings=settings)
    with pytest.raises(EngramError, match="not connected"):
        _ = memory.log
    async with memory:
        assert memory.url == settings.nats.url
        assert memory.log.stream_name == settings.stream.name
    with pytest.raises(EngramError, match="not connected"):
        await memory.end_session("s-1")
    assert (await event_log.state()).messages == 0


async def test_server_down_gives_connection_failed(settings: Settings) -> None:
    """A URL where no server listens raises ConnectionFailedError naming that URL."""
    url = f"nats://127.0.0.1:{closed_port()}"
    memory = MemoryClient(url, settings=settings)
    with pytest.raises(ConnectionFailedError, match="cannot reach NATS") as info:
        async with memory:
            pass
    assert url in str(info.value)
    with pytest.raises(EngramError, match="not connected"):
        _ = memory.log

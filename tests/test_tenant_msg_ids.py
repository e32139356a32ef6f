"""Duplicate detection per tenant (review of issue 12: JetStream's is stream-wide).

JetStream drops a message whose ``Nats-Msg-Id`` it saw within the duplicate window, whoever
sent it. With the bare event id as ``Nats-Msg-Id``, tenant alpha could publish an id beta was
going to use (a client-chosen id such as ``wf-0001``, for idempotent ingestion) and beta's
event was acknowledged as a duplicate and never stored. Now an event on a v2 subject carries
``<namespace>:<id>``: the same id in two namespaces is two events, and a retry of one is still
a duplicate. (The projections still identify an event by its id alone across tenants: a known
limit, documented in the README.)
"""

from __future__ import annotations

from nats.aio.client import Client as NatsClient

from engine.events import Event, WorkflowExecuted, make_event
from engine.events.derived import PatternLearned
from engine.settings import Settings
from engine.signing import EngineKey
from engine.stream import Appender, AppendResult, EventLog, ReadRange
from engine.stream.append import message_id
from engine.subjects import EventSubjects

KEY = EngineKey("k" * 40)


def _workflow(namespace: str, event_id: str) -> Event:
    return make_event(
        WorkflowExecuted(workflow_steps=[namespace], success=True, duration=1),
        namespace=namespace,
        event_id=event_id,
    )


def test_the_message_id_names_the_subjects_namespace() -> None:
    """``<namespace>:<id>`` on a v2 subject (the namespace the subject names), the bare id on a
    v1 subject, under any event prefix."""
    assert message_id("wf-1", "memory.workflow.executed.alpha") == "alpha:wf-1"
    assert message_id("wf-1", "memory.workflow.executed") == "wf-1"
    team = EventSubjects("team.memory")
    assert message_id("wf-1", "team.memory.workflow.executed.beta", team) == "beta:wf-1"


async def test_the_same_id_in_two_namespaces_is_stored_twice_and_a_retry_once(
    event_log: EventLog,
) -> None:
    """alpha publishes id wf-0001, then beta publishes id wf-0001: both are stored (two
    sequences, beta's body is beta's), each with its own Nats-Msg-Id; beta's retry of
    wf-0001 is acknowledged as a duplicate of beta's own sequence, and nothing more is stored."""
    alpha = await event_log.append(_workflow("alpha", "wf-0001"))
    beta = await event_log.append(_workflow("beta", "wf-0001"))
    retry = await event_log.append(_workflow("beta", "wf-0001"))
    assert (alpha.sequence, alpha.duplicate) == (1, False)
    assert (beta.sequence, beta.duplicate) == (2, False)
    assert (retry.sequence, retry.duplicate) == (2, True)
    stored = [m async for m in event_log.read(ReadRange())]
    assert [(m.subject, m.headers["Nats-Msg-Id"]) for m in stored] == [
        ("memory.workflow.executed.alpha", "alpha:wf-0001"),
        ("memory.workflow.executed.beta", "beta:wf-0001"),
    ]
    report = await event_log.append_many(
        [_workflow("gamma", "wf-0001"), _workflow("beta", "wf-0001")]
    )
    assert [(r.sequence, r.duplicate) for r in report if isinstance(r, AppendResult)] == [
        (3, False),
        (2, True),
    ]


async def test_signed_events_keep_their_tag_per_namespace(
    nc: NatsClient, settings: Settings, event_log: EventLog
) -> None:
    """The engine's signed events: ``<namespace>:<id>.<tag>``; the same deterministic id in two
    namespaces is stored twice, an announcement repeated by an engine with the same key once."""
    appender = Appender(nc, settings.stream.name, signer=KEY)

    def learned(namespace: str) -> Event:
        return make_event(
            PatternLearned(
                pattern_id="p",
                version=1,
                pattern_type="workflow",
                task_type="t",
                caused_by_sequence=1,
                success_rate=1.0,
                confidence=1.0,
                sample_size=1,
            ),
            namespace=namespace,
            event_id="pattern-x-v1",
        )

    first = await appender.append(appender.encode(learned("alpha")))
    second = await appender.append(appender.encode(learned("beta")))
    again = await Appender(nc, settings.stream.name, signer=KEY).append(
        appender.encode(learned("beta"))
    )
    assert [first.duplicate, second.duplicate, again.duplicate] == [False, False, True]
    assert again.sequence == second.sequence
    stored = [m async for m in event_log.read(ReadRange())]
    assert [m.headers["Nats-Msg-Id"] for m in stored] == [
        KEY.message_id("alpha:pattern-x-v1"),
        KEY.message_id("beta:pattern-x-v1"),
    ]
    assert stored[0].headers["Nats-Msg-Id"].startswith("alpha:pattern-x-v1.")

"""Wire contract v2 (issue 12): events are published on ``memory.<type>.<namespace>`` and read on
that subject or the v1 ``memory.<type>``; a v2 event whose envelope namespace is not its
subject's token is a ``namespace_mismatch`` dead letter, never applied and never dropped; a
reader owning some namespaces skips the others' events (v1 and v2) without dead-lettering them.
Queries go on ``engram.query.<namespace>.<verb>``, whose namespace is the request's, or on
``engram.query.<verb>`` for what an operator asks without a namespace."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError

from consumers.decoding import NAMESPACE_MISMATCH, decode_batch
from consumers.queries import QueryDispatcher
from consumers.queries.service import query_subscriptions
from engine import MemoryClient
from engine.errors import InvalidEventError, NamespaceMismatchError, UsageError
from engine.events import (
    NAMESPACE_PATTERN,
    Event,
    UpcasterRegistry,
    WorkflowExecuted,
    decode_event,
    encode_event,
    make_event,
)
from engine.settings import Settings
from engine.stream import EventLog, StoredMessage
from engine.stream.append import encode_for_append
from engine.subjects import EventSubjects, ServiceSubjects
from engine.verbs import CATALOGUE
from tests.engines import running, settle

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
OPERATOR_VERBS = {"status", "checkpoints", "sql", "export", "metrics", "workflows"}


def workflow(namespace: str, n: int = 0) -> Event:
    return make_event(
        WorkflowExecuted(workflow_steps=["plan", f"s{n}"], success=True, duration=1.0),
        namespace=namespace,
        event_id=f"wf-{namespace}-{n}",
    )


def stored(sequence: int, subject: str, event: Event) -> StoredMessage:
    return StoredMessage(sequence, subject, encode_event(event), NOW, {})


def test_every_event_is_published_on_its_namespace_subject() -> None:
    """The appender's subject is memory.<type>.<namespace>, under any prefix."""
    event = workflow("alpha")
    assert encode_for_append(event)[1] == "memory.workflow.executed.alpha"
    assert event.subject == "memory.workflow.executed.alpha"
    team = EventSubjects("team-a.memory")
    assert encode_for_append(event, team)[1] == "team-a.memory.workflow.executed.alpha"


def test_v1_and_v2_subjects_decode_to_the_same_event() -> None:
    """The body read on memory.<type> (v1: namespace in the body only) and on
    memory.<type>.<namespace> is the same event."""
    event = workflow("alpha")
    body = encode_event(event)
    assert decode_event(body, "memory.workflow.executed") == event
    assert decode_event(body, "memory.workflow.executed.alpha") == event


@pytest.mark.parametrize("upcast", [False, True], ids=["current", "old-version"])
def test_a_subject_naming_another_namespace_is_refused_naming_both(upcast: bool) -> None:
    """A v2 subject whose namespace token is not the envelope's raises NamespaceMismatchError
    naming the subject's namespace and the envelope's, on the fast path and on the full one
    (an event at an older schema version)."""
    event = workflow("alpha")
    body = encode_event(event)
    upcasters = UpcasterRegistry()
    if upcast:
        body = body.replace(b'"schema_version":1', b'"schema_version":0')
        upcasters.register("workflow.executed", 0)(lambda envelope: envelope)
    assert decode_event(body, "memory.workflow.executed.alpha", upcasters) == event
    with pytest.raises(NamespaceMismatchError) as info:
        decode_event(body, "memory.workflow.executed.beta", upcasters)
    assert "'beta'" in str(info.value) and "'alpha'" in str(info.value)


def test_a_mismatched_namespace_is_a_dead_letter_not_a_drop() -> None:
    """decode_batch turns the mismatch into a namespace_mismatch dead letter with its subject,
    sequence and reason; the events around it are decoded."""
    good, bad = workflow("alpha", 1), workflow("alpha", 2)
    messages = [
        stored(1, "memory.workflow.executed.alpha", good),
        stored(2, "memory.workflow.executed.beta", bad),
        stored(3, "memory.workflow.executed", workflow("beta", 3)),
    ]
    events, dead = decode_batch(messages, "tables")
    assert [e.sequence for e in events] == [1, 3]
    [letter] = dead
    assert (letter.sequence, letter.kind) == (2, NAMESPACE_MISMATCH)
    assert letter.subject == "memory.workflow.executed.beta"
    assert "'beta'" in letter.reason and "'alpha'" in letter.reason


def test_a_reader_owning_some_namespaces_skips_the_others_v1_and_v2() -> None:
    """decode_batch(namespaces={alpha}) keeps alpha's events on v1 and v2 subjects; beta's (v1
    by body, v2 by subject) are neither events nor dead letters; a v2 subject of alpha whose
    body says beta is alpha's namespace_mismatch dead letter, and a v2 subject of beta whose
    body says alpha is beta's (not this reader's) concern."""
    messages = [
        stored(1, "memory.workflow.executed.alpha", workflow("alpha", 1)),
        stored(2, "memory.workflow.executed", workflow("alpha", 2)),
        stored(3, "memory.workflow.executed.beta", workflow("beta", 3)),
        stored(4, "memory.workflow.executed", workflow("beta", 4)),
        stored(5, "memory.workflow.executed.alpha", workflow("beta", 5)),
        stored(6, "memory.workflow.executed.beta", workflow("alpha", 6)),
    ]
    events, dead = decode_batch(messages, "tables", namespaces=frozenset({"alpha"}))
    assert [(e.sequence, e.event.namespace) for e in events] == [(1, "alpha"), (2, "alpha")]
    assert [(d.sequence, d.kind) for d in dead] == [(5, NAMESPACE_MISMATCH)]
    everyone, _ = decode_batch(messages, "tables")
    assert [e.sequence for e in everyone] == [1, 2, 3, 4]
    betas, beta_dead = decode_batch(messages, "tables", namespaces=frozenset({"beta"}))
    assert [e.sequence for e in betas] == [3, 4]
    assert [d.sequence for d in beta_dead] == [6]


# -- queries: engram.query.<namespace>.<verb> and engram.query.<verb> ------------------------


def test_an_engine_owning_every_namespace_subscribes_to_every_tenant_and_the_operator() -> None:
    """Owning every namespace: engram.query.*.* and engram.query.<verb> for each verb that may
    be asked without a namespace (status, checkpoints, sql, export, metrics, workflows), only
    those it answers; owning some: engram.query.<namespace>.* per namespace, nothing else."""
    verbs = sorted(CATALOGUE)
    assert query_subscriptions(verbs) == [
        "engram.query.*.*",
        *(f"engram.query.{v}" for v in sorted(OPERATOR_VERBS)),
    ]
    assert query_subscriptions(["patterns", "status"], "b.engram.query.") == [
        "b.engram.query.*.*",
        "b.engram.query.status",
    ]
    assert query_subscriptions(verbs, ServiceSubjects(), ["beta", "alpha", "beta"]) == [
        "engram.query.alpha.*",
        "engram.query.beta.*",
    ]


class _Echo:
    """A dispatcher whose verbs answer with the request they were given."""

    def __init__(self) -> None:
        self.dispatcher = QueryDispatcher(lambda: None)  # type: ignore[arg-type,return-value]
        for name in ("patterns", "status", "metrics"):
            self.dispatcher.register(name, self._echo)

    @staticmethod
    async def _echo(request: Any) -> dict[str, Any]:
        return request.model_dump()  # type: ignore[no-any-return]


async def test_the_subject_namespace_is_the_request_namespace() -> None:
    """On a tenant's subject the namespace is the subject's: it fills the request, a body
    naming the same one is fine, one naming another is a UsageError naming both (after the
    body's own errors); an operator verb there is asked of that tenant's engine; without a
    subject namespace (the operator's subject) the body rules as before."""
    handle = _Echo().dispatcher.handle
    assert (await handle("patterns", {}, "alpha"))["namespace"] == "alpha"
    assert (await handle("patterns", {"namespace": "alpha"}, "alpha"))["namespace"] == "alpha"
    with pytest.raises(UsageError, match=r"namespace 'alpha'.*namespace 'beta'"):
        await handle("patterns", {"namespace": "beta"}, "alpha")
    with pytest.raises(UsageError, match="min_success_rate"):
        await handle("patterns", {"namespace": "beta", "min_success_rate": "x"}, "alpha")
    assert await handle("status", {}, "alpha") == {"min_sequence": None}  # the request echoed
    assert (await handle("metrics", {}, "alpha"))["namespace"] == "alpha"
    assert (await handle("metrics", {}, None))["namespace"] is None  # every namespace
    assert (await handle("metrics", {"namespace": "beta"}, None))["namespace"] == "beta"
    with pytest.raises(UsageError, match=re.escape(NAMESPACE_PATTERN)):
        await handle("status", {}, "x" * 65)


async def test_clients_ask_on_the_tenant_subject_and_the_engine_answers_there(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """MemoryClient(namespace=alpha) asks its verbs on engram.query.alpha.<verb> (status too,
    answered by the engine owning alpha), a namespace it names on that namespace's subject,
    and metrics over every namespace on engram.query.workflows; the engine answers there with
    the subject's namespace. A body naming another namespace is refused naming both; no engine
    answers a tenant verb on the operator's subject; a namespace that is not one subject token
    is refused before anything is sent, naming the pattern."""
    await event_log.append_many([workflow("alpha", n) for n in range(3)] + [workflow("beta")])
    asked: list[str] = []

    async def record(msg: Msg) -> None:
        asked.append(msg.subject)

    listener = await nc.subscribe("engram.query.>", cb=record)
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
        async with MemoryClient(settings=settings, namespace="alpha") as alpha:
            status = await alpha.status()
            mine = await alpha.workflow_metrics()
            theirs = await alpha.workflow_metrics(namespace="beta")
            everyone = await alpha.workflow_metrics(every_namespace=True)
            await alpha.retrieve_workflow_patterns(min_success_rate=0.0)
            await nc.flush()
            refused = json.loads(
                (
                    await nc.request(
                        "engram.query.alpha.workflows", b'{"namespace": "beta"}', timeout=5
                    )
                ).data
            )
            with pytest.raises(NatsTimeoutError):  # only the listener hears it: no engine answers
                await nc.request("engram.query.patterns", b"{}", timeout=0.5)
            before = len(asked)
            async with MemoryClient(settings=settings, namespace="a.b") as dotted:
                with pytest.raises(UsageError, match=re.escape(NAMESPACE_PATTERN)):
                    await dotted.status()
            await nc.flush()
    await listener.unsubscribe()
    assert status.stream == settings.stream.name
    assert {w["namespace"] for w in mine} == {"alpha"}
    assert sum(w["executions"] for w in mine) == 3
    assert {w["namespace"] for w in theirs} == {"beta"}
    assert {w["namespace"] for w in everyone} == {"alpha", "beta"}
    assert asked[:5] == [
        "engram.query.alpha.status",
        "engram.query.alpha.workflows",
        "engram.query.beta.workflows",
        "engram.query.workflows",
        "engram.query.alpha.patterns",
    ]
    assert refused["kind"] == "usage"
    assert "'alpha'" in refused["error"] and "'beta'" in refused["error"]
    assert len(asked) == before  # the dotted namespace never reached the bus


@pytest.mark.parametrize("namespace", ["a.b", "a*", "a>", "a b", "", "x" * 65])
async def test_a_namespace_that_is_not_one_token_is_refused_at_publish(
    settings: Settings, event_log: EventLog, namespace: str
) -> None:
    """MemoryClient refuses to publish in a namespace that is not one subject token (a dot, a
    wildcard, a space, empty, too long), as the client's default or per event, naming the
    allowed pattern; nothing is stored."""
    async with MemoryClient(settings=settings, namespace=namespace) as memory:
        with pytest.raises(InvalidEventError, match=re.escape(NAMESPACE_PATTERN)):
            await memory.store_workflow(workflow_steps=["plan"], success=True, duration=1.0)
    async with MemoryClient(settings=settings) as memory:
        with pytest.raises(InvalidEventError, match=re.escape(NAMESPACE_PATTERN)):
            await memory.store_workflow(
                workflow_steps=["plan"], success=True, duration=1.0, namespace=namespace
            )
    assert (await event_log.state()).messages == 0

"""Wire contract v2 (issue 12): events are published on ``memory.<type>.<namespace>`` and read on
that subject or the v1 ``memory.<type>``; a v2 event whose envelope namespace is not its
subject's token is a ``namespace_mismatch`` dead letter, never applied and never dropped; a
reader owning some namespaces skips the others' events (v1 and v2) without dead-lettering them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from consumers.decoding import NAMESPACE_MISMATCH, decode_batch
from engine.errors import NamespaceMismatchError
from engine.events import (
    Event,
    UpcasterRegistry,
    WorkflowExecuted,
    decode_event,
    encode_event,
    make_event,
)
from engine.stream import StoredMessage
from engine.stream.append import encode_for_append
from engine.subjects import EventSubjects

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


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

"""Appending to the log on a real nats-server: sequences, dedup, expected sequence, limits."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nats.aio.client import Client as NatsClient

from engine.errors import (
    ConcurrencyConflictError,
    PayloadTooLargeError,
    PublishFailedError,
)
from engine.events import (
    DecisionOutcome,
    Event,
    SessionStarted,
    WorkflowExecuted,
    decode_event,
    make_event,
)
from engine.settings import Settings
from engine.stream import Appender, AppendResult, EventLog, ReadRange, encode_for_append

MAX_PAYLOAD = 1024 * 1024  # what EmbeddedServer configures


def session(
    session_id: str, event_id: str | None = None, occurred_at: datetime | None = None
) -> Event:
    data = SessionStarted(session_id=session_id)
    return make_event(data, event_id=event_id, occurred_at=occurred_at)


def workflow(duration: float = 1.0) -> Event:
    return make_event(WorkflowExecuted(workflow_steps=["plan"], success=True, duration=duration))


async def stored(log: EventLog) -> list[Event]:
    """Every event in the log, decoded, in sequence order."""
    return [decode_event(m.data, m.subject) async for m in log.read(ReadRange())]


async def test_append_returns_increasing_sequences(event_log: EventLog) -> None:
    """Each append on a fresh stream returns the next stream sequence, starting at 1."""
    events = [session("s-1"), workflow(), session("s-2")]
    results = [await event_log.append(e) for e in events]
    assert [r.sequence for r in results] == [1, 2, 3]
    assert [r.event_id for r in results] == [e.id for e in events]
    assert not any(r.duplicate for r in results)
    assert await stored(event_log) == events


async def test_message_carries_the_event_id_header(event_log: EventLog) -> None:
    """The stored message is on memory.<type>.<namespace> (v2) with Nats-Msg-Id set to the
    namespace and the event id (``default:<id>``)."""
    event = session("s-1")
    await event_log.append(event)
    [message] = [m async for m in event_log.read()]
    assert message.subject == "memory.session.started.default"
    assert message.headers["Nats-Msg-Id"] == f"default:{event.id}"


async def test_same_event_twice_is_stored_once(event_log: EventLog) -> None:
    """Appending the same event (same id) again is acknowledged as a duplicate, stored once."""
    event = session("s-1", event_id="retry-me", occurred_at=datetime(2026, 1, 1, tzinfo=UTC))
    first = await event_log.append(event)
    second = await event_log.append(event)
    assert first == AppendResult("retry-me", 1, duplicate=False)
    assert second == AppendResult("retry-me", 1, duplicate=True)
    state = await event_log.state()
    assert state.messages == 1
    assert state.last_sequence == 1


async def test_append_many_returns_one_result_per_event_in_order(event_log: EventLog) -> None:
    """append_many gives one AppendResult per event, in input order, increasing sequences."""
    events = [workflow(duration=float(i)) for i in range(25)]
    results = await event_log.append_many(events)
    assert all(isinstance(r, AppendResult) for r in results)
    ok = [r for r in results if isinstance(r, AppendResult)]
    assert [r.event_id for r in ok] == [e.id for e in events]
    assert [r.sequence for r in ok] == list(range(1, 26))
    assert (await event_log.state()).messages == 25
    assert await stored(event_log) == events


async def test_append_many_deduplicates_within_and_across_batches(event_log: EventLog) -> None:
    """A repeated id in a batch, or one already stored, is a duplicate with the first sequence."""
    a, b = session("a"), session("b")
    await event_log.append(a)
    results = await event_log.append_many([b, a, b])
    assert results == [
        AppendResult(b.id, 2, duplicate=False),
        AppendResult(a.id, 1, duplicate=True),
        AppendResult(b.id, 2, duplicate=True),
    ]
    assert (await event_log.state()).messages == 2


async def test_append_many_reports_an_oversized_event_and_stores_the_rest(
    event_log: EventLog,
) -> None:
    """One oversized body in a batch is reported as PayloadTooLargeError; the others land."""
    a, b = session("a"), session("b")
    oversized = ("too-big", "memory.session.started", b"x" * (MAX_PAYLOAD + 1))
    results = await event_log.append_encoded(
        [encode_for_append(a), oversized, encode_for_append(b)]
    )
    assert results[0] == AppendResult(a.id, 1)
    assert isinstance(results[1], PayloadTooLargeError)
    assert results[2] == AppendResult(b.id, 2)
    assert (await event_log.state()).messages == 2


async def test_expected_sequence_zero_succeeds_on_an_empty_subject(event_log: EventLog) -> None:
    """expected_last_subject_seq=0 appends when nothing is stored on that subject yet."""
    await event_log.append(workflow())  # another subject: does not count
    result = await event_log.append(session("s-1"), expected_last_subject_seq=0)
    assert result.sequence == 2
    assert (await event_log.state()).messages == 2


async def test_stale_expected_sequence_conflicts_and_stores_nothing(event_log: EventLog) -> None:
    """A stale expected_last_subject_seq raises ConcurrencyConflictError and stores nothing."""
    await event_log.append(session("s-1"), expected_last_subject_seq=0)
    late = session("s-2")
    with pytest.raises(ConcurrencyConflictError, match=r"memory\.session\.started") as info:
        await event_log.append(late, expected_last_subject_seq=0)
    assert late.id in str(info.value)
    assert "re-read and retry" in str(info.value)
    assert isinstance(info.value, PublishFailedError)
    assert (await event_log.state()).messages == 1
    assert late.id not in [e.id for e in await stored(event_log)]


async def test_current_expected_sequence_succeeds(event_log: EventLog) -> None:
    """An expected sequence equal to the subject's last stored one appends."""
    first = await event_log.append(session("s-1"))
    await event_log.append(workflow())  # moves the stream, not memory.session.started
    result = await event_log.append(session("s-2"), expected_last_subject_seq=first.sequence)
    assert result.sequence == 3
    with pytest.raises(ConcurrencyConflictError):
        await event_log.append(session("s-3"), expected_last_subject_seq=first.sequence)
    assert (await event_log.state()).messages == 3


async def test_oversized_body_is_refused_before_sending(
    event_log: EventLog, nc: NatsClient, settings: Settings
) -> None:
    """A body over the server's max_payload raises PayloadTooLargeError naming both sizes."""
    assert nc.max_payload == MAX_PAYLOAD
    appender = Appender(nc, settings.stream.name)
    body = b"{" + b" " * MAX_PAYLOAD + b"}"
    with pytest.raises(PayloadTooLargeError) as info:
        await appender.append(("big-1", "memory.session.started", body))
    message = str(info.value)
    assert "big-1" in message
    assert f"{len(body)} bytes" in message
    assert f"max_payload of {MAX_PAYLOAD}" in message
    assert (await event_log.state()).messages == 0


async def test_oversized_event_via_metadata_is_refused(event_log: EventLog) -> None:
    """A valid event whose metadata makes it too large is refused and not stored."""
    big = make_event(
        WorkflowExecuted(
            workflow_steps=["a"], success=True, duration=1, metadata={"blob": "x" * MAX_PAYLOAD}
        )
    )
    with pytest.raises(PayloadTooLargeError, match="max_payload"):
        await event_log.append(big)
    assert (await event_log.state()).messages == 0


async def test_append_without_a_stream_fails_clearly(nc: NatsClient, settings: Settings) -> None:
    """With no stream capturing memory.>, append raises PublishFailedError naming the stream."""
    log = EventLog(nc, settings.stream, timeout_s=2.0)  # never ensured: no stream exists
    with pytest.raises(PublishFailedError) as info:
        await log.append(make_event(DecisionOutcome(decision_id="d", success=True)))
    message = str(info.value)
    assert "memory.decision.outcome" in message
    assert settings.stream.name in message
    assert "memory.>" in message
    assert settings.stream.name not in [info.config.name for info in await log.js.streams_info()]


async def test_wrong_expected_stream_in_a_batch_is_reported_at_once(
    nc: NatsClient, event_log: EventLog
) -> None:
    """A batch aimed at a stream name that does not capture the subjects fails fast, each
    event with the server's reason, instead of waiting for a timeout."""
    import time

    wrong = Appender(nc, "NOT_THIS_STREAM", timeout_s=5.0)
    events = [make_event(SessionStarted(session_id=f"s{i}")) for i in range(5)]
    started = time.monotonic()
    results = await wrong.append_many([encode_for_append(e) for e in events])
    assert time.monotonic() - started < 2.0
    assert all(isinstance(r, PublishFailedError) for r in results)
    assert "stream" in str(results[0]).lower()

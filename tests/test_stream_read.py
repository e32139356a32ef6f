"""Reading the log back in order, by sequence, by stored time and by subject."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import datetime, timedelta, timezone
from typing import cast

from engine.events import (
    Event,
    SessionEnded,
    SessionStarted,
    WorkflowExecuted,
    decode_event,
    make_event,
)
from engine.stream import EventLog, ReadRange, StoredMessage


def started(n: int) -> Event:
    return make_event(SessionStarted(session_id=f"s-{n}"))


def ended(n: int) -> Event:
    return make_event(SessionEnded(session_id=f"s-{n}", success=True))


def workflow(n: int) -> Event:
    return make_event(WorkflowExecuted(workflow_steps=[f"step-{n}"], success=True, duration=n))


async def read(log: EventLog, rng: ReadRange | None = None, **kwargs: int) -> list[StoredMessage]:
    return [m async for m in log.read(rng, **kwargs)]


def sequences(messages: list[StoredMessage]) -> list[int]:
    return [m.sequence for m in messages]


async def append_all(log: EventLog, events: list[Event]) -> None:
    for event in events:
        await log.append(event)


def midpoint(a: datetime, b: datetime) -> datetime:
    return a + (b - a) / 2


async def test_whole_log_reads_back_in_order(event_log: EventLog) -> None:
    """Reading with no range yields every event, in sequence order, decodable and equal."""
    events = [started(1), workflow(1), workflow(2), ended(1), started(2), workflow(3)]
    await append_all(event_log, events)
    messages = await read(event_log)
    assert sequences(messages) == [1, 2, 3, 4, 5, 6]
    assert [decode_event(m.data, m.subject) for m in messages] == events
    assert [m.subject for m in messages] == [e.subject for e in events]
    times = [m.time for m in messages]
    assert times == sorted(times)
    assert all(t.utcoffset() == timedelta(0) for t in times)
    assert (await event_log.state()).consumers == 0  # the reader cleaned up its consumer


async def test_small_batches_read_the_same_log(event_log: EventLog) -> None:
    """The fetch batch size changes nothing about what is read."""
    await append_all(event_log, [workflow(n) for n in range(7)])
    assert sequences(await read(event_log, batch=2)) == list(range(1, 8))


async def test_from_seq_starts_there(event_log: EventLog) -> None:
    """from_seq yields that sequence and everything after it."""
    await append_all(event_log, [workflow(n) for n in range(6)])
    assert sequences(await read(event_log, ReadRange(from_seq=4))) == [4, 5, 6]
    assert sequences(await read(event_log, ReadRange(from_seq=0))) == [1, 2, 3, 4, 5, 6]
    assert await read(event_log, ReadRange(from_seq=7)) == []


async def test_until_seq_stops_there(event_log: EventLog) -> None:
    """until_seq is inclusive, combines with from_seq, and past the end reads to the end."""
    await append_all(event_log, [workflow(n) for n in range(6)])
    assert sequences(await read(event_log, ReadRange(until_seq=3))) == [1, 2, 3]
    assert sequences(await read(event_log, ReadRange(from_seq=2, until_seq=4))) == [2, 3, 4]
    assert sequences(await read(event_log, ReadRange(until_seq=99))) == [1, 2, 3, 4, 5, 6]
    assert await read(event_log, ReadRange(until_seq=0)) == []
    assert await read(event_log, ReadRange(from_seq=5, until_seq=4)) == []


async def test_time_bounds_use_the_stored_times(event_log: EventLog) -> None:
    """from_time and until_time select by when the stream stored each event (inclusive)."""
    for n in range(3):
        await event_log.append(workflow(n))
        await asyncio.sleep(0.05)
    t1, t2, t3 = [m.time for m in await read(event_log)]
    assert t1 < t2 < t3
    early, late = midpoint(t1, t2), midpoint(t2, t3)
    assert sequences(await read(event_log, ReadRange(from_time=early))) == [2, 3]
    assert sequences(await read(event_log, ReadRange(until_time=late))) == [1, 2]
    assert sequences(await read(event_log, ReadRange(from_time=early, until_time=late))) == [2]
    assert sequences(await read(event_log, ReadRange(until_time=t2))) == [1, 2]
    assert await read(event_log, ReadRange(until_time=t1 - timedelta(seconds=1))) == []
    assert await read(event_log, ReadRange(from_time=t3 + timedelta(seconds=1))) == []


async def test_time_bounds_accept_any_offset(event_log: EventLog) -> None:
    """A from_time given in another zone means the same instant."""
    for n in range(2):
        await event_log.append(workflow(n))
        await asyncio.sleep(0.05)
    t1, t2 = [m.time for m in await read(event_log)]
    in_tokyo = midpoint(t1, t2).astimezone(timezone(timedelta(hours=9)))
    assert sequences(await read(event_log, ReadRange(from_time=in_tokyo))) == [2]


async def test_subject_filter_reads_one_type(event_log: EventLog) -> None:
    """A subject filter yields only that type's events, with their stream sequences."""
    await append_all(
        event_log, [started(1), workflow(1), ended(1), started(2), workflow(2), workflow(3)]
    )
    only_started = await read(event_log, ReadRange(subject="memory.session.started.*"))
    assert sequences(only_started) == [1, 4]
    assert {m.subject for m in only_started} == {"memory.session.started.default"}
    sessions = await read(event_log, ReadRange(subject="memory.session.*.*"))
    assert sequences(sessions) == [1, 3, 4]
    bounded = ReadRange(subject="memory.workflow.executed.*", from_seq=3, until_seq=5)
    assert sequences(await read(event_log, bounded)) == [5]


async def test_subject_filter_with_other_subjects_at_the_tail_ends_promptly(
    event_log: EventLog,
) -> None:
    """A filtered read ends without waiting when the rest of the log is other subjects."""
    await append_all(event_log, [started(1), started(2)] + [workflow(n) for n in range(5)])
    began = time.monotonic()
    assert sequences(await read(event_log, ReadRange(subject="memory.session.started.*"))) == [
        1,
        2,
    ]
    assert await read(event_log, ReadRange(subject="memory.decision.logged.*")) == []
    assert time.monotonic() - began < 0.5


async def test_empty_stream_yields_nothing_promptly(event_log: EventLog) -> None:
    """Reading an empty stream yields nothing and returns without waiting for a timeout."""
    began = time.monotonic()
    assert await read(event_log) == []
    assert await read(event_log, ReadRange(from_seq=5, subject="memory.session.started")) == []
    assert time.monotonic() - began < 0.5
    assert (await event_log.state()).consumers == 0


async def test_read_ends_at_the_last_sequence_as_of_the_call(event_log: EventLog) -> None:
    """Events appended while a read runs are not part of that read."""
    await append_all(event_log, [workflow(n) for n in range(3)])
    reader = event_log.read(batch=1)
    first = await anext(reader)
    await append_all(event_log, [workflow(n) for n in range(3, 5)])
    rest = [m async for m in reader]
    assert sequences([first, *rest]) == [1, 2, 3]
    assert sequences(await read(event_log)) == [1, 2, 3, 4, 5]


async def test_follow_yields_events_appended_later(event_log: EventLog) -> None:
    """With follow, the read waits for and yields events appended after it started."""
    await event_log.append(workflow(0))
    seen: list[int] = []

    async def follow() -> None:
        # read() is an async generator: close it so its ephemeral consumer is deleted now.
        following = cast(
            AsyncGenerator[StoredMessage, None], event_log.read(ReadRange(follow=True))
        )
        async with aclosing(following) as reader:
            async for message in reader:
                seen.append(message.sequence)
                if len(seen) == 3:
                    return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    await append_all(event_log, [workflow(1), workflow(2)])
    await asyncio.wait_for(task, timeout=5)
    assert seen == [1, 2, 3]
    assert (await event_log.state()).consumers == 0  # closing the read removed its consumer

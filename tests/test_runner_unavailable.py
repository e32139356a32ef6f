"""A JetStream briefly unavailable (a leader election in a cluster) is waited out quickly, and
announcements are not broadcast while the stream cannot store them (tests/test_cluster.py
measures both on a real three-node cluster; these pin the rules down fast)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from nats.aio.client import ServerVersion
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError, NotFoundError, ServiceUnavailableError

from consumers.replay import replay
from consumers.runner import ProjectionRunner, RunnerSettings, _can_reset
from consumers.unavailable import is_unavailable
from engine.errors import PublishFailedError
from engine.events import Event, WorkflowExecuted, make_event
from engine.stream import AppendResult, EventLog
from engine.subjects import DEFAULT_SUBJECTS
from projections.tables import TablesProjection, TableStore, table_digests
from tests.histories import realistic_history


def test_unavailable_errors_are_told_apart() -> None:
    """Timeouts, no responders, no stream response and 503s mean "ask again soon"; a missing
    consumer, a refused request or anything else does not."""
    for error in (
        TimeoutError(),
        NatsTimeoutError(),
        NoRespondersError(),
        NoStreamResponseError(),
        ServiceUnavailableError(),
        APIError(code=503, description="JetStream system temporarily unavailable"),
    ):
        assert is_unavailable(error), error
    for error in (NotFoundError(), APIError(code=400), ValueError(), OSError()):
        assert not is_unavailable(error), error


class _Client:
    def __init__(self, version: str) -> None:
        self.connected_server_version = ServerVersion(version)


class _ResettingJs:
    def __init__(self, version: str) -> None:
        self._nc = _Client(version)

    async def reset_consumer(self, *_args: object, **_kwargs: object) -> None:
        return None


def test_consumers_are_reset_in_place_only_on_servers_that_can() -> None:
    """A resubscription resets the consumer on nats-server 2.14+ (ADR-60) and creates it anew
    on older servers, or when the version is unknown."""
    assert _can_reset(_ResettingJs("2.14.0"))  # type: ignore[arg-type]
    assert _can_reset(_ResettingJs("2.15.1"))  # type: ignore[arg-type]
    assert not _can_reset(_ResettingJs("2.13.9"))  # type: ignore[arg-type]
    assert not _can_reset(_ResettingJs("0.0.0-unknown"))  # type: ignore[arg-type]
    assert not _can_reset(object())  # type: ignore[arg-type]


class _Projection:
    name = "learner"


class _Announcer:
    def __init__(self, events: list[Event]) -> None:
        self.events = events

    def take_pending(self) -> list[Event]:
        return list(self.events)


class _Appender:
    """Records what is published; while ``failing`` nothing is acknowledged."""

    subjects = DEFAULT_SUBJECTS

    def __init__(self) -> None:
        self.failing = True
        self.rounds: list[list[str]] = []

    def encode(self, event: Event) -> tuple[str, str, bytes]:
        return event.id, "memory.pattern.learned.default", b"{}"

    async def append_many(self, batch: list[tuple[str, str, bytes]]) -> list[Any]:
        self.rounds.append([event_id for event_id, _, _ in batch])
        if self.failing:
            return [PublishFailedError(f"no ack for {event_id}") for event_id, _, _ in batch]
        return [AppendResult(event_id, n + 1) for n, (event_id, _, _) in enumerate(batch)]


class _Js:
    """The stream's info answers only while ``answering``; the consumer has ``backlog``
    messages pending."""

    def __init__(self) -> None:
        self.answering = False
        self.backlog = 0

    async def stream_info(self, _name: str) -> object:
        if not self.answering:
            raise NatsTimeoutError
        return object()

    async def consumer_info(self, _stream: str, _durable: str) -> object:
        return SimpleNamespace(num_pending=self.backlog, num_ack_pending=0)


async def test_a_failed_announcement_round_sends_one_event_and_waits_for_the_stream() -> None:
    """Plain subscribers hear every publish, stored or not: when the stream cannot store (its
    leader died), a round sends only its first event, and nothing more is published until the
    stream answers again; then everything goes, the first event alone first."""
    events = [
        make_event(
            WorkflowExecuted(workflow_steps=["a"], success=True, duration=1.0),
            event_id=f"p{i}",
        )
        for i in range(5)
    ]
    js, appender = _Js(), _Appender()
    runner = ProjectionRunner(
        js,  # type: ignore[arg-type]
        "S",
        _Projection(),  # type: ignore[arg-type]
        durable="d",
        announcer=_Announcer(events),
        appender=appender,  # type: ignore[arg-type]
    )
    await runner._announce()
    assert appender.rounds == [["p0"]]  # the first failed: the others were not sent
    await runner._announce()
    assert appender.rounds == [["p0"]]  # the stream does not answer: nothing broadcast
    js.answering, appender.failing = True, False
    await runner._announce()
    assert appender.rounds == [["p0"], ["p0"], ["p1", "p2", "p3", "p4"]]
    await runner._announce()  # stored, not yet read back: not published again
    assert len(appender.rounds) == 3


async def test_a_fetch_that_timed_out_is_no_proof_of_being_caught_up() -> None:
    """After a fetch timed out (a busy or recovering server lets that happen mid-replay) the
    runner announces only when its consumer says nothing is pending: announcing mid-replay
    would publish again what an earlier life of the engine published (seen on the cluster:
    455 versions heard twice after an engine's restart)."""
    events = [
        make_event(WorkflowExecuted(workflow_steps=["a"], success=True, duration=1.0), event_id="p")
    ]
    js, appender = _Js(), _Appender()
    js.answering, appender.failing, js.backlog = True, False, 4_000
    runner = ProjectionRunner(
        js,  # type: ignore[arg-type]
        "S",
        _Projection(),  # type: ignore[arg-type]
        durable="d",
        announcer=_Announcer(events),
        appender=appender,  # type: ignore[arg-type]
    )
    runner._subscribed = True  # as after its first subscription
    await runner._announce(confirmed=False)
    assert appender.rounds == []
    js.backlog = 0
    await runner._announce(confirmed=False)
    assert appender.rounds == [["p"]]


async def test_a_consumer_deleted_under_a_running_runner_is_created_again(
    event_log: EventLog, tmp_path: Path
) -> None:
    """A pull request to a consumer nobody serves is answered 503 (in a cluster: its leader is
    being elected). When the consumer is really gone (deleted), the runner does not wait for a
    leader: it creates the consumer again from its checkpoint and nothing is lost."""
    first = await event_log.append_many(realistic_history(0, 200))
    store = TableStore.open(tmp_path / "live")
    durable = f"gone_{event_log.stream_name}"
    runner = ProjectionRunner(
        event_log.js,
        event_log.stream_name,
        TablesProjection(store),
        durable=durable,
        settings=RunnerSettings(batch_size=50, max_wait_s=0.1),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(20):
            while runner.checkpoint < max(r.sequence for r in first):  # type: ignore[union-attr]
                await asyncio.sleep(0.02)
            await event_log.js.delete_consumer(event_log.stream_name, durable)
            more = await event_log.append_many(realistic_history(200, 200))
            last = max(r.sequence for r in more)  # type: ignore[union-attr]
            started = asyncio.get_running_loop().time()
            while runner.checkpoint < last:
                await asyncio.sleep(0.02)
            recovered_s = asyncio.get_running_loop().time() - started
    finally:
        stop.set()
        await task
    assert recovered_s < 5.0
    clean = TableStore.in_memory()
    await replay(event_log.js, event_log.stream_name, [TablesProjection(clean)])
    assert table_digests(store.reader()) == table_digests(clean.reader())
    store.close()

"""Live projection against a real nats-server: redelivery, poison messages, namespaces,
point-in-time replay, live vs replay determinism."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from consumers.applying import apply_isolating
from consumers.deadletters import DeadLetterPublisher
from consumers.decoding import decode_batch
from consumers.queries.readers import task_metrics
from consumers.replay import replay
from consumers.runner import ProjectionRunner, RunnerSettings
from engine.events import DecisionLogged, SessionStarted, WorkflowExecuted, make_event
from engine.settings import Settings
from engine.stream import EventLog, ReadRange
from engine.stream.read import to_stored
from projections.records import DeadLetter, SequencedEvent
from projections.tables import TablesProjection, TableStore, table_digests


def _workflow(i: int, namespace: str = "default", success: bool = True) -> object:
    return make_event(
        WorkflowExecuted(
            task_type="testing",
            workflow_steps=["plan", f"step{i % 3}"],
            success=success,
            duration=float(i),
        ),
        namespace=namespace,
        session_id=f"s{i % 4}",
        event_id=f"wf-{namespace}-{i}",
    )


async def _run_until(runner: ProjectionRunner, sequence: int, timeout_s: float = 20.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(timeout_s):
            while runner.checkpoint < sequence:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TableStore]:
    table_store = TableStore.open(tmp_path / "live")
    yield table_store
    table_store.close()


def _runner(
    event_log: EventLog, projection: TablesProjection, **kwargs: object
) -> ProjectionRunner:
    return ProjectionRunner(
        event_log.js,
        event_log.stream_name,
        projection,
        durable=f"test_{event_log.stream_name}",
        settings=RunnerSettings(
            batch_size=kwargs.pop("batch_size", 50),
            max_wait_s=0.2,  # type: ignore[arg-type]
            ack_wait_s=kwargs.pop("ack_wait_s", 30.0),
        ),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


async def test_live_projection_equals_replay(event_log: EventLog, store: TableStore) -> None:
    """The same events projected live and by replay give identical tables (content hashes)."""
    results = await event_log.append_many([_workflow(i) for i in range(300)])
    last = max(r.sequence for r in results)  # type: ignore[union-attr]
    await _run_until(_runner(event_log, TablesProjection(store)), last)
    replayed = TableStore.in_memory()
    report = await replay(
        event_log.js, event_log.stream_name, [TablesProjection(replayed)], batch_size=77
    )
    assert report.messages == 300
    assert table_digests(store.reader()) == table_digests(replayed.reader())
    count = store.reader().execute("SELECT count(*) FROM workflows").fetchone()
    assert count == (300,)


async def test_redelivered_message_is_applied_once(event_log: EventLog, store: TableStore) -> None:
    """A batch committed but never acked (a crash between commit and ack) is redelivered by
    JetStream after ack_wait and changes nothing."""
    results = await event_log.append_many([_workflow(i) for i in range(10)])
    last = max(r.sequence for r in results)  # type: ignore[union-attr]
    projection = TablesProjection(store)
    runner = _runner(event_log, projection, batch_size=50, ack_wait_s=1.0)
    redelivered: list[int] = []
    real_handle = runner._handle

    async def lose_first_ack(msgs: list) -> None:  # type: ignore[type-arg]
        redelivered.extend(m.metadata.sequence.stream for m in msgs if m.metadata.num_delivered > 1)
        if runner.checkpoint == 0:
            # Commit exactly as the runner does, then "crash" before the ack.
            stored = [to_stored(m) for m in msgs]
            events, dead = decode_batch(stored, projection.name)
            apply_isolating(projection, events, dead, stored[-1].sequence)
            runner.checkpoint = stored[-1].sequence
            return
        await real_handle(msgs)

    runner._handle = lose_first_ack  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(20):
        while len(redelivered) < 10:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    assert runner.checkpoint == last
    assert sorted(redelivered) == [r.sequence for r in results]  # type: ignore[union-attr]
    rows = store.reader().execute("SELECT count(*), count(DISTINCT event_id) FROM workflows")
    assert rows.fetchone() == (10, 10)
    sessions = store.reader().execute("SELECT sum(workflow_count) FROM sessions").fetchone()
    assert sessions == (10,)


class _Exploding(TablesProjection):
    """A projection whose application raises for one marked event."""

    def apply(
        self,
        events: Sequence[SequencedEvent],
        dead_letters: Sequence[DeadLetter],
        last_sequence: int,
    ) -> None:
        for item in events:
            data = item.event.data
            if isinstance(data, WorkflowExecuted) and data.metadata.get("explode"):
                raise RuntimeError("boom: cannot apply this one")
        super().apply(events, dead_letters, last_sequence)


async def test_poison_messages_go_to_dead_letters_and_never_stall(
    event_log: EventLog, store: TableStore, nc: NatsClient, settings: Settings
) -> None:
    """Malformed JSON, wrong types, unknown type, unknown version and an event whose
    application raises all land in dead_letters with reasons; every valid event around them is
    projected; each is republished on engram.deadletter.<kind>."""
    js = event_log.js
    good = make_event(SessionStarted(session_id="s-ok"), event_id="good-1")
    now = datetime.now(UTC).isoformat()
    await event_log.append(good)
    await js.publish("memory.workflow.executed", b"{not json")
    await js.publish(
        "memory.workflow.executed",
        json.dumps(
            {
                "id": "bad-types",
                "type": "workflow.executed",
                "schema_version": 1,
                "occurred_at": now,
                "data": {"workflow_steps": ["a"], "success": "yes", "duration": 1},
            }
        ).encode(),
    )
    await js.publish(
        "memory.made.up",
        json.dumps(
            {
                "id": "bad-type",
                "type": "made.up",
                "schema_version": 1,
                "occurred_at": now,
                "data": {},
            }
        ).encode(),
    )
    await js.publish(
        "memory.session.started",
        json.dumps(
            {
                "id": "bad-version",
                "type": "session.started",
                "schema_version": 99,
                "occurred_at": now,
                "data": {"session_id": "x"},
            }
        ).encode(),
    )
    explode = make_event(
        WorkflowExecuted(
            workflow_steps=["a"], success=True, duration=1.0, metadata={"explode": True}
        ),
        event_id="explode-1",
    )
    await event_log.append(explode)
    results = await event_log.append_many([_workflow(i) for i in range(5)])
    last = max(r.sequence for r in results)  # type: ignore[union-attr]

    publisher = DeadLetterPublisher(js, settings.stream)
    await publisher.ensure()
    runner = _runner(event_log, _Exploding(store), dead_letters=publisher)
    await _run_until(runner, last)

    letters = (
        store.reader()
        .execute("SELECT sequence, kind, reason FROM dead_letters ORDER BY sequence")
        .fetchall()
    )
    kinds = [kind for _, kind, _ in letters]
    assert kinds == [
        "invalid_json",
        "invalid_event",
        "unknown_type",
        "unknown_version",
        "application_failed",
    ]
    reasons = " | ".join(reason for _, _, reason in letters)
    assert "data.success" in reasons and "made.up" in reasons and "99" in reasons
    assert "boom" in reasons
    assert store.reader().execute("SELECT count(*) FROM workflows").fetchone() == (5,)
    assert store.reader().execute(
        "SELECT count(*) FROM sessions WHERE session_id = 's-ok'"
    ).fetchone() == (1,)
    dlq = await js.stream_info(publisher.stream_name)
    assert dlq.state.messages == 5
    message = await js.get_msg(publisher.stream_name, 1)
    assert message.subject == "engram.deadletter.invalid_json"


async def test_namespaces_never_mix_in_metrics(event_log: EventLog, store: TableStore) -> None:
    """Metrics filtered by namespace count only that namespace's workflows."""
    events = [_workflow(i, "team-a", success=True) for i in range(6)]
    events += [_workflow(i, "team-b", success=False) for i in range(4)]
    results = await event_log.append_many(events)
    await _run_until(_runner(event_log, TablesProjection(store)), max(r.sequence for r in results))  # type: ignore[union-attr]
    a = task_metrics(store.reader(), "team-a", None)
    b = task_metrics(store.reader(), "team-b", "testing")
    assert [(m["namespace"], m["total_executions"], m["success_rate"]) for m in a] == [
        ("team-a", 6, 1.0)
    ]
    assert [(m["namespace"], m["total_executions"], m["success_rate"]) for m in b] == [
        ("team-b", 4, 0.0)
    ]


async def test_until_time_between_two_events_gives_the_earlier_state(
    event_log: EventLog,
) -> None:
    """Replay up to a time between two appends contains the first event only."""
    first = await event_log.append(
        make_event(
            DecisionLogged(decision_id="d1", actor="planner", decision="use cache"), event_id="d-1"
        )
    )
    await asyncio.sleep(0.3)
    between = datetime.now(UTC)
    await asyncio.sleep(0.3)
    await event_log.append(
        make_event(
            DecisionLogged(decision_id="d2", actor="planner", decision="add index"), event_id="d-2"
        )
    )
    store = TableStore.in_memory()
    report = await replay(
        event_log.js,
        event_log.stream_name,
        [TablesProjection(store)],
        ReadRange(until_time=between),
    )
    assert report.last_sequence == first.sequence
    rows = store.reader().execute("SELECT decision_id FROM decisions").fetchall()
    assert rows == [("d1",)]

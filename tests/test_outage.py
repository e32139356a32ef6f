"""A NATS outage heals by itself: the engine reconnects, resumes every projection from its
checkpoint, ends equal to a clean replay, and says so once instead of failing in a loop."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
import structlog
from nats.js import JetStreamContext

from consumers.outage import ConnectionWatch
from consumers.replay import replay
from consumers.runner import ProjectionRunner, RunnerSettings, retry_delay
from engine.connection import connect
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings
from engine.stream import AppendResult, EventLog
from engram.app import Engine
from projections.tables import TablesProjection, TableStore, table_digests
from tests.engines import settle
from tests.histories import realistic_history
from tests.servers import free_port
from tests.states import clean_replay_state, saved_state

OUTAGE_S = 15.0
LOST = "NATS connection lost; reconnecting until it is back"
RESTORED = "NATS connection restored; projections resume from their checkpoints"


async def _publish(log: EventLog, stop: asyncio.Event, published: list[int]) -> None:
    """Append batches of the realistic history until ``stop``; a batch the server did not
    acknowledge (it is away) is sent again (same ids: stored once)."""
    start = 0
    while not stop.is_set():
        batch = realistic_history(start, 25)
        try:
            results = await log.append_many(batch)
        except Exception:  # the server is away: the same batch again, later
            results = []
        if len(results) == len(batch) and all(isinstance(r, AppendResult) for r in results):
            start += len(batch)
            published.append(start)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_engine_heals_after_a_15_s_outage_and_equals_a_clean_replay(
    tmp_path: Path,
) -> None:
    """Stop the engine's nats-server for 15 s under load, start it again on the same store and
    port: the engine reconnects by itself, every projection catches up from its checkpoint and
    the state equals a clean replay; the outage is logged once each way (the second line with
    its duration) and no projection logs an error for it."""
    port = free_port()
    server = EmbeddedServer(tmp_path / "nats", port=port)
    url = server.start()
    settings = Settings(
        data_dir=tmp_path / "data",
        nats=NatsSettings(url=url),
        snapshot_every_events=0,
        snapshot_every_s=0,
    )
    engine_nc = await connect(settings.nats, url, persistent=True)
    publisher_nc = await connect(settings.nats, url, persistent=True)
    stop_engine, stop_publishing = asyncio.Event(), asyncio.Event()
    published: list[int] = []
    engine = Engine(
        settings,
        engine_nc,
        url,
        runner_settings=RunnerSettings(batch_size=100, max_wait_s=0.1),
    )
    engine_task: asyncio.Task[None] | None = None
    try:
        log = EventLog(publisher_nc, settings.stream)
        await log.ensure()
        engine_task = asyncio.create_task(engine.run(stop_engine))
        publishing = asyncio.create_task(_publish(log, stop_publishing, published))
        async with asyncio.timeout(30):  # projecting under load
            while not engine.runners or min(r.checkpoint for r in engine.runners) < 300:
                await asyncio.sleep(0.05)
        with structlog.testing.capture_logs() as logs:
            before = published[-1]
            server.stop()
            await asyncio.sleep(OUTAGE_S)
            server = EmbeddedServer(tmp_path / "nats", port=port)
            assert server.start() == url
            async with asyncio.timeout(30):  # publishing goes on after the outage
                while published[-1] < before + 500:
                    await asyncio.sleep(0.05)
            stop_publishing.set()
            await publishing
            await settle(engine)
        status = await engine.status()
        stop_engine.set()
        await asyncio.wait_for(engine_task, 30)
        assert all(not p["degraded"] for p in status["projections"].values())
        total = published[-1]
        clean = await clean_replay_state(log.js, settings, tmp_path / "clean")
    finally:
        stop_publishing.set()
        stop_engine.set()
        if engine_task is not None and not engine_task.done():
            engine_task.cancel()
        await engine_nc.close()
        await publisher_nc.close()
        server.stop()

    # Healed: everything published before, during and after the outage is projected, exactly
    # as a clean replay of the stream projects it.
    live = saved_state(settings)
    assert live == clean
    # Every memory event counted once: tasks (2 in 10) and decisions (1 in 10); identical texts
    # (the decisions "go") are one memory whose occurrences grow.
    occurrences = sum(m["occurrences"] for m in live["memories"].values())
    assert occurrences == total // 10 * 3
    # Said once: one line when the connection went, one when it came back with the duration;
    # no error from any projection (they waited for the connection instead of failing).
    lost = [e for e in logs if e["event"] == LOST]
    restored = [e for e in logs if e["event"] == RESTORED]
    assert len(lost) == 1 and len(restored) == 1, [e["event"] for e in logs]
    assert OUTAGE_S - 1 <= restored[0]["outage_s"] <= OUTAGE_S + 10
    errors = [e for e in logs if e["log_level"] in ("error", "critical")]
    assert errors == []
    loud = [e for e in logs if e["log_level"] == "warning"]
    assert len(loud) < 15, [e["event"] for e in loud]


def test_retry_delay_grows_and_is_capped() -> None:
    """A runner's pauses double with each failure in a row, from the first pause to the cap."""
    assert [retry_delay(n, 0.5, 5.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert retry_delay(0, 1.0, 30.0) == 1.0
    assert retry_delay(10_000, 1.0, 30.0) == 30.0


class _Client:
    """What ConnectionWatch reads from a nats-py client."""

    def __init__(self) -> None:
        self.is_connected = True
        self.stats: dict[str, Any] = {"reconnects": 0}


def test_connection_watch_logs_an_outage_once_each_way() -> None:
    """However often it is polled, an outage gives one line when it begins and one when it
    ends, with its duration; a reconnect too brief to be seen down is still reported."""
    client, now = _Client(), [100.0]
    watch = ConnectionWatch(client, clock=lambda: now[0], grace_s=10.0)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        watch.check()
        client.is_connected = False
        for _ in range(50):
            now[0] += 0.1
            watch.check()
        assert watch.settling() and not watch.is_up()
        client.is_connected, client.stats["reconnects"] = True, 1
        now[0] += 0.1
        for _ in range(50):
            watch.check()
        assert watch.settling()  # just back: errors now are the outage's echo
        now[0] += 11
        assert not watch.settling()
        client.stats["reconnects"] = 2  # down and up between two polls
        watch.check()
        watch.check()
    assert [e["event"] for e in logs] == [LOST, RESTORED, RESTORED]
    assert logs[1]["outage_s"] == pytest.approx(5.0, abs=0.15)
    assert watch.outages == 2


async def test_deliveries_lost_in_flight_are_fetched_again_not_acknowledged_unseen(
    event_log: EventLog, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A batch delivered but never received (cut off with the connection) leaves a gap in the
    consumer's delivery numbers: the runner resubscribes from its checkpoint instead of
    acknowledging later messages (AckPolicy.ALL would acknowledge the lost ones unseen), so
    nothing is skipped and the tables equal a clean replay."""
    results = await event_log.append_many(realistic_history(0, 300))
    last = max(r.sequence for r in results)  # type: ignore[union-attr]
    real_fetch = JetStreamContext.PullSubscription.fetch
    lost: list[int] = []

    async def lossy(self: JetStreamContext.PullSubscription, *args: Any, **kwargs: Any) -> Any:
        msgs = await real_fetch(self, *args, **kwargs)
        if not lost and msgs and msgs[0].metadata.sequence.stream > 100:
            lost.extend(m.metadata.sequence.stream for m in msgs)
            return await real_fetch(self, *args, **kwargs)  # the next batch, after a gap
        return msgs

    monkeypatch.setattr(JetStreamContext.PullSubscription, "fetch", lossy)
    store = TableStore.open(tmp_path / "live")
    runner = ProjectionRunner(
        event_log.js,
        event_log.stream_name,
        TablesProjection(store),
        durable=f"lossy_{event_log.stream_name}",
        settings=RunnerSettings(batch_size=50, max_wait_s=0.1),
    )
    stop = asyncio.Event()
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(runner.run(stop))
        try:
            async with asyncio.timeout(20):
                while runner.checkpoint < last:
                    await asyncio.sleep(0.02)
        finally:
            stop.set()
            await task
    assert lost, "no batch was dropped: the test proved nothing"
    resubscribed = [e for e in logs if e["event"].startswith("deliveries lost in flight")]
    assert len(resubscribed) == 1
    clean = TableStore.in_memory()
    await replay(event_log.js, event_log.stream_name, [TablesProjection(clean)])
    assert table_digests(store.reader()) == table_digests(clean.reader())
    rows = store.reader().execute("SELECT count(*) FROM workflows").fetchone()
    assert rows == (120,)
    store.close()

"""pattern.learned is announced exactly once per version: across a restart, a full replay into a
new data directory, and two engines on one stream — with JetStream's duplicate window shrunk to
one second, so the proof rests on the learner remembering the stream, not on dedup alone."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from consumers.compaction import compact, plan_compaction
from consumers.replay import replay
from consumers.snapshotting import default_store, take_snapshot
from engine.events import WorkflowExecuted, make_event
from engine.settings import Settings, StreamSettings
from engine.stream import EventLog, ReadRange
from projections.projection_set import open_projections
from tests.engines import running, settle


@pytest.fixture
def short_window(settings: Settings) -> Settings:
    stream = StreamSettings(name=settings.stream.name, duplicate_window_s=1.0)
    return settings.model_copy(update={"stream": stream})


async def announcements(log: EventLog) -> Counter[tuple[str, int]]:
    seen: Counter[tuple[str, int]] = Counter()
    async for stored in log.read(ReadRange(subject="memory.pattern.learned.*")):
        data = json.loads(stored.data)["data"]
        seen[(data["pattern_id"], data["version"])] += 1
    return seen


def _workflows(count: int, namespace: str = "default") -> list[object]:
    return [
        make_event(
            WorkflowExecuted(
                task_type="testing",
                workflow_steps=["plan", f"s{i % 2}"],
                success=i % 3 != 0,
                duration=1.0,
            ),
            namespace=namespace,
        )
        for i in range(count)
    ]


async def test_announced_once_across_restart_replay_and_two_engines(
    event_log: EventLog, short_window: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """A plain subscriber sees each (pattern, version) once, whatever the engines do."""
    log = EventLog(nc, short_window.stream)
    await log.ensure()
    heard: Counter[tuple[str, int]] = Counter()

    async def on_message(msg: Msg) -> None:
        data = json.loads(msg.data)["data"]
        heard[(data["pattern_id"], data["version"])] += 1

    subscription = await nc.subscribe("memory.pattern.learned.*", cb=on_message)
    await log.append_many(_workflows(40))  # type: ignore[arg-type]
    async with running(short_window, nc, tmp_path / "one") as engine:
        await settle(engine)
    first = await announcements(log)
    assert first and set(first.values()) == {1}

    # A restart after the duplicate window: nothing new to say, nothing said again.
    await asyncio.sleep(1.2)
    async with running(short_window, nc, tmp_path / "one") as engine:
        await settle(engine)
    assert await announcements(log) == first

    # A full replay into a new directory, then an engine on it: still nothing new.
    rebuilt = short_window.model_copy(update={"data_dir": tmp_path / "two"})
    projection_set = open_projections(rebuilt)
    await replay(log.js, log.stream_name, projection_set.persistent)
    projection_set.close()
    await asyncio.sleep(1.2)
    async with running(short_window, nc, tmp_path / "two") as engine:
        await settle(engine)
    assert await announcements(log) == first

    # Two engines at once on new history: every new version once.
    async with (
        running(short_window, nc, tmp_path / "one") as a,
        running(short_window, nc, tmp_path / "three") as b,
    ):
        await log.append_many(_workflows(40))  # type: ignore[arg-type]
        await settle(a)
        await settle(b)
    final = await announcements(log)
    assert len(final) > len(first)
    assert set(final.values()) == {1}
    await asyncio.sleep(0.2)
    await subscription.unsubscribe()
    missing, extra = sorted(set(final) - set(heard)), sorted(set(heard) - set(final))
    assert heard == final, (missing[:5], extra[:5])


async def test_announced_once_after_the_stream_is_compacted(
    event_log: EventLog, short_window: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Purge what a snapshot covers, start a brand-new engine (it restores that snapshot): no
    purged version is announced again, and new history is still announced once per version."""
    log = EventLog(nc, short_window.stream)
    await log.ensure()
    await log.append_many(_workflows(40))  # type: ignore[arg-type]
    async with running(short_window, nc, tmp_path / "one") as engine:
        await settle(engine)
    before = await announcements(log)
    assert before and set(before.values()) == {1}

    store = default_store(log.js, short_window)
    try:
        manifest = await take_snapshot(nc, short_window, store)
        plan = await plan_compaction(log.js, short_window, store, older_than_s=0)
        assert plan.snapshot_id == manifest.snapshot_id
        assert await compact(log.js, short_window, plan) == manifest.sequence
        assert await announcements(log) == Counter()  # every announcement was purged

        await asyncio.sleep(1.2)  # past the duplicate window: a repeat would be stored
        async with running(short_window, nc, tmp_path / "fresh") as engine:
            await settle(engine)
            assert engine.restored_from == manifest.snapshot_id
            await log.append_many(_workflows(40, namespace="later"))  # type: ignore[arg-type]
            await settle(engine)
        after = await announcements(log)
    finally:
        await log.js.delete_object_store(f"{short_window.stream.name}_SNAPSHOTS")
    assert after and set(after.values()) == {1}
    assert not set(after) & set(before)  # nothing purged was said again
    assert all(":later:" in pattern_id for pattern_id, _ in after)

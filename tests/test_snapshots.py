"""Snapshots: snapshot + tail rebuilds exactly what a full replay builds; a snapshot taken while
events arrive is consistent; corrupt snapshots are skipped; after the stream is compacted, a
brand-new engine still rebuilds the identical state."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from consumers.compaction import compact, plan_compaction
from consumers.replay import replay
from consumers.snapshotting import restore_latest, take_snapshot
from engine.settings import Settings
from engine.stream import EventLog
from projections.projection_set import ProjectionSet, open_projections
from projections.snapshots.manifest import MANIFEST
from projections.snapshots.packing import pack, unpack
from projections.snapshots.stores import DirectorySnapshots
from projections.tables import table_digests
from tests.histories import realistic_history
from tests.states import state_of
from tests.strategies.events import histories

pytestmark = pytest.mark.timeout(300)


async def rebuilt(
    event_log: EventLog, settings: Settings, directory: Path, store: DirectorySnapshots | None
) -> tuple[dict[str, Any], Any]:
    target = settings.model_copy(update={"data_dir": directory})
    manifest = None
    if store is not None:
        manifest = await restore_latest(event_log.js, target, store, directory)
    projections = open_projections(target)
    try:
        await replay(event_log.js, event_log.stream_name, projections.persistent)
        return state_of(projections), manifest
    finally:
        projections.close()


async def test_snapshot_plus_tail_equals_full_replay(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Snapshot at S, more events, then restore + tail == full replay (tables, learner,
    memories, search answers); the snapshot is announced on memory.snapshot.created."""
    await event_log.append_many(realistic_history(0, 3_000))
    store = DirectorySnapshots(tmp_path / "snapshots")
    manifest = await take_snapshot(nc, settings, store)
    assert manifest.sequence == 3_000
    assert set(manifest.files) >= {"tables/workflows.parquet", "patterns/learner-state.json.gz"}
    await event_log.append_many(realistic_history(3_000, 1_500))
    second = await take_snapshot(nc, settings, store)  # incremental: replays only the delta
    assert second.sequence > manifest.sequence
    await event_log.append_many(realistic_history(4_500, 500))

    full, _ = await rebuilt(event_log, settings, tmp_path / "full", None)
    from_snapshot, used = await rebuilt(event_log, settings, tmp_path / "fast", store)
    assert used is not None and used.snapshot_id == second.snapshot_id
    assert from_snapshot == full
    created = [
        json.loads(m.data)
        async for m in event_log.read()
        if m.subject == "memory.snapshot.created.default"
    ]
    assert [c["data"]["sequence"] for c in created] == [3_000, second.sequence]


async def test_snapshot_taken_while_events_arrive_is_consistent(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """With appends running during the snapshot, every event is in the snapshot (<= S) or in
    the tail (> S), never both and never neither."""
    await event_log.append_many(realistic_history(0, 2_000))
    store = DirectorySnapshots(tmp_path / "snapshots")

    async def keep_appending() -> None:
        for chunk in range(2_000, 4_000, 200):
            await event_log.append_many(realistic_history(chunk, 200))
            await asyncio.sleep(0.01)

    writer = asyncio.create_task(keep_appending())
    manifest = await take_snapshot(nc, settings, store)
    await writer
    restored = tmp_path / "restored"
    target = settings.model_copy(update={"data_dir": restored})
    assert await restore_latest(event_log.js, target, store, restored) is not None
    projections = open_projections(target)
    try:
        assert projections.tables.checkpoint() == manifest.sequence
        in_snapshot = (
            projections.store.reader()
            .execute("SELECT count(*), max(sequence) FROM workflows")
            .fetchone()
        )
        expected = [
            m
            async for m in event_log.read()
            if m.subject.startswith("memory.workflow.executed.") and m.sequence <= manifest.sequence
        ]
        assert in_snapshot == (len(expected), max(m.sequence for m in expected))
        await replay(event_log.js, event_log.stream_name, projections.persistent)
        total = projections.store.reader().execute("SELECT count(*) FROM workflows").fetchone()
        assert total == (1_600,)  # 4 in every 10 events, none lost, none doubled
    finally:
        projections.close()


async def test_restore_skips_invalid_snapshots_for_the_newest_valid_one_or_none(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """restore_latest skips a snapshot that fails verification (a flipped byte in the newest)
    for the newest valid older one, and restores none (a full replay follows) when none is
    valid (the older one's manifest points past the stream). Which damage fails verification,
    in every store, is tests/test_snapshot_store_contract.py's."""
    root = tmp_path / "snapshots"
    store = DirectorySnapshots(root)
    await event_log.append_many(realistic_history(0, 300))
    good = await take_snapshot(nc, settings, store)
    await event_log.append_many(realistic_history(300, 300))
    newer = await take_snapshot(nc, settings, store)
    restored = tmp_path / "r"

    async def restore_into(name: str) -> str | None:
        target = settings.model_copy(update={"data_dir": restored / name})
        manifest = await restore_latest(event_log.js, target, store, restored / name)
        return None if manifest is None else manifest.snapshot_id

    assert await restore_into("intact") == newer.snapshot_id
    table = root / newer.snapshot_id / "tables" / "workflows.parquet"
    body = bytearray(table.read_bytes())
    body[len(body) // 2] ^= 0xFF
    table.write_bytes(bytes(body))
    assert await restore_into("flipped") == good.snapshot_id
    manifest = json.loads((root / good.snapshot_id / MANIFEST).read_text())
    manifest["sequence"] = 10_000_000
    (root / good.snapshot_id / MANIFEST).write_text(json.dumps(manifest))
    assert await restore_into("past-the-stream") is None


async def test_after_compaction_a_new_engine_rebuilds_the_same_state(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Purging the history a verified snapshot covers leaves the stream rebuildable into the
    identical state; the dry run says what would go; nothing uncovered is purged."""
    await event_log.append_many(realistic_history(0, 2_000))
    store = DirectorySnapshots(tmp_path / "snapshots")
    before_snapshot = await plan_compaction(event_log.js, settings, store, older_than_s=0)
    assert before_snapshot.snapshot_id is None and before_snapshot.messages == 0
    manifest = await take_snapshot(nc, settings, store)
    await event_log.append_many(realistic_history(2_000, 500))
    full, _ = await rebuilt(event_log, settings, tmp_path / "before", None)

    plan = await plan_compaction(event_log.js, settings, store, older_than_s=0)
    assert (plan.snapshot_id, plan.purge_below) == (manifest.snapshot_id, manifest.sequence + 1)
    assert plan.messages == manifest.sequence
    assert await compact(event_log.js, settings, plan) == manifest.sequence
    info = await event_log.js.stream_info(event_log.stream_name)
    assert info.state.first_seq == manifest.sequence + 1

    after, used = await rebuilt(event_log, settings, tmp_path / "after", store)
    assert used is not None and after == full
    nothing = await plan_compaction(event_log.js, settings, store, older_than_s=3_600)
    assert nothing.purge_below == 0


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_pack_unpack_then_tail_equals_applying_everything(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    """For random histories and a random cut S: projections at S, packed, unpacked elsewhere
    and fed the tail, equal projections fed everything (no server involved)."""
    history = data.draw(histories(max_size=40))
    cut = data.draw(st.integers(0, len(history)))
    root = tmp_path_factory.mktemp("snap")

    def apply(projections: ProjectionSet, items: list[Any]) -> None:
        for projection in projections.persistent:
            if items:
                projection.apply(items, [], items[-1].sequence)

    whole = open_projections(Settings(data_dir=root / "whole"))
    apply(whole, history)
    expected = state_of(whole)
    whole.close()

    head = open_projections(Settings(data_dir=root / "head"))
    apply(head, history[:cut])
    head.close()
    files = pack(root / "head", "hashing")
    unpack(files, root / "restored")
    restored = open_projections(Settings(data_dir=root / "restored"))
    apply(restored, [e for e in history[cut:]])
    assert state_of(restored) == expected
    restored.close()


async def test_serve_snapshots_by_policy_and_an_empty_engine_starts_from_it(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """engram serve's policy snapshots into the stream's Object Store bucket after N events; an
    engine started on an empty data directory restores it and replays only the tail, ending in
    the same state as the engine that built everything."""
    from consumers.runner import RunnerSettings
    from consumers.snapshotting import default_store
    from engram.app import Engine

    policy = settings.model_copy(update={"snapshot_every_events": 1_000, "snapshot_every_s": 0})
    fast = RunnerSettings(batch_size=200, max_wait_s=0.1)

    restored: list[str | None] = []

    async def run_until_snapshot(data_dir: Path) -> dict[str, str]:
        engine = Engine(
            policy.model_copy(update={"data_dir": data_dir}),
            nc,
            str(settings.nats.url),
            runner_settings=fast,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        try:
            async with asyncio.timeout(90):
                while not await default_store(event_log.js, policy).snapshot_ids():
                    await asyncio.sleep(0.2)
                while True:
                    status = await engine.status()
                    last = status["last_sequence"]
                    if status["projections"] and all(
                        p["checkpoint"] == last for p in status["projections"].values()
                    ):
                        break
                    await asyncio.sleep(0.1)
            restored.append(engine.restored_from)
            return table_digests(engine.set.store.reader(), exclude=frozenset({"checkpoints"}))
        finally:
            stop.set()
            await task

    await event_log.append_many(realistic_history(0, 1_500))
    first = await run_until_snapshot(tmp_path / "first")
    [snapshot_id] = await default_store(event_log.js, policy).snapshot_ids()
    await event_log.append_many(realistic_history(1_500, 200))
    second = await run_until_snapshot(tmp_path / "second")
    assert restored == [None, snapshot_id]
    assert int(snapshot_id) >= 1_500
    reference, _ = await rebuilt(event_log, settings, tmp_path / "reference", None)
    assert second == {k: v for k, v in reference["tables"].items() if k != "checkpoints"}
    assert first != second  # the second one also saw the tail

"""I/O failures are the environment's, never an event's: injected at every write point of every
projection (tables, vectors, learner, sessions, snapshots), they stop the projection without a
dead letter or an ack, show it degraded with the real cause, and once removed the projection
resumes exactly where it stopped and equals a clean replay. Temporary files never stay."""

from __future__ import annotations

import asyncio
import errno
import gzip
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import hnswlib
import numpy as np
import pytest
import structlog
from nats.js import JetStreamContext

from consumers.applying import ProjectionStalledError, apply_isolating
from consumers.deadletters import DeadLetterPublisher, dead_letter_stream_name
from consumers.replay import replay
from consumers.runner import ProjectionRunner, RunnerSettings
from consumers.snapshotting import WORK_DIR, default_store, restore_latest
from engine.errors import ProjectionError, StoreLockedError
from engine.events import WorkflowExecuted, make_event
from engine.settings import Settings
from engine.stream import EventLog
from projections.atomic_files import write_atomic
from projections.base import Projection
from projections.embedders import HashingEmbedder
from projections.faults import describe, environmental_cause, is_environmental
from projections.learning import LearnerProjection
from projections.learning.persistence import dump_state
from projections.projection_set import open_projections
from projections.records import DeadLetter, SequencedEvent
from projections.save_policy import SavePolicy
from projections.sessions import SessionCompactor, state_digest
from projections.snapshots.packing import pack, unpack
from projections.snapshots.stores import DirectorySnapshots
from projections.tables import DATABASE_FILE, TablesProjection, TableStore, table_digests
from projections.vectors.hnsw_file import check_complete
from projections.vectors.projection import VectorProjection
from tests.engines import running, settle
from tests.faults import ENOSPC_TEXT, DiskFull, FailingCommits, leftovers
from tests.histories import realistic_history
from tests.states import QUERIES, clean_replay_state, saved_state, state_of

STALLED = "projection stalled: nothing is acknowledged or dead-lettered until the cause is gone"
ENOSPC = OSError(errno.ENOSPC, ENOSPC_TEXT)


# -- which failures are the environment's (pure) ----------------------------------------------


def _raised_while(cause: BaseException, effect: BaseException) -> BaseException:
    """``effect`` raised while handling ``cause`` (its __context__), as Python chains them."""

    def fail(error: BaseException) -> None:
        raise error

    try:
        try:
            fail(cause)
        except BaseException:
            fail(effect)
    except BaseException as chained:
        return chained
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    ("error", "environmental"),
    [
        (OSError(errno.ENOSPC, ENOSPC_TEXT), True),
        (OSError(errno.EIO, "Input/output error"), True),
        (PermissionError(errno.EACCES, "Permission denied"), True),
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), True),
        (MemoryError(), True),
        (duckdb.IOException('Could not write file "x.wal": No space left on device'), True),
        (duckdb.OutOfMemoryException("could not allocate block of size 256KiB"), True),
        (duckdb.ConnectionException("Connection already closed!"), True),
        (duckdb.FatalException("FATAL Error: Failed to create checkpoint"), True),
        (duckdb.InternalException("INTERNAL Error: unexpected state"), True),
        (duckdb.TransactionException("cannot rollback - no transaction is active"), True),
        (duckdb.InvalidInputException("database has been invalidated because of ..."), True),
        (StoreLockedError("engram.duckdb is in use by another process"), True),
        (ValueError("bad value in the event"), False),
        (RuntimeError("boom: cannot apply this one"), False),
        (KeyError("workflow_steps"), False),
        (duckdb.ConstraintException("NOT NULL constraint failed: workflows.task_type"), False),
        (duckdb.ConversionException("Could not convert string 'x' to INT64"), False),
        (ProjectionError("a projection could not apply an event"), False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else str(value),
)
def test_environmental_failures_are_told_apart_from_content_failures(
    error: BaseException, environmental: bool
) -> None:
    """OSError, memory, DuckDB's I/O, memory, connection, transaction, fatal and internal
    errors, an invalidated database and a locked store are the environment's; the rest (a
    constraint, a conversion, a bug's ValueError) may be the event's."""
    assert is_environmental(error) is environmental


def test_an_error_raised_from_or_during_an_environmental_one_is_environmental() -> None:
    """A failed rollback raised while handling ENOSPC, or a RuntimeError raised from it, is
    classified by its cause, and describe() names that cause, not the error that hid it."""
    rollback = _raised_while(ENOSPC, duckdb.Error("cannot rollback - no transaction is active"))
    assert is_environmental(rollback)
    assert environmental_cause(rollback) is ENOSPC
    assert describe(rollback) == f"OSError: [Errno {errno.ENOSPC}] {ENOSPC_TEXT}"
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = OSError(errno.EIO, "Input/output error", "/data/x.tmp")
    assert describe(wrapped) == f"OSError: [Errno {errno.EIO}] Input/output error /data/x.tmp"
    assert not is_environmental(_raised_while(ValueError("a"), KeyError("b")))
    assert describe(ValueError("x" * 500), limit=40) == "ValueError: " + "x" * 25 + "..."


# -- apply_isolating: the environment's failure dead-letters nothing ----------------------------


class _Flaky:
    """A projection that records what it committed and fails as told."""

    name = "flaky"

    def __init__(self, fail: Callable[[Sequence[SequencedEvent], Sequence[DeadLetter]], None]):
        self.fail = fail
        self.committed: list[int] = []
        self.letters: list[DeadLetter] = []
        self._checkpoint = 0

    def checkpoint(self) -> int:
        return self._checkpoint

    def apply(
        self, events: Sequence[SequencedEvent], dead: Sequence[DeadLetter], last: int
    ) -> None:
        self.fail(events, dead)
        self.committed += [e.sequence for e in events]
        self.letters += dead
        self._checkpoint = last

    def close(self) -> None:
        return None


def _sequenced(count: int) -> list[SequencedEvent]:
    now = datetime.now(UTC)
    return [
        SequencedEvent(sequence=i + 1, stored_at=now, event=e)
        for i, e in enumerate(realistic_history(0, count))
    ]


def test_a_full_disk_stalls_the_batch_without_any_dead_letter() -> None:
    """Every event of a batch that fails with ENOSPC stays out of the dead letters (today's
    bug: a whole batch of 22 valid events became application_failed)."""

    def full(_events: Sequence[SequencedEvent], _dead: Sequence[DeadLetter]) -> None:
        raise OSError(errno.ENOSPC, ENOSPC_TEXT, "/data/engram.duckdb.wal")

    projection = _Flaky(full)
    with pytest.raises(ProjectionStalledError) as raised:
        apply_isolating(projection, _sequenced(22), [], 22)
    assert raised.value.dead_letters == []
    assert projection.letters == [] and projection.committed == []
    assert ENOSPC_TEXT in raised.value.reason and raised.value.projection == "flaky"


def test_a_poison_event_is_dead_lettered_and_a_later_stall_keeps_that_letter() -> None:
    """While isolating a poison event, a disk that fills up stops the isolation: the poison's
    letter (content) is kept for the caller to publish, the valid events after it are not
    dead-lettered, and applying the batch again later finishes it."""
    events = _sequenced(10)
    full = [False]

    def fail(batch: Sequence[SequencedEvent], _dead: Sequence[DeadLetter]) -> None:
        if any(e.sequence == 3 for e in batch):
            raise ValueError("poison content")
        if full[0] and any(e.sequence == 6 for e in batch):
            raise OSError(errno.ENOSPC, ENOSPC_TEXT)

    projection = _Flaky(fail)
    full[0] = True
    with pytest.raises(ProjectionStalledError) as raised:
        apply_isolating(projection, events, [], 10)
    assert [d.sequence for d in raised.value.dead_letters] == [3]
    assert [d.kind for d in projection.letters] == ["application_failed"]
    assert projection.committed == [1, 2, 4, 5] and projection.checkpoint() == 5
    full[0] = False
    # Applied again from where it stopped (the runner does exactly this after its pause).
    rest = [e for e in events if e.sequence > projection.checkpoint()]
    assert apply_isolating(projection, rest, [], 10) == []
    assert projection.committed == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert [d.sequence for d in projection.letters] == [3]


# -- the table store: the real cause, and a database invalidated by a fatal error ----------------


def test_a_failed_commit_reports_the_disk_not_the_rollback(tmp_path: Path) -> None:
    """A COMMIT that fails on a full disk raises DuckDB's own error naming the disk (today it
    was hidden by 'cannot rollback - no transaction is active'); the failed batch is not
    stored, and the same batch commits once the disk has room."""
    store = TableStore.open(tmp_path)
    projection = TablesProjection(store)
    fault = FailingCommits(store)
    events = _sequenced(30)
    projection.apply(events[:10], [], 10)
    fault.active = True
    with pytest.raises(duckdb.TransactionException) as raised:
        projection.apply(events[10:], [], 30)
    assert ENOSPC_TEXT in str(raised.value)
    assert "no transaction is active" in " ".join(raised.value.__notes__)
    assert store.checkpoint("tables") == 10
    fault.active = False
    projection.apply(events[10:], [], 30)
    clean = TablesProjection(TableStore.in_memory())
    clean.apply(events, [], 30)
    assert table_digests(store.reader()) == table_digests(clean.store.reader())
    store.close()


def test_a_fatal_error_reopens_the_database_on_the_next_commit(tmp_path: Path) -> None:
    """After DuckDB's fatal error (the database is invalidated until reopened) the store opens
    its file again on the next call; the checkpoint is read again (the failed COMMIT may or may
    not be stored) and the state equals a clean replay."""
    store = TableStore.open(tmp_path)
    projection = TablesProjection(store)
    fault = FailingCommits(store, fatal=True)
    events = _sequenced(30)
    projection.apply(events[:10], [], 10)
    first = store._connection
    fault.active = True
    for _ in range(3):
        with pytest.raises(duckdb.FatalException):
            projection.apply(events[10:], [], 30)
    assert store._connection is not first  # reopened at each attempt
    fault.active = False
    projection.apply(events[10:], [], 30)
    assert projection.checkpoint() == 30 == store.checkpoint("tables")
    clean = TablesProjection(TableStore.in_memory())
    clean.apply(events, [], 30)
    assert table_digests(store.reader()) == table_digests(clean.store.reader())
    store.close()


# -- whole-state saves and files ---------------------------------------------------------------


def test_a_failed_save_stays_owed_until_it_succeeds() -> None:
    """A save that raised is due again at once, whatever the counts and the interval; a
    successful one clears it and spaces the next one again."""
    now = [0.0]
    policy = SavePolicy(every_events=100, min_interval_s=60, clock=lambda: now[0])
    now[0] = 61.0
    assert policy.due(100)

    def failing() -> None:
        raise OSError(errno.ENOSPC, ENOSPC_TEXT)

    with pytest.raises(OSError, match=ENOSPC_TEXT):
        policy.timed(failing)
    assert policy.due(0)
    policy.timed(lambda: None)
    assert not policy.due(0) and not policy.due(1_000)


def test_write_atomic_on_a_full_disk_keeps_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails half-way leaves the previous file intact and no temporary file."""
    target = tmp_path / "state.json.gz"
    write_atomic(target, b"old")
    fault = DiskFull(tmp_path).install(monkeypatch)
    fault.active = True
    with pytest.raises(OSError, match=ENOSPC_TEXT) as raised:
        write_atomic(target, b"new" * 1000)
    assert raised.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []
    fault.active = False
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"


def test_a_truncated_hnswlib_file_is_caught(tmp_path: Path) -> None:
    """hnswlib's save_index reports nothing when the disk fills up and leaves a truncated
    file; check_complete refuses one cut anywhere (and accepts the whole file)."""
    index = hnswlib.Index(space="cosine", dim=16)
    index.init_index(max_elements=2_000, M=8)
    index.add_items(np.random.default_rng(7).random((1_500, 16), dtype=np.float32))
    whole = tmp_path / "whole.hnsw"
    index.save_index(str(whole))
    check_complete(whole, 1_500)
    body = whole.read_bytes()
    for cut in (len(body) - 1, len(body) - 5, len(body) // 2, 200, 10):
        cut_file = tmp_path / f"cut-{cut}.hnsw"
        cut_file.write_bytes(body[:cut])
        with pytest.raises(OSError, match="incomplete"):
            check_complete(cut_file, 1_500)
    with pytest.raises(OSError, match="elements"):
        check_complete(whole, 1_499)


def test_snapshot_files_and_restore_on_a_full_disk_leave_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Writing a snapshot file into a directory store, and restoring a snapshot into a data
    directory, fail cleanly on a full disk: no temporary file, no partial file, no database
    (the next start restores again); both succeed once there is room."""
    source = tmp_path / "source"
    projection = TablesProjection(TableStore.open(source))
    projection.apply(_sequenced(40), [], 40)
    projection.close()
    files = pack(source, "hashing")
    store_root, target = tmp_path / "snapshots", tmp_path / "restored"
    fault = DiskFull(store_root, target).install(monkeypatch)
    fault.active = True
    store = DirectorySnapshots(store_root)
    with pytest.raises(OSError, match=ENOSPC_TEXT):
        store._write(store_root / "000000000040" / "tables/workflows.parquet", b"x" * 1_000)
    learner_file = gzip.compress(b"{}")
    files["patterns/learner-state.json.gz"] = learner_file
    with pytest.raises(OSError, match=ENOSPC_TEXT):
        unpack(files, target)
    assert leftovers(tmp_path) == []
    assert not (target / DATABASE_FILE).exists()
    assert not list(store_root.rglob("*.parquet"))
    fault.active = False
    unpack(files, target)
    restored = TableStore.open(target)
    original = TableStore.open(source)
    assert table_digests(restored.reader()) == table_digests(original.reader())
    assert (target / "patterns/learner-state.json.gz").read_bytes() == learner_file
    restored.close()
    original.close()
    assert leftovers(tmp_path) == []


# -- every projection under a runner, against a real server ------------------------------------


@dataclass
class _Point:
    """One write point: how to build its projection, break its disk, and compare states."""

    name: str
    build: Callable[[Path], Projection]
    clean: Callable[[], Projection]
    state: Callable[[Projection], Any]
    fatal: bool = False


def _policy() -> SavePolicy:
    return SavePolicy(every_events=1, min_interval_s=0, max_share=1.0)  # a save at every batch


def _vectors_state(projection: Projection) -> Any:
    assert isinstance(projection, VectorProjection)
    return (
        {k: m.to_json() for k, m in projection.memories.items()},
        [
            [h["id"] for h in projection.search(namespace=ns, text=q, top_k=5)]
            for q in QUERIES
            for ns in ("default", "team-a")
        ],
    )


def _tables_state(projection: Projection) -> Any:
    assert isinstance(projection, TablesProjection)
    return table_digests(projection.store.reader())


def _learner_state(projection: Projection) -> Any:
    assert isinstance(projection, LearnerProjection)
    return dump_state(projection.state)


def _sessions_state(projection: Projection) -> Any:
    assert isinstance(projection, SessionCompactor)
    return state_digest(projection.state)


POINTS = [
    _Point(
        "tables",
        lambda d: TablesProjection(TableStore.open(d)),
        lambda: TablesProjection(TableStore.in_memory()),
        _tables_state,
    ),
    _Point(
        "tables-fatal",
        lambda d: TablesProjection(TableStore.open(d)),
        lambda: TablesProjection(TableStore.in_memory()),
        _tables_state,
        fatal=True,
    ),
    _Point(
        "vectors",
        lambda d: VectorProjection(d, HashingEmbedder(), save_policy=_policy()),
        lambda: VectorProjection(None, HashingEmbedder()),
        _vectors_state,
    ),
    _Point(
        "patterns",
        lambda d: LearnerProjection(d, save_policy=_policy()),
        lambda: LearnerProjection(None),
        _learner_state,
    ),
    _Point(
        "sessions",
        lambda d: SessionCompactor(d, save_policy=_policy()),
        lambda: SessionCompactor(None),
        _sessions_state,
    ),
]


async def _until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.02)


async def _dead_letters_published(js: JetStreamContext, settings: Settings) -> int:
    info = await js.stream_info(dead_letter_stream_name(settings.stream))
    return int(info.state.messages)


@pytest.mark.parametrize("point", POINTS, ids=lambda p: p.name)
async def test_a_full_disk_at_each_write_point_stalls_then_resumes_where_it_stopped(
    point: _Point,
    event_log: EventLog,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The projection's disk fills up under a live runner: nothing is dead-lettered (table and
    stream), nothing after its checkpoint is acknowledged, the runner reports degraded with the
    real cause (logged once, not per retry), no temporary file stays; it retries with growing
    pauses without restarting from an old checkpoint; once there is room it resumes exactly
    where it stopped and equals a clean replay, in memory and as saved on disk."""
    directory = tmp_path / point.name
    projection = point.build(directory)
    if isinstance(projection, TablesProjection):
        fault: DiskFull | FailingCommits = FailingCommits(projection.store, fatal=point.fatal)
    else:
        fault = DiskFull(directory).install(monkeypatch)
    dead_letters = DeadLetterPublisher(event_log.js, settings.stream)
    await dead_letters.ensure()
    durable = f"faults_{point.name.replace('-', '_')}"
    runner = ProjectionRunner(
        event_log.js,
        event_log.stream_name,
        projection,
        durable=durable,
        settings=RunnerSettings(
            batch_size=50, max_wait_s=0.1, retry_backoff_s=0.02, max_backoff_s=0.3
        ),
        dead_letters=dead_letters,
    )
    first = await event_log.append_many(realistic_history(0, 200))
    healthy_until = max(r.sequence for r in first)  # type: ignore[union-attr]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        await _until(lambda: runner.checkpoint == healthy_until)
        with structlog.testing.capture_logs() as logs:
            fault.active = True
            more = await event_log.append_many(realistic_history(200, 200))
            last = max(r.sequence for r in more)  # type: ignore[union-attr]
            await _until(lambda: runner.degraded and fault.failures >= 4)
            reason = runner.reason
            stuck_at = runner.checkpoint
            consumer = await event_log.js.consumer_info(event_log.stream_name, durable)
            tmp_files = leftovers(directory)
            dead_during = await _dead_letters_published(event_log.js, settings)
            fault.active = False
            await _until(lambda: runner.checkpoint == last and not runner.degraded)
    finally:
        stop.set()
        await task
    assert reason is not None and ENOSPC_TEXT in reason, reason
    assert "rollback" not in reason
    assert stuck_at == healthy_until  # stopped exactly there ...
    assert consumer.ack_floor.stream_seq <= healthy_until  # ... with nothing acked after it
    assert tmp_files == []
    assert dead_during == 0 == await _dead_letters_published(event_log.js, settings)
    stalls = [e for e in logs if e["event"] == STALLED]
    assert len(stalls) == 1 and stalls[0]["log_level"] == "error", [e["event"] for e in logs]
    restarts = [e for e in logs if e["event"] == "projection started"]
    assert restarts == []  # retried in place, never back to an older checkpoint
    assert any(e["event"] == "projection resumed" for e in logs)

    clean = point.clean()
    await replay(event_log.js, event_log.stream_name, [clean])
    assert point.state(projection) == point.state(clean)
    if isinstance(projection, TablesProjection):
        letters = projection.store.reader().execute("SELECT count(*) FROM dead_letters")
        assert letters.fetchone() == (0,)
    projection.close()
    reopened = point.build(directory)  # what a restart finds on disk
    try:
        assert reopened.checkpoint() == last
        assert point.state(reopened) == point.state(clean)
    finally:
        reopened.close()
        clean.close()
    assert leftovers(directory) == []


# -- the snapshotting projection of a running engine --------------------------------------------


async def test_scheduled_snapshots_on_a_full_disk_are_degraded_then_taken(
    event_log: EventLog, settings: Settings, nc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The snapshotting projection's disk is full: the engine's projections go on, engram
    status shows snapshots degraded with the cause, nothing is dead-lettered and no temporary
    file stays; once there is room the next attempt takes the snapshot, and restoring it plus
    the tail equals a clean replay."""
    settings = settings.model_copy(update={"snapshot_every_events": 100, "snapshot_every_s": 0})
    fault = DiskFull(settings.data_dir / WORK_DIR).install(monkeypatch)
    fault.active = True
    store = default_store(event_log.js, settings)
    async with running(settings, nc, settings.data_dir) as engine:
        engine.snapshot_poll_s = 0.2
        await event_log.append_many(realistic_history(0, 300))
        async with asyncio.timeout(30):
            while not (await engine.status())["snapshots"]["degraded"]:
                await asyncio.sleep(0.1)
        status = await engine.status()
        assert ENOSPC_TEXT in status["snapshots"]["reason"]
        assert all(not p["degraded"] for p in status["projections"].values())
        assert leftovers(settings.data_dir / WORK_DIR) == []
        assert await store.snapshot_ids() == []
        fault.active = False
        async with asyncio.timeout(30):
            while (
                not await store.snapshot_ids() or (await engine.status())["snapshots"]["degraded"]
            ):
                await asyncio.sleep(0.1)
        await event_log.append(
            make_event(WorkflowExecuted(workflow_steps=["after"], success=True, duration=1.0))
        )
        await settle(engine)
        letters = engine.set.store.reader().execute("SELECT count(*) FROM dead_letters")
        assert letters.fetchone() == (0,)
    assert await _dead_letters_published(event_log.js, settings) == 0
    restored_dir = settings.data_dir.parent / "restored"
    target = settings.model_copy(update={"data_dir": restored_dir})
    manifest = await restore_latest(event_log.js, target, store, restored_dir)
    assert manifest is not None and manifest.sequence >= 300
    restored = open_projections(target)
    try:
        await replay(event_log.js, event_log.stream_name, restored.persistent)
        rebuilt = state_of(restored)
    finally:
        restored.close()
    clean = await clean_replay_state(event_log.js, settings, settings.data_dir.parent / "clean")
    assert rebuilt == clean
    assert saved_state(settings) == clean
    assert leftovers(settings.data_dir) == []


async def test_stopping_on_a_full_disk_says_so_and_the_next_start_loses_nothing(
    event_log: EventLog, settings: Settings, nc: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An engine stopped while its disk is full cannot save its whole-state projections: it
    says so in one clear error naming the cause (not a traceback of the rollback), and the
    next start, with room again, resumes from the saved checkpoints and equals a clean
    replay."""
    data_dir = settings.data_dir
    fault = DiskFull(data_dir / "patterns", data_dir / "sessions").install(monkeypatch)

    async def run_then_fill() -> None:
        async with running(settings, nc, data_dir) as engine:
            await event_log.append_many(realistic_history(0, 300))
            await settle(engine)
            fault.active = True

    with pytest.raises(ProjectionError, match=ENOSPC_TEXT) as raised:
        await run_then_fill()
    assert "nothing is lost" in str(raised.value)
    assert leftovers(data_dir) == []
    fault.active = False
    async with running(settings, nc, data_dir) as engine:
        await event_log.append_many(realistic_history(300, 100))
        await settle(engine)
    clean = await clean_replay_state(event_log.js, settings, data_dir.parent / "clean")
    live = saved_state(settings)
    # The vector index was saved by the first engine and grown by the second: hnswlib draws new
    # levels after a load, so equally similar neighbours may come in another order.
    del live["answers"], clean["answers"]
    assert live == clean

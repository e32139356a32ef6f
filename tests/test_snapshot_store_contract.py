"""The SnapshotStore contract, run against every store: a directory and a JetStream Object Store
bucket on a real nats-server.

What every store promises (projections/snapshots/stores.py): a file put is got back byte for
byte, by this instance and by another one over the same place; a missing file is None; only
snapshots with a manifest are listed, oldest first; a deleted snapshot is unlisted and its bytes
are gone from the store, the others untouched; a put that fails half-way leaves nothing
visible (no file, no snapshot, no leftovers) and a reader never sees a partial file; a file
damaged behind the store's back fails verification (SnapshotInvalidError naming it), never
an unexpected error and never a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from consumers.snapshotting import SnapshotInvalidError, verified_snapshot
from engine.connection import connect
from engine.settings import NatsSettings
from projections.snapshots.manifest import MANIFEST, FileEntry, SnapshotManifest, sha256
from projections.snapshots.stores import DirectorySnapshots, ObjectStoreSnapshots, SnapshotStore
from tests.faults import DiskFull, leftovers

pytestmark = pytest.mark.timeout(60)

CHUNK = 128 * 1024
"""The Object Store's chunk size (nats-py's default): bodies above it span several messages."""

STREAM = "ENGRAM"


@dataclass
class Backend:
    """One store implementation and what the suite needs to reach behind it."""

    name: str
    store: SnapshotStore
    reopen: Callable[[], SnapshotStore]
    """Another instance over the same place (another process's view)."""
    rewrite: Callable[[str, str, bytes], Awaitable[None]]
    """Replace a stored file's bytes behind the store's back (bit rot, a truncated copy)."""
    broken_writes: Callable[[], contextlib.AbstractContextManager[None]]
    """While entered, every put fails half-way through writing."""
    residue: Callable[[], Awaitable[int]]
    """How much the store holds (files or messages): a failed put must not add to it."""
    held: Callable[[], Awaitable[bytes]]
    """Every byte the store holds (files, or the bucket's messages), for erasure checks."""


def _directory(root: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    async def rewrite(snapshot_id: str, name: str, data: bytes) -> None:
        (root / snapshot_id / name).write_bytes(data)

    @contextlib.contextmanager
    def broken_writes() -> Iterator[None]:
        fault = DiskFull(root).install(monkeypatch)  # half of each write, then ENOSPC
        fault.active = True
        try:
            yield
        finally:
            fault.active = False

    def count() -> int:
        return sum(1 for p in root.rglob("*") if p.is_file()) + len(leftovers(root))

    async def residue() -> int:
        return await asyncio.to_thread(count)

    def everything() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())

    async def held() -> bytes:
        return await asyncio.to_thread(everything)

    return Backend(
        "directory",
        DirectorySnapshots(root),
        lambda: DirectorySnapshots(root),
        rewrite,
        broken_writes,
        residue,
        held,
    )


def _object_store(nc: NatsClient, bucket: str, monkeypatch: pytest.MonkeyPatch) -> Backend:
    js = nc.jetstream()
    stream = f"OBJ_{bucket}"

    async def rewrite(snapshot_id: str, name: str, data: bytes) -> None:
        info = await (await js.object_store(bucket)).get_info(f"{snapshot_id}/{name}")
        chunks = f"$O.{bucket}.C.{info.nuid}"
        await js.purge_stream(stream, subject=chunks)
        for start in range(0, len(data), CHUNK):  # the meta keeps the original digest and size
            await js.publish(chunks, data[start : start + CHUNK])

    @contextlib.contextmanager
    def broken_writes() -> Iterator[None]:
        real = js.publish
        published = 0

        async def publish(subject: str, payload: bytes = b"", **kwargs: Any) -> Any:
            nonlocal published
            published += 1
            if published % 2 == 0:  # the 2nd chunk, or the meta of a one-chunk file
                raise OSError(errno.ECONNRESET, "connection lost half-way through the put")
            return await real(subject, payload, **kwargs)

        with monkeypatch.context() as patch:
            patch.setattr(js, "publish", publish)
            yield

    async def residue() -> int:
        try:
            return (await js.stream_info(stream)).state.messages
        except NotFoundError:
            return 0

    async def held() -> bytes:
        try:
            state = (await js.stream_info(stream)).state
        except NotFoundError:
            return b""
        parts = []
        for sequence in range(state.first_seq, state.last_seq + 1):
            with contextlib.suppress(NotFoundError):
                parts.append((await js.get_msg(stream, sequence)).data or b"")
        return b"".join(parts)

    return Backend(
        "object-store",
        ObjectStoreSnapshots(js, bucket),
        lambda: ObjectStoreSnapshots(nc.jetstream(), bucket),
        rewrite,
        broken_writes,
        residue,
        held,
    )


@pytest.fixture(params=["directory", "object-store"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Backend]:
    """Each store in turn; the Object Store gets a bucket of this test's own on the session's
    nats-server, deleted afterwards."""
    if request.param == "directory":
        yield _directory(tmp_path / "snapshots", monkeypatch)
        return
    # Requested here, not as arguments: the directory runs need no server.
    nc = await connect(NatsSettings(), request.getfixturevalue("nats_url"))
    bucket = request.getfixturevalue("stream_name") + "_SNAPSHOTS"
    try:
        yield _object_store(nc, bucket, monkeypatch)
        with contextlib.suppress(NotFoundError):
            await nc.jetstream().delete_object_store(bucket)
    finally:
        await nc.drain()


def _body(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


FILES = {
    "tables/workflows.parquet": _body(3 * CHUNK + 17, 1),  # several chunks, a partial last one
    "tables/empty.parquet": b"",
    "vectors/hashing/index.bin": _body(CHUNK, 2),  # exactly one chunk
    "patterns/learner-state.json.gz": _body(100, 3),
}


def _manifest(snapshot_id: str, files: dict[str, bytes], sequence: int = 10) -> SnapshotManifest:
    return SnapshotManifest(
        snapshot_id=snapshot_id,
        stream=STREAM,
        sequence=sequence,
        created_at="2026-11-28T12:00:00+00:00",
        engram_version="test",
        schema_versions={},
        embedder="hashing",
        files={name: FileEntry(size=len(b), sha256=sha256(b)) for name, b in files.items()},
    )


async def _write_snapshot(
    store: SnapshotStore, snapshot_id: str, files: dict[str, bytes], sequence: int = 10
) -> SnapshotManifest:
    """What take_snapshot does: every file, then the manifest (the commit point)."""
    manifest = _manifest(snapshot_id, files, sequence)
    for name, body in files.items():
        await store.put(snapshot_id, name, body)
    await store.put(snapshot_id, MANIFEST, manifest.model_dump_json().encode())
    return manifest


async def _verify(store: SnapshotStore, snapshot_id: str) -> dict[str, bytes]:
    _, files = await verified_snapshot(store, snapshot_id, STREAM, first_seq=1, last_seq=100)
    return files


# -- put / get -------------------------------------------------------------------------------


async def test_a_put_file_is_got_back_byte_for_byte_by_any_instance(backend: Backend) -> None:
    """Empty, one-chunk and several-chunk files under nested names come back identical, from
    the instance that wrote them and from a new one over the same place."""
    for name, body in FILES.items():
        await backend.store.put("000000000010", name, body)
    for reader in (backend.store, backend.reopen()):
        for name, body in FILES.items():
            assert await reader.get("000000000010", name) == body, name


async def test_what_was_never_put_is_none(backend: Backend) -> None:
    """get of a file never put is None: in an empty store, in an unknown snapshot, and a file
    an existing snapshot does not have."""
    assert await backend.store.get("000000000010", "tables/workflows.parquet") is None
    await backend.store.put("000000000010", "tables/workflows.parquet", b"rows")
    assert await backend.store.get("000000000010", "tables/other.parquet") is None
    assert await backend.store.get("000000000011", "tables/workflows.parquet") is None


async def test_a_second_put_replaces_the_file(backend: Backend) -> None:
    """Putting a file again (a snapshot retaken at the same sequence) replaces its bytes,
    including with a shorter body, and leaves one snapshot listed."""
    await _write_snapshot(backend.store, "000000000010", {"a.bin": _body(2 * CHUNK, 4)})
    await backend.store.put("000000000010", "a.bin", b"short")
    assert await backend.reopen().get("000000000010", "a.bin") == b"short"
    assert await backend.store.snapshot_ids() == ["000000000010"]


async def test_location_names_the_place(backend: Backend) -> None:
    """location (recorded in snapshot.created) is the same for every instance over one place."""
    assert backend.store.location
    assert backend.store.location == backend.reopen().location


# -- list ------------------------------------------------------------------------------------


async def test_an_empty_store_lists_nothing(backend: Backend) -> None:
    """A store nothing was written to lists no snapshot (no directory, no bucket yet)."""
    assert await backend.store.snapshot_ids() == []


async def test_only_snapshots_with_a_manifest_are_listed(backend: Backend) -> None:
    """Files without their manifest (a snapshot being written, or one that failed) are not a
    snapshot; the manifest, written last, makes it one."""
    await _write_snapshot(backend.store, "000000000010", FILES)
    await backend.store.put("000000000020", "tables/workflows.parquet", b"rows")
    assert await backend.store.snapshot_ids() == ["000000000010"]
    await backend.store.put("000000000020", MANIFEST, b"{}")
    assert await backend.reopen().snapshot_ids() == ["000000000010", "000000000020"]


async def test_ids_are_listed_oldest_first_whatever_the_order_of_writing(
    backend: Backend,
) -> None:
    """snapshot_ids is sorted by id (zero-padded sequences: oldest first) and lists each once,
    however many files a snapshot has."""
    ids = ["000000001000", "000000000020", "000000000300", "000000000021"]
    for snapshot_id in ids:
        await _write_snapshot(backend.store, snapshot_id, {"a.bin": b"a", "b/c.bin": b"c"})
    assert await backend.store.snapshot_ids() == sorted(ids)


# -- delete ----------------------------------------------------------------------------------


async def test_a_deleted_snapshot_is_gone_bytes_and_all_and_the_others_stay(
    backend: Backend,
) -> None:
    """delete unlists a snapshot for every instance, its files read as missing, and none of
    its bytes remain in the store (a purged tenant's data must not survive in an old
    snapshot); the snapshots beside it still verify; deleting it again, or one never written,
    or one without its manifest (files only) is fine and removes what is there."""
    doomed = {"tables/workflows.parquet": _body(2 * CHUNK + 9, 11), "b.bin": _body(300, 12)}
    await _write_snapshot(backend.store, "000000000010", FILES)
    await _write_snapshot(backend.store, "000000000020", doomed, sequence=20)
    await backend.store.put("000000000030", "partial.bin", _body(500, 13))
    await backend.store.delete("000000000020")
    await backend.store.delete("000000000030")
    for reader in (backend.store, backend.reopen()):
        assert await reader.snapshot_ids() == ["000000000010"]
        for name in (*doomed, MANIFEST):
            assert await reader.get("000000000020", name) is None
    held = await backend.held()
    assert all(body not in held for body in doomed.values())
    assert _body(500, 13) not in held
    assert await _verify(backend.reopen(), "000000000010") == FILES
    await backend.store.delete("000000000020")
    await backend.store.delete("000000000099")
    assert await backend.store.snapshot_ids() == ["000000000010"]


# -- verify ----------------------------------------------------------------------------------


async def test_a_written_snapshot_verifies_with_every_file(backend: Backend) -> None:
    """The manifest and files as take_snapshot writes them pass every check and come back
    whole (the baseline the damage tests below depart from)."""
    manifest = await _write_snapshot(backend.store, "000000000010", FILES)
    found, files = await verified_snapshot(backend.reopen(), "000000000010", STREAM, 1, 100)
    assert found == manifest
    assert files == FILES


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "a flipped byte": lambda b: (
        b[: len(b) // 2] + bytes([b[len(b) // 2] ^ 0xFF]) + b[len(b) // 2 + 1 :]
    ),
    "truncated": lambda b: b[: len(b) // 3],
    "truncated to nothing": lambda b: b"",
    "a byte more": lambda b: b + b"\x00",
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("name", ["tables/workflows.parquet", "patterns/learner-state.json.gz"])
async def test_a_file_damaged_behind_the_store_fails_verification(
    backend: Backend, damage: str, name: str
) -> None:
    """A stored file whose bytes changed after the put (bit rot, a truncated copy) makes
    verification raise SnapshotInvalidError naming the snapshot and the file: restore then
    skips that snapshot. Never another error, never a hang."""
    await _write_snapshot(backend.store, "000000000010", FILES)
    await backend.rewrite("000000000010", name, DAMAGE[damage](FILES[name]))
    with pytest.raises(SnapshotInvalidError, match=f"snapshot 000000000010: {name} fails"):
        async with asyncio.timeout(10):
            await _verify(backend.reopen(), "000000000010")


async def test_a_damaged_or_missing_manifest_or_file_fails_verification(
    backend: Backend,
) -> None:
    """A snapshot whose manifest is not JSON, or names a file that was never stored, or that
    has no manifest at all, fails verification saying which."""
    await _write_snapshot(backend.store, "000000000010", {"a.bin": b"a"})
    await backend.rewrite("000000000010", MANIFEST, b'{"snapshot_id": "000000000010", "str')
    # Found by the manifest's parser, or first by the store's own checksum (Object Store).
    with pytest.raises(SnapshotInvalidError, match=r"manifest is invalid|manifest\.json fails"):
        await _verify(backend.store, "000000000010")
    manifest = _manifest("000000000020", {"a.bin": b"a", "never-put.bin": b"n"})
    await backend.store.put("000000000020", "a.bin", b"a")
    await backend.store.put("000000000020", MANIFEST, manifest.model_dump_json().encode())
    with pytest.raises(SnapshotInvalidError, match=r"000000000020 is missing never-put\.bin"):
        await _verify(backend.store, "000000000020")
    with pytest.raises(SnapshotInvalidError, match="no manifest"):
        await _verify(backend.store, "000000000030")


@pytest.mark.parametrize(
    ("stream", "first_seq", "last_seq", "reason"),
    [
        ("OTHER", 1, 100, "is of stream ENGRAM"),
        (STREAM, 1, 9, "past the stream's last sequence 9"),
        (STREAM, 12, 100, "the events in between are gone"),
    ],
)
async def test_a_snapshot_that_does_not_fit_the_stream_fails_verification(
    backend: Backend, stream: str, first_seq: int, last_seq: int, reason: str
) -> None:
    """A whole snapshot (at sequence 10) is refused for another stream, for a stream that
    ends before it, and for one that starts after its sequence + 1 (the tail is purged)."""
    await _write_snapshot(backend.store, "000000000010", {"a.bin": b"a"}, sequence=10)
    with pytest.raises(SnapshotInvalidError, match=reason):
        await verified_snapshot(backend.store, "000000000010", stream, first_seq, last_seq)
    await verified_snapshot(backend.store, "000000000010", STREAM, 11, 10)  # the edge fits


# -- atomicity -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tables/workflows.parquet", MANIFEST])
async def test_a_put_that_fails_half_way_leaves_nothing_visible(
    backend: Backend, name: str
) -> None:
    """A put that fails half-way through (a full disk, a lost connection) raises, and leaves
    no file, no new snapshot listed, and nothing stored (no temporary file, no chunk), so the
    retry needs no cleanup; the older snapshot is untouched."""
    await _write_snapshot(backend.store, "000000000010", FILES)
    before = await backend.residue()
    body = b"{}" if name == MANIFEST else FILES[name]  # one chunk: the meta's publish fails
    with backend.broken_writes(), pytest.raises(OSError, match=r"half-way|No space left"):
        await backend.store.put("000000000020", name, body)
    reader = backend.reopen()
    assert await reader.get("000000000020", name) is None
    assert await reader.snapshot_ids() == ["000000000010"]
    assert await backend.residue() == before
    assert await _verify(reader, "000000000010") == FILES


async def test_a_failed_replacement_keeps_the_old_file(backend: Backend) -> None:
    """A put over an existing file that fails half-way leaves the old bytes, whole."""
    old = _body(2 * CHUNK + 5, 5)
    await backend.store.put("000000000010", "a.bin", old)
    with backend.broken_writes(), pytest.raises(OSError, match=r"half-way|No space left"):
        await backend.store.put("000000000010", "a.bin", _body(3 * CHUNK, 6))
    assert await backend.reopen().get("000000000010", "a.bin") == old


async def test_a_reader_never_sees_a_partial_file_or_snapshot(backend: Backend) -> None:
    """While a writer puts a multi-chunk file again and again (two contents in turn) and then
    the manifest, a concurrent reader sees the file missing, or one content whole, never a
    mix or a prefix; and the snapshot is listed only once its manifest is there."""
    contents = (_body(4 * CHUNK + 3, 7), _body(4 * CHUNK + 3, 8))
    reader = backend.reopen()
    seen: set[bytes | None] = set()
    manifest_sent, done = asyncio.Event(), asyncio.Event()
    listed_early: list[str] = []

    async def write() -> None:
        try:
            for round_ in range(8):
                await backend.store.put("000000000010", "a.bin", contents[round_ % 2])
                await asyncio.sleep(0)
            manifest_sent.set()
            await backend.store.put("000000000010", MANIFEST, b"{}")
        finally:
            done.set()

    async def read() -> None:
        while not done.is_set():
            seen.add(await reader.get("000000000010", "a.bin"))
            listed = await reader.snapshot_ids()
            if listed and not manifest_sent.is_set():
                listed_early.extend(listed)

    await asyncio.gather(write(), read())
    assert seen <= {None, *contents}
    assert seen & set(contents)  # the reader did overlap the writer
    assert listed_early == []
    assert await reader.snapshot_ids() == ["000000000010"]

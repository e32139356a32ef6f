"""Compaction is a snapshotting projection.

A snapshot is taken by a projection set of its own (``<data dir>/snapshot-work``), advanced by
replaying only the events since the previous snapshot up to exactly one sequence S; the live
engine is never paused and never read, so there are no torn reads and every event is either in
the snapshot (<= S) or in the tail (> S). The files (tables as Parquet, the vector index, the
learner's state) and a manifest with a SHA-256 per file are stored manifest last.

Restoring verifies everything before trusting it: a missing file, a checksum mismatch, a
manifest for another stream, or one pointing past the stream (or to a tail the stream no longer
holds) makes that snapshot skipped with a warning; an older one is tried, then a full replay.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from pydantic import ValidationError

from consumers.replay import replay
from engine import __version__
from engine.errors import EngramError, SnapshotInvalidError
from engine.events import EVENT_TYPES, SnapshotCreated, make_event
from engine.settings import Settings
from engine.stream import ReadRange
from engine.stream.append import Appender
from engine.stream.engine_key import signing_key
from projections.projection_set import active_embedder, open_projections
from projections.snapshots.manifest import MANIFEST, FileEntry, SnapshotManifest, sha256
from projections.snapshots.packing import pack, unpack
from projections.snapshots.stores import ObjectStoreSnapshots, SnapshotStore
from projections.tables.store import DATABASE_FILE

__all__ = [
    "SnapshotInvalidError",
    "default_store",
    "restore_latest",
    "take_snapshot",
    "verified_snapshot",
]

log = structlog.get_logger(__name__)

WORK_DIR = "snapshot-work"


def default_store(js: JetStreamContext, settings: Settings) -> ObjectStoreSnapshots:
    """The Object Store bucket beside the stream, replicated like it."""
    return ObjectStoreSnapshots(
        js, f"{settings.stream.name}_SNAPSHOTS", replicas=settings.stream.replicas
    )


async def verified_snapshot(
    store: SnapshotStore, snapshot_id: str, stream: str, first_seq: int, last_seq: int
) -> tuple[SnapshotManifest, dict[str, bytes]]:
    """The manifest and files of ``snapshot_id`` after every check; raises
    SnapshotInvalidError naming the first that failed."""
    raw = await store.get(snapshot_id, MANIFEST)
    if raw is None:
        raise SnapshotInvalidError(f"snapshot {snapshot_id} has no manifest (partial)")
    try:
        manifest = SnapshotManifest.model_validate_json(raw)
    except ValidationError as exc:
        raise SnapshotInvalidError(f"snapshot {snapshot_id} manifest is invalid: {exc}") from None
    if manifest.stream != stream:
        raise SnapshotInvalidError(f"snapshot {snapshot_id} is of stream {manifest.stream}")
    if manifest.sequence > last_seq:
        raise SnapshotInvalidError(
            f"snapshot {snapshot_id} covers sequence {manifest.sequence}, past the stream's "
            f"last sequence {last_seq}"
        )
    if manifest.sequence < first_seq - 1:
        raise SnapshotInvalidError(
            f"snapshot {snapshot_id} ends at {manifest.sequence} but the stream starts at "
            f"{first_seq}: the events in between are gone"
        )
    files: dict[str, bytes] = {}
    for name, entry in manifest.files.items():
        body = await store.get(snapshot_id, name)
        if body is None:
            raise SnapshotInvalidError(f"snapshot {snapshot_id} is missing {name}")
        if len(body) != entry.size or sha256(body) != entry.sha256:
            raise SnapshotInvalidError(f"snapshot {snapshot_id}: {name} fails its checksum")
        files[name] = body
    return manifest, files


async def restore_latest(
    js: JetStreamContext,
    settings: Settings,
    store: SnapshotStore,
    target: Path,
    snapshot_id: str | None = None,
) -> SnapshotManifest | None:
    """Restore the newest valid snapshot (or ``snapshot_id``) into the empty ``target``;
    None when there is none (the caller then replays everything)."""
    info = await js.stream_info(settings.stream.name)
    ids = await store.snapshot_ids()
    candidates = [snapshot_id] if snapshot_id and snapshot_id != "latest" else ids[::-1]
    for candidate in candidates:
        try:
            manifest, files = await verified_snapshot(
                store, candidate, settings.stream.name, info.state.first_seq, info.state.last_seq
            )
        except SnapshotInvalidError as exc:
            log.warning("snapshot skipped", snapshot=candidate, reason=str(exc))
            continue
        await asyncio.to_thread(unpack, files, target)
        if manifest.embedder != settings.embedder:
            from consumers.reindex import activate

            activate(settings.model_copy(update={"data_dir": target}), manifest.embedder)
        log.info("snapshot restored", snapshot=candidate, sequence=manifest.sequence)
        return manifest
    return None


async def take_snapshot(
    nc: NatsClient,
    settings: Settings,
    store: SnapshotStore,
    *,
    at_seq: int | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> SnapshotManifest:
    """Advance the snapshotting projection to S (the stream's last sequence by default), store
    its files and manifest, and publish memory.snapshot.created."""
    stream = settings.stream.name
    js = nc.jetstream()
    info = await js.stream_info(stream)
    key = await signing_key(js, settings)  # verifies the replay, signs snapshot.created
    sequence = info.state.last_seq if at_seq is None else min(at_seq, info.state.last_seq)
    work = settings.data_dir / WORK_DIR
    embedder = active_embedder(settings)
    work_settings = settings.model_copy(update={"data_dir": work, "embedder": embedder})
    if not (work / DATABASE_FILE).exists():
        shutil.rmtree(work, ignore_errors=True)
        await restore_latest(js, work_settings, store, work)
    projections = await asyncio.to_thread(open_projections, work_settings)
    try:
        if projections.tables.checkpoint() > sequence:
            raise EngramError(
                f"the snapshotting projection is already at {projections.tables.checkpoint()}, "
                f"past {sequence}: snapshots only move forward"
            )
        await replay(
            js,
            stream,
            projections.persistent,
            ReadRange(until_seq=sequence),
            on_batch=on_batch,
            verifier=key,
            subjects=settings.stream.events,
        )
    finally:
        await asyncio.to_thread(projections.close)
    files = await asyncio.to_thread(pack, work, embedder)
    manifest = SnapshotManifest(
        snapshot_id=f"{sequence:012d}",
        stream=stream,
        sequence=sequence,
        created_at=datetime.now(UTC).isoformat(),
        engram_version=__version__,
        schema_versions={name: spec.version for name, spec in EVENT_TYPES.items()},
        embedder=embedder,
        files={
            name: FileEntry(size=len(body), sha256=sha256(body)) for name, body in files.items()
        },
    )
    for name, body in files.items():
        await store.put(manifest.snapshot_id, name, body)
    await store.put(manifest.snapshot_id, MANIFEST, manifest.model_dump_json(indent=2).encode())
    event = make_event(
        SnapshotCreated(
            snapshot_id=manifest.snapshot_id,
            sequence=sequence,
            files=len(files),
            total_bytes=manifest.total_bytes,
            location=store.location[:1_000],
            embedder=embedder,
        ),
        agent_id="engram-snapshots",
        event_id=f"snapshot-{stream}-{sequence}",
    )
    appender = Appender(nc, stream, signer=key, subjects=settings.stream.events)
    await appender.append(appender.encode(event))
    log.info(
        "snapshot created",
        snapshot=manifest.snapshot_id,
        sequence=sequence,
        files=len(files),
        bytes=manifest.total_bytes,
    )
    return manifest

"""Compaction is a snapshotting projection.

A snapshot is taken by a projection set of its own (``<data dir>/snapshot-work``), advanced by
replaying only the events since the previous snapshot up to exactly one sequence S; the live
engine is never paused and never read, so there are no torn reads and every event is either in
the snapshot (<= S) or in the tail (> S). The files (tables as Parquet, the vector index, the
learner's state) and a manifest with a SHA-256 per file are stored manifest last.

Restoring verifies everything before trusting it: a missing file, a checksum mismatch, a
manifest for another stream, or one pointing past the stream (or to a tail the stream no longer
holds) makes that snapshot skipped with a warning; an older one is tried, then a full replay.

An engine owning some namespaces only (``Settings.namespaces``) snapshots its tenants only, so
its snapshots are its set's: they live in a bucket of their own (``<stream>_SNAPSHOTS_<set
key>``) under ids that name the set (``<sequence>-<set key>``), and a snapshot of another set
(or one of every namespace) is never restored into it, nor one of a set used where every
namespace is needed (compaction purges every tenant's history).
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from pydantic import ValidationError

from consumers.replay import replay
from consumers.tenants import ALL, describe_set, set_key
from engine import __version__
from engine.errors import EngramError, SnapshotInvalidError
from engine.events import EVENT_TYPES, SnapshotCreated, make_event
from engine.permissions import refused_or
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
    "snapshot_id_for",
    "snapshot_ids_of",
    "snapshot_sequence",
    "take_snapshot",
    "verified_snapshot",
]

log = structlog.get_logger(__name__)

WORK_DIR = "snapshot-work"


def default_store(js: JetStreamContext, settings: Settings) -> ObjectStoreSnapshots:
    """The Object Store bucket beside the stream, replicated like it: ``<stream>_SNAPSHOTS``,
    or ``<stream>_SNAPSHOTS_<set key>`` for an engine owning some namespaces only."""
    bucket = f"{settings.stream.name}_SNAPSHOTS"
    if settings.namespaces is not None:
        bucket += f"_{set_key(settings.namespaces)}"
    return ObjectStoreSnapshots(js, bucket, replicas=settings.stream.replicas)


def snapshot_id_for(sequence: int, namespaces: tuple[str, ...] | None = None) -> str:
    """``000000001234`` for every namespace, ``000000001234-<set key>`` for a set."""
    base = f"{sequence:012d}"
    return base if namespaces is None else f"{base}-{set_key(namespaces)}"


_SET_ID = re.compile(r"^[0-9]+-(ns-[0-9a-f]{12})$")


def _set_of(snapshot_id: str) -> str:
    """The set key a snapshot id names (``all`` when it names none)."""
    named = _SET_ID.fullmatch(snapshot_id)
    return named.group(1) if named else ALL


def snapshot_sequence(snapshot_id: str) -> int | None:
    """The sequence an id of ``snapshot_id_for`` covers (None for another kind of id)."""
    head = snapshot_id.partition("-")[0]
    return int(head) if head.isdigit() else None


def snapshot_ids_of(ids: list[str], namespaces: tuple[str, ...] | None) -> list[str]:
    """The ids among ``ids`` of snapshots of ``namespaces``' set, in the same order."""
    key = set_key(namespaces)
    return [i for i in ids if _set_of(i) == key]


async def verified_snapshot(
    store: SnapshotStore,
    snapshot_id: str,
    stream: str,
    first_seq: int,
    last_seq: int,
    *,
    namespaces: tuple[str, ...] | None = None,
) -> tuple[SnapshotManifest, dict[str, bytes]]:
    """The manifest and files of ``snapshot_id`` after every check (it must be a snapshot of
    ``namespaces``' set: None, every namespace); raises SnapshotInvalidError naming the first
    that failed."""
    if _set_of(snapshot_id) != set_key(namespaces):
        covers = "every namespace" if _set_of(snapshot_id) == ALL else "another namespace set"
        raise SnapshotInvalidError(
            f"snapshot {snapshot_id} covers {covers} ({_set_of(snapshot_id)}), not "
            f"{describe_set(namespaces)} ({set_key(namespaces)})"
        )
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
    ids = snapshot_ids_of(await store.snapshot_ids(), settings.namespaces)
    candidates = [snapshot_id] if snapshot_id and snapshot_id != "latest" else ids[::-1]
    for candidate in candidates:
        try:
            manifest, files = await verified_snapshot(
                store,
                candidate,
                settings.stream.name,
                info.state.first_seq,
                info.state.last_seq,
                namespaces=settings.namespaces,
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
    its files and manifest, and publish memory.snapshot.created. With ``settings.namespaces``
    the snapshot holds those tenants only (and is named for their set)."""
    stream = settings.stream.name
    js = nc.jetstream()
    info = await js.stream_info(stream)
    key = await signing_key(js, settings)  # verifies the replay, signs snapshot.created
    sequence = info.state.last_seq if at_seq is None else min(at_seq, info.state.last_seq)
    namespaces = settings.namespaces
    work = settings.data_dir / (
        WORK_DIR if namespaces is None else f"{WORK_DIR}-{set_key(namespaces)}"
    )
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
            namespaces=namespaces,
        )
    finally:
        await asyncio.to_thread(projections.close)
    files = await asyncio.to_thread(pack, work, embedder)
    manifest = SnapshotManifest(
        snapshot_id=snapshot_id_for(sequence, namespaces),
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
        # Engines of disjoint sets may snapshot at one sequence: each event is its own.
        event_id=f"snapshot-{stream}-{sequence}"
        + ("" if namespaces is None else f"-{set_key(namespaces)}"),
    )
    appender = Appender(nc, stream, signer=key, subjects=settings.stream.events)
    encoded = appender.encode(event)
    await refused_or(  # a user refused the subject: PermissionDeniedError, not a timeout
        nc, appender.append(encoded), publishes=encoded[1], what="announcing the snapshot"
    )
    log.info(
        "snapshot created",
        snapshot=manifest.snapshot_id,
        sequence=sequence,
        files=len(files),
        bytes=manifest.total_bytes,
    )
    return manifest

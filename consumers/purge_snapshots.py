"""Superseding a purged tenant's snapshots: a new snapshot after the purge point, verified,
then every older snapshot that holds the tenant deleted (``consumers.purge`` step 4)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NatsClient

from consumers.snapshotting import (
    WORK_DIR,
    SnapshotInvalidError,
    snapshot_ids_of,
    take_snapshot,
    verified_snapshot,
)
from consumers.tenant_traces import dead_letter_rows, projection_traces, purge_probe
from engine.errors import EngramError, ProjectionError, VectorIndexError
from engine.settings import Settings
from projections.snapshots.manifest import MANIFEST, SnapshotManifest
from projections.snapshots.packing import namespace_rows
from projections.snapshots.stores import SnapshotStore

__all__ = ["SUPERSEDE_ROUNDS", "SnapshotsSuperseded", "holds_namespace", "supersede_snapshots"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SnapshotsSuperseded:
    """The snapshots of one store after a purge."""

    location: str
    snapshot_id: str | None
    """The new snapshot, after the purge point (None: the store had none to supersede)."""
    deleted: tuple[str, ...] = ()
    """Older snapshots that held the tenant (or could not be read), deleted."""
    kept: tuple[str, ...] = ()
    """Older snapshots shown to hold nothing of the tenant."""


async def _files_of(
    store: SnapshotStore, manifest: SnapshotManifest, snapshot_id: str, tables: bool
) -> dict[str, bytes] | None:
    """The table files (``tables``) or the other files of a stored snapshot as its manifest
    lists them (None: one is missing)."""
    files: dict[str, bytes] = {}
    for name in manifest.files:
        if name.startswith("tables/") == tables:
            body = await store.get(snapshot_id, name)
            if body is None:
                return None
            files[name] = body
    return files


async def holds_namespace(
    store: SnapshotStore,
    snapshot_id: str,
    namespace: str,
    below: int | None = None,
    *,
    settings: Settings | None = None,
) -> bool | None:
    """Whether a stored snapshot holds anything of ``namespace`` from before ``below`` (from
    any time without it); None when it cannot be read to tell.

    Its tables are read first: rows of the namespace (``packing.namespace_rows``) or dead
    letters of its messages (``tenant_traces.dead_letter_rows``, by the subjects of ``settings``'
    stream) stored below ``below``. Then, for a snapshot taken below ``below`` (or always
    without it), every other projection's files (``tenant_traces.projection_traces``: the learner,
    the sessions, the vector and lexical indexes and memory records): anything of the
    namespace there. A snapshot at or after ``below`` applied the purge there, so its other
    projections hold the namespace's later events only (and the purge's own id)."""
    probe = purge_probe(settings, namespace)
    try:
        raw = await store.get(snapshot_id, MANIFEST)
        if raw is None:
            return None
        manifest = SnapshotManifest.model_validate_json(raw)
        tables = await _files_of(store, manifest, snapshot_id, tables=True)
        if tables is None:
            return None
        if namespace_rows(tables, namespace, below) or dead_letter_rows(tables, probe, below):
            return True
        if below is not None and manifest.sequence >= below:
            return False
        others = await _files_of(store, manifest, snapshot_id, tables=False)
        if others is None:
            return None
        traces = await asyncio.to_thread(projection_traces, others, namespace)
    except (SnapshotInvalidError, ProjectionError, VectorIndexError, ValueError):
        return None
    if traces:
        log.info("snapshot holds the namespace", snapshot=snapshot_id, projections=traces)
    return bool(traces)


SUPERSEDE_ROUNDS = 5
"""Listings of a store's snapshots a purge checks at most (each after deleting those that held
the tenant) before it gives up on snapshots that keep appearing."""


async def _listed(store: SnapshotStore, settings: Settings) -> list[str]:
    return snapshot_ids_of(await store.snapshot_ids(), settings.namespaces)


async def supersede_snapshots(
    nc: NatsClient,
    settings: Settings,
    store: SnapshotStore,
    namespace: str,
    purge_sequence: int,
) -> SnapshotsSuperseded:
    """Take a snapshot after ``purge_sequence``, verify it and that it holds no row of
    ``namespace`` below it, then delete every older snapshot of the store (of
    ``settings.namespaces``' set) that holds such rows or cannot be read to tell.

    Nothing is taken when the store has no snapshot of the set and no snapshotting directory
    is there to clean. Raises EngramError, deleting nothing, when the new snapshot fails."""
    js = nc.jetstream()
    older = await _listed(store, settings)
    work = [p for p in settings.data_dir.glob(f"{WORK_DIR}*") if p.is_dir()]
    if not older and not work:
        return SnapshotsSuperseded(store.location, None)
    manifest = await take_snapshot(nc, settings, store)
    info = await js.stream_info(settings.stream.name)
    try:
        _, files = await verified_snapshot(
            store,
            manifest.snapshot_id,
            settings.stream.name,
            info.state.first_seq,
            info.state.last_seq,
            namespaces=settings.namespaces,
        )
    except SnapshotInvalidError as exc:
        raise EngramError(
            f"the snapshot taken after the purge does not verify ({exc}): no older snapshot "
            "was deleted; run engram purge again"
        ) from exc
    if manifest.sequence < purge_sequence or namespace_rows(files, namespace, purge_sequence):
        raise EngramError(
            f"snapshot {manifest.snapshot_id} (sequence {manifest.sequence}) still holds "
            f"{namespace} from before the purge at {purge_sequence}: no older snapshot was "
            "deleted"
        )
    deleted: list[str] = []
    kept: list[str] = []
    checked = {manifest.snapshot_id}
    for _ in range(SUPERSEDE_ROUNDS):
        # An engine's scheduled snapshot stored since the last listing (taken below the purge
        # point, it holds the tenant) is found by the next one: list again until a listing
        # shows nothing that was not checked.
        fresh = [i for i in older if i not in checked]
        if not fresh:
            break
        for snapshot_id in fresh:
            checked.add(snapshot_id)
            holds = await holds_namespace(
                store, snapshot_id, namespace, purge_sequence, settings=settings
            )
            if holds is False:
                kept.append(snapshot_id)
                continue
            await store.delete(snapshot_id)
            deleted.append(snapshot_id)
            log.info(
                "snapshot superseded by the purge",
                snapshot=snapshot_id,
                namespace=namespace,
                unreadable=holds is None,
            )
        older = await _listed(store, settings)
    else:
        raise EngramError(
            f"new snapshots kept appearing in {store.location} while the purge of {namespace} "
            f"checked them ({SUPERSEDE_ROUNDS} listings; deleted {', '.join(deleted) or 'none'}): "
            "run engram purge again (it resumes), when engines are not snapshotting"
        )
    return SnapshotsSuperseded(store.location, manifest.snapshot_id, tuple(deleted), tuple(kept))

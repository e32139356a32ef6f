"""The snapshot store port, and where snapshots live: a NATS Object Store bucket (default: with
the stream, replicated with it) or a directory. Both are written file by file, manifest last: a
snapshot without its manifest is partial and is never listed.

tests/test_snapshot_store_contract.py runs the contract below against every store.
"""

from __future__ import annotations

from typing import Protocol

from projections.snapshots.directory import DirectorySnapshots
from projections.snapshots.object_store import ObjectStoreSnapshots

__all__ = ["DirectorySnapshots", "ObjectStoreSnapshots", "SnapshotStore"]


class SnapshotStore(Protocol):
    """Files of snapshots, by snapshot id and file name (``tables/workflows.parquet``).

    A snapshot is its files plus ``manifest.json`` (sizes and SHA-256 of every file), which
    the writer puts last: it is the commit point, and the store lists only snapshots that have
    one. The store checks nothing inside the manifest: ``consumers.snapshotting`` verifies
    every file against it before trusting a snapshot.
    """

    location: str
    """Where the snapshots are, the same for every instance over one place (recorded in
    ``snapshot.created``)."""

    async def put(self, snapshot_id: str, name: str, data: bytes) -> None:
        """Store ``data`` as the file, replacing it if present, whole or not at all: a put that
        fails raises and leaves the file as it was (absent, or the old bytes) with nothing
        half-written behind, and a reader never sees part of a file."""
        ...

    async def get(self, snapshot_id: str, name: str) -> bytes | None:
        """The file's bytes, or None when it is missing. Raises SnapshotInvalidError when the
        store itself finds them damaged (a store with checksums of its own)."""
        ...

    async def snapshot_ids(self) -> list[str]:
        """Ids of snapshots that have a manifest, each once, sorted: oldest first (ids are
        zero-padded sequences); [] when nothing was ever stored."""
        ...

    async def delete(self, snapshot_id: str) -> None:
        """Remove the snapshot, its bytes included: the manifest first (from then on it is not
        listed, so nothing restores it), then every file of it. Whatever part of it is there
        goes (a snapshot without manifest, or none at all: nothing to do). A delete that fails
        part-way raises and leaves the snapshot unlisted: deleting it again removes the rest."""
        ...

"""Where snapshots live: a NATS Object Store bucket (default: with the stream, replicated with
it) or a directory. Both are written file by file, manifest last: a snapshot without its
manifest is partial and is never listed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Protocol

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from projections.atomic_files import write_atomic
from projections.snapshots.manifest import MANIFEST

__all__ = ["DirectorySnapshots", "ObjectStoreSnapshots", "SnapshotStore"]


class SnapshotStore(Protocol):
    location: str

    async def put(self, snapshot_id: str, name: str, data: bytes) -> None: ...

    async def get(self, snapshot_id: str, name: str) -> bytes | None:
        """The file's bytes, or None when it is missing."""
        ...

    async def snapshot_ids(self) -> list[str]:
        """Ids of snapshots that have a manifest, oldest first (ids sort by sequence)."""
        ...


class DirectorySnapshots:
    """Snapshots as ``<root>/<snapshot id>/<file>``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.location = str(root)

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, data)  # a failed write (a full disk) leaves no temp file

    async def put(self, snapshot_id: str, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write, self.root / snapshot_id / name, data)

    async def get(self, snapshot_id: str, name: str) -> bytes | None:
        path = self.root / snapshot_id / name
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            return None

    async def snapshot_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.parent.name for p in self.root.glob(f"*/{MANIFEST}"))


class ObjectStoreSnapshots:
    """Snapshots in a JetStream Object Store bucket, objects named ``<snapshot id>/<file>``."""

    def __init__(self, js: JetStreamContext, bucket: str, replicas: int = 1) -> None:
        self._js = js
        self.bucket = bucket
        self.replicas = replicas
        self.location = f"nats-object-store://{bucket}"
        self._store: ObjectStore | None = None

    async def _obs(self) -> ObjectStore:
        if self._store is None:
            try:
                self._store = await self._js.object_store(self.bucket)
            except (BucketNotFoundError, NotFoundError):
                self._store = await self._js.create_object_store(
                    self.bucket, replicas=self.replicas
                )
        return self._store

    async def put(self, snapshot_id: str, name: str, data: bytes) -> None:
        await (await self._obs()).put(f"{snapshot_id}/{name}", data)

    async def get(self, snapshot_id: str, name: str) -> bytes | None:
        try:
            result = await (await self._obs()).get(f"{snapshot_id}/{name}")
        except (ObjectNotFoundError, NotFoundError):
            return None
        return bytes(result.data or b"")

    async def snapshot_ids(self) -> list[str]:
        try:
            entries = await (await self._obs()).list()
        except (NotFoundError, ObjectNotFoundError):
            return []
        return sorted(
            {
                e.name.split("/", 1)[0]
                for e in entries
                if e.name and e.name.endswith("/" + MANIFEST) and not e.deleted
            }
        )

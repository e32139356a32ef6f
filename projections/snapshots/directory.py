"""Snapshots in a directory: ``<root>/<snapshot id>/<file>``, each file written atomically."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from projections.atomic_files import write_atomic
from projections.snapshots.manifest import MANIFEST

__all__ = ["DirectorySnapshots"]


class DirectorySnapshots:
    """Snapshots as ``<root>/<snapshot id>/<file>``.

    A file is written to a temporary file and renamed over its name (``write_atomic``): a
    reader sees the old bytes or the new ones, and a write that fails leaves neither a
    partial file nor a temporary one.
    """

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

    def _delete(self, snapshot_id: str) -> None:
        folder = self.root / snapshot_id
        if folder.parent != self.root or not folder.name:
            raise ValueError(f"{snapshot_id!r} is not a snapshot id")
        (folder / MANIFEST).unlink(missing_ok=True)  # unlisted first
        if folder.exists():
            shutil.rmtree(folder)

    async def delete(self, snapshot_id: str) -> None:
        await asyncio.to_thread(self._delete, snapshot_id)

    async def snapshot_ids(self) -> list[str]:
        def ids() -> list[str]:
            if not self.root.is_dir():
                return []
            return sorted(p.parent.name for p in self.root.glob(f"*/{MANIFEST}"))

        return await asyncio.to_thread(ids)

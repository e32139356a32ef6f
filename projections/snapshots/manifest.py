"""The snapshot manifest: what a snapshot covers and how to verify every file in it."""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict

__all__ = ["FileEntry", "SnapshotManifest", "sha256"]

MANIFEST = "manifest.json"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int
    sha256: str


class SnapshotManifest(BaseModel):
    """A snapshot of every persistent projection at exactly one stream sequence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    snapshot_id: str
    stream: str
    sequence: int
    """Every event up to and including this sequence is in the snapshot; none after it."""
    created_at: str
    engram_version: str
    schema_versions: dict[str, int]
    embedder: str
    files: dict[str, FileEntry]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())

"""Which vector index serves searches: the ``ACTIVE`` marker in the vectors directory.

A reindex builds the index of another embedder beside the live one (``vectors/<embedder>``)
and, once it has caught up, writes that embedder's name here; the engine, a restore and the
local queries read it. Without a marker the configured embedder's index is the active one.
"""

from __future__ import annotations

from pathlib import Path

from projections.atomic_files import write_atomic

__all__ = ["ACTIVE_FILE", "read_active", "write_active"]

ACTIVE_FILE = "ACTIVE"


def read_active(vectors_dir: Path, default: str) -> str:
    """The embedder named by the marker in ``vectors_dir``; ``default`` when there is none (or
    it is empty)."""
    marker = vectors_dir / ACTIVE_FILE
    if marker.exists():
        return marker.read_text().strip() or default
    return default


def write_active(vectors_dir: Path, embedder_name: str) -> Path:
    """Make ``embedder_name`` the active index: the marker is replaced atomically (a reader
    sees the old name or the new one). Returns the marker's path."""
    vectors_dir.mkdir(parents=True, exist_ok=True)
    marker = vectors_dir / ACTIVE_FILE
    write_atomic(marker, (embedder_name + "\n").encode())
    return marker

"""The vector index's readers-writer lock (shared by every whole-state projection now)."""

from __future__ import annotations

from projections._rwlock import ReadWriteLock

__all__ = ["ReadWriteLock"]

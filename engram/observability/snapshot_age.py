"""The newest snapshot of an engine's namespace set, read from its bucket's listing (no object is
downloaded): when it was stored and how many bytes it holds. Taken by this engine, another one
or ``engram snapshot``, or restored at start: the bucket holds them all.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

from consumers.snapshotting import default_store, snapshot_ids_of
from engine.settings import Settings
from projections.snapshots.manifest import MANIFEST

__all__ = ["NewestSnapshot", "newest_snapshot", "parse_mtime"]


@dataclass(frozen=True, slots=True)
class NewestSnapshot:
    snapshot_id: str
    created_at: datetime
    """When its manifest (written last) was stored."""
    size_bytes: int
    """The bytes of every object of the snapshot."""


async def newest_snapshot(js: JetStreamContext, settings: Settings) -> NewestSnapshot | None:
    """The newest snapshot of ``settings``' namespace set, or None when there is none (no bucket
    is created for asking)."""
    bucket = default_store(js, settings).bucket
    try:
        store = await js.object_store(bucket)
        entries = await store.list()
    except (BucketNotFoundError, NotFoundError, ObjectNotFoundError):
        return None
    sizes: dict[str, int] = defaultdict(int)
    stored: dict[str, str] = {}
    for entry in entries:
        if not entry.name or entry.deleted or "/" not in entry.name:
            continue
        snapshot_id, name = entry.name.split("/", 1)
        sizes[snapshot_id] += int(entry.size or 0)
        if name == MANIFEST and entry.mtime:
            stored[snapshot_id] = entry.mtime
    ids = snapshot_ids_of(sorted(stored), settings.namespaces)
    if not ids:
        return None
    newest = ids[-1]
    return NewestSnapshot(newest, parse_mtime(stored[newest]), sizes[newest])


_FRACTION = re.compile(r"\.(\d+)")


def parse_mtime(text: str) -> datetime:
    """An Object Store ``mtime`` (RFC 3339 with nanoseconds, ``Z``) as an aware datetime."""
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text.strip(), count=1)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)

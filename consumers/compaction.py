"""Stream compaction (opt-in retention): purge history a verified snapshot already covers.

Never purges what no verified snapshot covers: the plan starts from the newest snapshot that
passes every check, and only events up to its sequence S and older than ``older_than_s`` (by the
stream's own timestamps) may go. A brand-new engine then rebuilds from that snapshot plus the
tail. pattern.learned idempotency survives: the learner's state in the snapshot remembers every
version announced, purged or not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from consumers.snapshotting import SnapshotInvalidError, verified_snapshot
from engine.permissions import connection_of, refused_or
from engine.settings import Settings
from projections.snapshots.stores import SnapshotStore

__all__ = ["CompactionPlan", "compact", "plan_compaction"]


@dataclass(frozen=True, slots=True)
class CompactionPlan:
    """What a compaction would purge, and what keeps the stream rebuildable."""

    snapshot_id: str | None
    snapshot_sequence: int
    first_sequence: int
    purge_below: int
    """Sequences below this go (0: nothing to purge)."""
    cutoff: str

    @property
    def messages(self) -> int:
        return max(0, self.purge_below - self.first_sequence)


async def _stored_at(js: JetStreamContext, stream: str, seq: int) -> datetime | None:
    try:
        message = await js.get_msg(stream, seq)
    except NotFoundError:
        return None
    return message.time


async def plan_compaction(
    js: JetStreamContext,
    settings: Settings,
    store: SnapshotStore,
    older_than_s: float,
    now: datetime | None = None,
) -> CompactionPlan:
    """The newest verified snapshot S, and the highest P <= S stored before the cutoff
    (binary search on stream time, which only grows): everything below P + 1 may go."""
    stream = settings.stream.name
    info = await js.stream_info(stream)
    first, last = info.state.first_seq, info.state.last_seq
    cutoff = (now or datetime.now(UTC)) - timedelta(seconds=older_than_s)
    for snapshot_id in (await store.snapshot_ids())[::-1]:
        try:
            manifest, _ = await verified_snapshot(store, snapshot_id, stream, first, last)
        except SnapshotInvalidError:
            continue
        low, high, best = first, manifest.sequence, first - 1
        while low <= high:
            middle = (low + high) // 2
            stored = await _stored_at(js, stream, middle)
            if stored is not None and stored <= cutoff:
                best, low = middle, middle + 1
            elif stored is None:
                low = middle + 1  # a gap (deleted message): look further
            else:
                high = middle - 1
        purge_below = best + 1 if best >= first else 0
        return CompactionPlan(
            snapshot_id, manifest.sequence, first, purge_below, cutoff.isoformat()
        )
    return CompactionPlan(None, 0, first, 0, cutoff.isoformat())


async def compact(js: JetStreamContext, settings: Settings, plan: CompactionPlan) -> int:
    """Carry out ``plan``; returns the number of messages purged (0 when there is nothing)."""
    if plan.snapshot_id is None or plan.purge_below <= plan.first_sequence:
        return 0
    before = (await js.stream_info(settings.stream.name)).state.messages
    await refused_or(  # a user refused purges: PermissionDeniedError, not a timeout
        connection_of(js),
        js.purge_stream(settings.stream.name, seq=plan.purge_below),
        publishes=f"$JS.API.STREAM.PURGE.{settings.stream.name}",
        what=f"compacting {settings.stream.name}",
    )
    after = (await js.stream_info(settings.stream.name)).state.messages
    return before - after

"""The Projection port's contract, run against every projection (tables, learner, sessions,
vectors with their lexical half, the recent tier): any batching of the same events gives the
same state; a redelivered batch changes nothing; a saved projection reopened from its directory
has the same state and checkpoint, and after a crash resumes from its checkpoint to the same
state (``projections.base``; adapters and fingerprints in ``tests/projection_adapters``).

The histories come from ``tests/strategies``: random events with repeated envelope ids, some
of them purges of a tenant (``namespace.purged``: what the projection forgets there must not
depend on the batching either), some messages dead letters (they move the watermark only), and,
for the announcers, half of what they announce read back at the end, as the stream would carry
it.
"""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.settings import Settings
from projections.base import Announcer, Projection, WholeStateProjection
from projections.projection_set import open_projections
from projections.records import DeadLetter, SequencedEvent
from tests.projection_adapters import ADAPTERS, PERSISTENT, ProjectionAdapter, fingerprint
from tests.strategies.events import repeated, splits

CONTRACT = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Stream:
    """Messages with sequences 1..n; those in ``dead`` reach the projection as dead letters."""

    items: list[SequencedEvent]
    dead: frozenset[int]

    @property
    def last(self) -> int:
        return self.items[-1].sequence if self.items else 0


def _stream(adapter: ProjectionAdapter, data: st.DataObject) -> Stream:
    history, _ = data.draw(repeated(max_size=30, purges=True))
    sequences = st.integers(1, len(history)) if history else st.nothing()
    dead = frozenset(data.draw(st.sets(sequences, max_size=len(history) // 4)))
    stream = Stream(history, dead)
    scratch: Projection = adapter.open(None)
    if isinstance(scratch, Announcer):  # half of what it announces is read back at the end
        feed(scratch, stream, [(0, len(history))])
        echoes = scratch.take_pending()[::2]
        start = len(history) + 1
        history = history + [
            SequencedEvent(start + i, e.occurred_at, e) for i, e in enumerate(echoes)
        ]
        stream = Stream(history, dead)
    scratch.close()
    return stream


def apply_window(projection: Projection, stream: Stream, a: int, b: int) -> None:
    """Apply messages ``a..b-1`` as one batch, the way the runner and the replay do."""
    window = stream.items[a:b]
    events = [e for e in window if e.sequence not in stream.dead]
    letters = [
        DeadLetter.of(
            sequence=e.sequence,
            subject=e.event.subject,
            stored_at=e.stored_at,
            kind="invalid_json",
            reason="not JSON",
            body=b"{",
            projection=projection.name,
        )
        for e in window
        if e.sequence in stream.dead
    ]
    projection.apply(events, letters, window[-1].sequence)


def feed(projection: Projection, stream: Stream, windows: list[tuple[int, int]]) -> Projection:
    for a, b in windows:
        if b > a:
            apply_window(projection, stream, a, b)
    return projection


def batches(size: int, cuts: list[int]) -> list[tuple[int, int]]:
    return [(a, b) for a, b in itertools.pairwise([0, *cuts, size]) if b > a]


def _whole(adapter: ProjectionAdapter, stream: Stream) -> Projection:
    return feed(adapter.open(None), stream, [(0, len(stream.items))])


EVERY = pytest.mark.parametrize("adapter", ADAPTERS, ids=lambda a: a.name)
SAVED = pytest.mark.parametrize("adapter", PERSISTENT, ids=lambda a: a.name)


# -- the contract -------------------------------------------------------------------------------


@EVERY
@CONTRACT
@given(data=st.data())
def test_any_batching_gives_the_same_state(adapter: ProjectionAdapter, data: st.DataObject) -> None:
    """Applying a history in one batch or split at any points gives the same state, the same
    repeats counted, the same announcements pending and the same checkpoint."""
    stream = _stream(adapter, data)
    cuts = data.draw(splits(len(stream.items)))
    whole = _whole(adapter, stream)
    split = feed(adapter.open(None), stream, batches(len(stream.items), cuts))
    try:
        assert fingerprint(adapter, split) == fingerprint(adapter, whole)
        assert split.checkpoint() == whole.checkpoint()
    finally:
        split.close()
        whole.close()


@EVERY
@CONTRACT
@given(data=st.data())
def test_a_redelivered_batch_changes_nothing(
    adapter: ProjectionAdapter, data: st.DataObject
) -> None:
    """Batches that deliver again what was applied (all of it: nothing changes, not even the
    checkpoint; or overlapping new messages: only the new ones count) end in the state of the
    history applied once."""
    stream = _stream(adapter, data)
    size = len(stream.items)
    projection = adapter.open(None)
    done = 0
    try:
        while done < size:
            a = data.draw(st.integers(0, done), label="from")
            b = data.draw(st.integers(a + 1, size), label="to")
            if b <= done:  # everything in it was applied before
                before = (fingerprint(adapter, projection), projection.checkpoint())
                apply_window(projection, stream, a, b)
                assert (fingerprint(adapter, projection), projection.checkpoint()) == before
            else:
                apply_window(projection, stream, a, b)
            done = max(done, b)
        whole = _whole(adapter, stream)
        assert fingerprint(adapter, projection) == fingerprint(adapter, whole)
        whole.close()
    finally:
        projection.close()


@SAVED
@CONTRACT
@given(data=st.data())
def test_save_and_reopen_round_trip_and_a_crash_resumes_from_the_checkpoint(
    adapter: ProjectionAdapter, data: st.DataObject
) -> None:
    """Between batches the projection goes on, saves (``flush``), restarts (closed, reopened
    from its directory: the same state and checkpoint, and everything delivered again changes
    nothing) or crashes (dropped unsaved, reopened:
    its checkpoint never above what was applied; the runner redelivers from it). In the end,
    reopened once more, it has the state of the history applied once in memory and its
    checkpoint is the last message."""
    stream = _stream(adapter, data)
    if not stream.items:
        return
    windows = batches(len(stream.items), data.draw(splits(len(stream.items))))
    actions = data.draw(
        st.lists(
            st.sampled_from(["go", "save", "restart", "crash"]),
            min_size=len(windows),
            max_size=len(windows),
        )
    )
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        projection = adapter.open(directory)
        delivered = projection.checkpoint()  # the runner's checkpoint: where it resumes
        for (_, b), action in zip(windows, actions, strict=True):
            applied = stream.items[b - 1].sequence
            apply_window(projection, stream, delivered, b)  # sequence s is at index s - 1
            delivered = applied
            if action == "save" and isinstance(projection, WholeStateProjection):
                projection.flush()
                assert projection.checkpoint() == applied
            elif action == "restart":
                before = fingerprint(adapter, projection)
                projection.close()
                projection = adapter.open(directory)
                assert projection.checkpoint() == applied
                assert fingerprint(adapter, projection) == before
                # Its last batch was never acknowledged: delivered again, it changes nothing.
                apply_window(projection, stream, 0, b)
                assert fingerprint(adapter, projection) == before
                assert projection.checkpoint() == applied
            elif action == "crash":
                adapter.crash(projection)
                projection = adapter.open(directory)
                assert projection.checkpoint() <= applied
                delivered = projection.checkpoint()  # resubscribed from the saved checkpoint
        if delivered < stream.last:  # after a last crash the runner redelivers the tail
            apply_window(projection, stream, delivered, len(stream.items))
        projection.close()
        reopened = adapter.open(directory)
        whole = _whole(adapter, stream)
        try:
            assert reopened.checkpoint() == stream.last
            assert fingerprint(adapter, reopened) == fingerprint(adapter, whole)
        finally:
            reopened.close()
            whole.close()


# -- the implementations ------------------------------------------------------------------------


def test_the_suite_covers_every_projection_an_engine_runs(tmp_path: Path) -> None:
    """Every projection an engine feeds (``ProjectionSet.live``) has an adapter here, each of
    the same class as the engine's, and the persistent ones (``all``) are reopened here from a
    directory: a projection added to the set without an adapter fails this test."""
    projections = open_projections(Settings(data_dir=tmp_path))
    try:
        engine = {p.name: type(p) for p in projections.live}
        persistent = {p.name for p in projections.persistent}
    finally:
        projections.close()
    opened = [a.open(None) for a in ADAPTERS]
    try:
        assert {a.name: type(p) for a, p in zip(ADAPTERS, opened, strict=True)} == engine
    finally:
        for projection in opened:
            projection.close()
    assert {a.name for a in PERSISTENT} == persistent


@pytest.mark.parametrize(
    ("name", "whole_state", "announces"),
    [
        ("tables", False, False),
        ("patterns", True, True),
        ("sessions", True, True),
        ("vectors", True, False),
        ("recent", False, False),
        ("cache", True, False),
    ],
)
def test_each_projection_is_of_the_kind_it_declares(
    name: str, whole_state: bool, announces: bool
) -> None:
    """The runner and the composition root tell the kinds apart by the declared protocols
    (``projections.base``): whole-state projections save and read, announcers announce."""
    [adapter] = [a for a in ADAPTERS if a.name == name]
    projection: Any = adapter.open(None)
    try:
        assert isinstance(projection, Projection) and projection.name == name
        assert isinstance(projection, WholeStateProjection) is whole_state
        assert isinstance(projection, Announcer) is announces
    finally:
        projection.close()

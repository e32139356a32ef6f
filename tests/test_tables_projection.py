"""The tables projection obeys the event-sourcing rules, for any history (property-based)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from projections.records import DeadLetter, SequencedEvent
from projections.tables import TablesProjection, TableStore, table_digests
from tests.strategies.events import histories, splits

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _differing(a: dict[str, str], b: dict[str, str]) -> list[str]:
    return sorted(name for name in a if a[name] != b.get(name))


def _project(batches: Sequence[Sequence[SequencedEvent]]) -> dict[str, str]:
    store = TableStore.in_memory()
    projection = TablesProjection(store)
    for batch in batches:
        if batch:
            projection.apply(batch, [], batch[-1].sequence)
    digests = table_digests(store.reader())
    store.close()
    return digests


def _cut(history: Sequence[SequencedEvent], cuts: Sequence[int]) -> list[list[SequencedEvent]]:
    bounds = [0, *cuts, len(history)]
    return [list(history[a:b]) for a, b in itertools.pairwise(bounds) if b > a]


@FAST
@given(st.data())
def test_any_batching_gives_the_same_state(data: st.DataObject) -> None:
    """Projecting a history in one batch or in any split gives identical tables."""
    history = data.draw(histories())
    cuts = data.draw(splits(len(history)))
    assert _differing(_project([history]), _project(_cut(history, cuts))) == []


@FAST
@given(histories())
def test_same_events_same_state(history: list[SequencedEvent]) -> None:
    """Determinism: two projections of the same events are identical."""
    assert _project([history]) == _project([history])


@FAST
@given(st.data())
def test_redelivered_batches_change_nothing(data: st.DataObject) -> None:
    """After a crash and restart, batches redelivered at or below the checkpoint are no-ops."""
    history = data.draw(histories(max_size=30))
    cuts = data.draw(splits(len(history)))
    batches = _cut(history, cuts)
    store = TableStore.in_memory()
    projection = TablesProjection(store)
    for index, batch in enumerate(batches):
        projection.apply(batch, [], batch[-1].sequence)
        # A restarted projection (fresh object, same store) is sent everything so far again.
        projection = TablesProjection(store)
        replayed = [e for b in batches[: index + 1] for e in b]
        projection.apply(replayed, [], replayed[-1].sequence)
    assert table_digests(store.reader()) == _project([history])
    store.close()


def test_checkpoint_moves_past_dead_letters_only() -> None:
    """A batch of only dead letters stores them and moves the checkpoint to their sequence."""
    from datetime import UTC, datetime

    store = TableStore.in_memory()
    projection = TablesProjection(store)
    letter = DeadLetter.of(
        sequence=7,
        subject="memory.x",
        stored_at=datetime(2026, 1, 1, tzinfo=UTC),
        kind="invalid_json",
        reason="not JSON",
        body=b"{",
        projection="tables",
    )
    projection.apply([], [letter], 7)
    assert projection.checkpoint() == 7
    assert TablesProjection(store).checkpoint() == 7
    rows = store.reader().execute("SELECT sequence, kind, raw FROM dead_letters").fetchall()
    assert rows == [(7, "invalid_json", b"{")]
    store.close()

"""The tables projection: a batch of dead letters only moves the checkpoint. (Any batching, a
redelivered batch, a restart: the Projection contract, tests/test_projection_contract.py.)"""

from __future__ import annotations

from projections.records import DeadLetter
from projections.tables import TablesProjection, TableStore


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

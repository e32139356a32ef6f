"""The save policy bounds the time spent saving whole states, whatever their size; the three
projections that save whole states save with their checkpoint when it says so, and on close."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from projections.embedders import get_embedder
from projections.learning import LearnerProjection
from projections.records import SequencedEvent
from projections.save_policy import SavePolicy
from projections.sessions import SessionCompactor
from projections.vectors.projection import VectorProjection
from tests.histories import realistic_history


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_waits_for_enough_events_then_spaces_saves_by_their_cost() -> None:
    clock = FakeClock()
    policy = SavePolicy(every_events=100, max_share=0.1, min_interval_s=0, clock=clock)
    assert not policy.due(99)
    assert policy.due(100)

    def slow_save() -> None:
        clock.now += 2.0  # a save that takes 2 s

    policy.timed(slow_save)
    # 2 s of saving allows the next save 18 s later: at most 10% of the time goes to saving.
    clock.now += 17.9
    assert not policy.due(10_000)
    clock.now += 0.1
    assert policy.due(100)
    assert not policy.due(99)


def test_a_fast_save_waits_only_the_minimum_interval() -> None:
    clock = FakeClock()
    policy = SavePolicy(every_events=10, min_interval_s=5.0, clock=clock)
    assert not policy.due(10**6)  # a short catch-up after opening saves only on close
    clock.now = 5.0
    assert policy.due(10)
    policy.timed(lambda: None)
    clock.now = 9.9
    assert not policy.due(10)
    clock.now = 10.0
    assert policy.due(10)


@pytest.mark.parametrize(
    ("every", "share", "interval", "named"),
    [
        (0, 0.1, 1, "every_events"),
        (10, 0.0, 1, "max_share"),
        (10, 1.5, 1, "max_share"),
        (10, 0.1, -1, "min_interval_s"),
    ],
)
def test_nonsense_settings_are_refused_by_name(
    every: int, share: float, interval: float, named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        SavePolicy(every_events=every, max_share=share, min_interval_s=interval)


# -- the policy as the three whole-state projections use it -----------------------------------

T0 = datetime(2026, 11, 1, tzinfo=UTC)
Build = Callable[[Path, SavePolicy | None], Any]
WHOLE_STATE: dict[str, Build] = {
    "vectors": lambda d, p: VectorProjection(d, get_embedder("hashing"), save_policy=p),
    "learner": lambda d, p: LearnerProjection(d, save_policy=p),
    "sessions": lambda d, p: SessionCompactor(d, save_policy=p),
}


def _batches(count: int, size: int) -> list[list[SequencedEvent]]:
    events = [SequencedEvent(i + 1, T0, e) for i, e in enumerate(realistic_history(0, count))]
    return [events[i : i + size] for i in range(0, count, size)]


@pytest.mark.parametrize("name", sorted(WHOLE_STATE))
def test_a_due_save_moves_the_checkpoint_during_apply(name: str, tmp_path: Path) -> None:
    eager = SavePolicy(every_events=1, max_share=1.0, min_interval_s=0, clock=FakeClock())
    projection = WHOLE_STATE[name](tmp_path, eager)
    for batch in _batches(60, 20):
        projection.apply(batch, [], batch[-1].sequence)
        assert projection.checkpoint() == batch[-1].sequence  # saved with the batch
    reopened = WHOLE_STATE[name](tmp_path, None)
    assert reopened.checkpoint() == 60
    reopened.close()


@pytest.mark.parametrize("name", sorted(WHOLE_STATE))
def test_an_undue_save_waits_for_close(name: str, tmp_path: Path) -> None:
    projection = WHOLE_STATE[name](tmp_path, None)  # the default: 60 s after opening
    for batch in _batches(60, 20):
        projection.apply(batch, [], batch[-1].sequence)
    assert projection.checkpoint() == 0  # a crash now replays from 0: nothing is lost
    assert WHOLE_STATE[name](tmp_path, None).checkpoint() == 0
    projection.close()
    assert WHOLE_STATE[name](tmp_path, None).checkpoint() == 60


def test_save_every_and_save_policy_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        LearnerProjection(None, save_every=10, save_policy=SavePolicy())

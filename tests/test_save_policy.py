"""The save policy bounds the time spent saving whole states, whatever their size."""

from __future__ import annotations

import pytest

from projections.save_policy import SavePolicy


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_waits_for_enough_events_then_spaces_saves_by_their_cost() -> None:
    clock = FakeClock()
    policy = SavePolicy(every_events=100, max_share=0.1, clock=clock)
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


def test_a_fast_save_is_due_again_at_once() -> None:
    clock = FakeClock()
    policy = SavePolicy(every_events=10, clock=clock)
    policy.timed(lambda: None)
    assert policy.due(10)


@pytest.mark.parametrize(("every", "share"), [(0, 0.1), (10, 0.0), (10, 1.5)])
def test_nonsense_settings_are_refused_by_name(every: int, share: float) -> None:
    with pytest.raises(ValueError, match=r"every_events|max_share"):
        SavePolicy(every_events=every, max_share=share)

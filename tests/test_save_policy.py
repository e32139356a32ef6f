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

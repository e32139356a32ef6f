"""When a projection whose state is saved whole (vectors, learner, sessions) saves it.

A save rewrites state that grows with the history, so saving every N events makes a long replay
quadratic: at 500,000 events one save took about 6 s and came every 3 s of replay. The policy
asks for ``every_events`` unsaved events AND for time to have passed: ``min_interval_s`` since
the projection opened or last saved, and, after a save that took ``d`` seconds,
``d * (1 / max_share - 1)`` seconds, so at most ``max_share`` of the wall time goes into saving
whatever the state's size. A short catch-up (a restart, a snapshot's tail) saves once, on close.

A save that fails (a full disk) raises out of the projection's ``apply``: the runner then applies
the same batch again after a pause, the projection skips the events it holds already, and the
policy, which remembers the failed save, saves again at once (``due``), whatever the counts.

What is not saved yet is never lost: the saved watermark is the projection's checkpoint, and
after a crash the runner re-reads the stream from it (see ``consumers/runner.py``). When the
saves happen changes nothing in the state (property tests batch and save at random points).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["SavePolicy", "policy_for"]


@dataclass
class SavePolicy:
    """Decides when a whole-state save is due; ``timed`` measures one and spaces the next."""

    every_events: int = 5_000
    max_share: float = 0.1
    min_interval_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _not_before: float = field(default=0.0, init=False)
    _owed: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.every_events < 1:
            raise ValueError(f"every_events must be at least 1, got {self.every_events}")
        if not 0 < self.max_share <= 1:
            raise ValueError(f"max_share must be in (0, 1], got {self.max_share}")
        if self.min_interval_s < 0:
            raise ValueError(f"min_interval_s must not be negative, got {self.min_interval_s}")
        self._not_before = self.clock() + self.min_interval_s

    def due(self, unsaved_events: int) -> bool:
        """Whether to save now: enough unsaved events and time, or a save that failed and is
        owed (the caller's retry of the same batch then saves before anything goes on)."""
        if self._owed:
            return True
        return unsaved_events >= self.every_events and self.clock() >= self._not_before

    def timed(self, save: Callable[[], None]) -> None:
        """Run ``save`` and hold the next save back in proportion to how long it took. When
        ``save`` raises, the save stays owed: ``due`` is True until one succeeds."""
        started = self.clock()
        self._owed = True
        save()
        self._owed = False
        finished = self.clock()
        spacing = (finished - started) * (1 / self.max_share - 1)
        self._not_before = finished + max(self.min_interval_s, spacing)


def policy_for(save_every: int | None, save_policy: SavePolicy | None) -> SavePolicy:
    """A projection's policy from its two keyword arguments (give one at most). Each projection
    needs a policy of its own: a policy records its projection's last save."""
    if save_policy is not None and save_every is not None:
        raise ValueError("give save_every or save_policy, not both")
    if save_policy is not None:
        return save_policy
    return SavePolicy(every_events=5_000 if save_every is None else save_every)

"""The demo's orchestrators: one asks engram before acting, one never remembers (baseline).

Both face the same world (same hidden success rates, separate seeded draws). The one with memory
explores until engram has a best workflow for the task type, then mostly exploits it (a little
exploration keeps the evidence fresh). Its results go to namespace ``demo``; the baseline's to
``baseline``, so the two can be compared with the CLI afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engine.demo.world import Candidate, Outcome, TaskSpec, World

__all__ = ["Orchestrator", "RunLog", "rolling_rate"]

Recall = Callable[[str], Awaitable[tuple[str, ...] | None]]
Record = Callable[[TaskSpec, Candidate, str, Outcome], Awaitable[None]]


@dataclass
class RunLog:
    """Successes in the order the tasks ran, and how often memory chose the workflow."""

    outcomes: list[bool] = field(default_factory=list)
    recalled: int = 0

    @property
    def success_rate(self) -> float:
        return sum(self.outcomes) / len(self.outcomes) if self.outcomes else 0.0


def rolling_rate(outcomes: list[bool], window: int) -> list[float]:
    """Success rate over the last ``window`` tasks at each point (fewer at the start)."""
    rates, total = [], 0
    for index, success in enumerate(outcomes):
        total += success
        if index >= window:
            total -= outcomes[index - window]
        rates.append(total / min(index + 1, window))
    return rates


class Orchestrator:
    """Runs tasks in a world; ``recall`` (None for the baseline) names a workflow to use."""

    def __init__(
        self,
        world: World,
        recall: Recall | None,
        record: Record,
        explore: float = 0.1,
        seed: int = 0,
    ) -> None:
        self.world = world
        self.recall = recall
        self.record = record
        self.explore = explore
        self.rng = random.Random(seed)
        self.log = RunLog()

    async def choose(self, spec: TaskSpec) -> Candidate:
        if self.recall is not None and self.rng.random() >= self.explore:
            steps = await self.recall(spec.task_type)
            for candidate in spec.candidates:
                if candidate.steps == steps:
                    self.log.recalled += 1
                    return candidate
        return self.rng.choice(spec.candidates)

    async def step(self) -> Outcome:
        spec, request = self.world.next_task()
        candidate = await self.choose(spec)
        outcome = self.world.run(spec, candidate, request)
        await self.record(spec, candidate, request, outcome)
        self.log.outcomes.append(outcome.success)
        return outcome

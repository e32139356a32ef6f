"""The demo's orchestrators: one asks engram before acting, one never remembers (baseline).

Both face the same world (same hidden success rates, separate seeded draws). The one with memory
asks engram how each candidate workflow has done so far: a candidate with less than
``min_evidence`` runs is tried first; then it follows engram's best workflow, except for a small
share of tasks where it explores by Thompson sampling over engram's counts (a candidate that was
unlucky at first keeps a fair chance to prove itself, a hopeless one rarely runs again).
Its results go to namespace ``demo``; the baseline's to ``baseline``, so the two can be compared
with the CLI afterwards.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from engram.demo.world import Candidate, Outcome, TaskSpec, World

__all__ = ["Orchestrator", "Recalled", "RunLog", "rolling_rate"]


@dataclass(frozen=True)
class Recalled:
    """What engram knows of a task type: its best workflow and, per workflow, how many of its
    runs succeeded and how many there were."""

    best: tuple[str, ...] | None
    runs: dict[tuple[str, ...], tuple[int, int]]


Recall = Callable[[str], Awaitable[Recalled]]
Record = Callable[[TaskSpec, Candidate, str, Outcome], Awaitable[None]]


@dataclass
class RunLog:
    """Successes in the order the tasks ran, and how each workflow was chosen with memory: to
    gather evidence (a candidate engram has too few runs of), engram's best, or exploration."""

    outcomes: list[bool] = field(default_factory=list)
    gathering: int = 0
    followed_best: int = 0
    explored: int = 0

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
        min_evidence: int = 10,
    ) -> None:
        self.world = world
        self.recall = recall
        self.record = record
        self.explore = explore
        self.min_evidence = min_evidence
        self.rng = random.Random(seed)
        self.log = RunLog()

    async def choose(self, spec: TaskSpec) -> Candidate:
        if self.recall is None:
            return self.rng.choice(spec.candidates)
        known = await self.recall(spec.task_type)
        counts = [known.runs.get(c.steps, (0, 0)) for c in spec.candidates]
        runs = [executions for _, executions in counts]
        if min(runs) < self.min_evidence:
            self.log.gathering += 1
            return spec.candidates[runs.index(min(runs))]
        if self.rng.random() >= self.explore:
            for candidate in spec.candidates:
                if candidate.steps == known.best:
                    self.log.followed_best += 1
                    return candidate
        self.log.explored += 1
        draws = [self.rng.betavariate(s + 1, n - s + 1) for s, n in counts]
        return spec.candidates[draws.index(max(draws))]

    async def step(self) -> Outcome:
        spec, request = self.world.next_task()
        candidate = await self.choose(spec)
        outcome = self.world.run(spec, candidate, request)
        await self.record(spec, candidate, request, outcome)
        self.log.outcomes.append(outcome.success)
        return outcome

"""A simulated world of tasks: each task type has candidate workflows with hidden true success
rates, durations and costs. Pure and seeded, so the demo and the tests are reproducible."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["TASK_WORLD", "Candidate", "Outcome", "TaskSpec", "World"]


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to run a task type, with its hidden truth."""

    steps: tuple[str, ...]
    success_rate: float
    mean_duration: float
    mean_cost: float


@dataclass(frozen=True, slots=True)
class TaskSpec:
    task_type: str
    requests: tuple[str, ...]
    candidates: tuple[Candidate, ...]

    @property
    def best(self) -> Candidate:
        return max(self.candidates, key=lambda c: c.success_rate)


@dataclass(frozen=True, slots=True)
class Outcome:
    success: bool
    duration: float
    cost: float
    summary: str
    error_patterns: tuple[str, ...]


TASK_WORLD: tuple[TaskSpec, ...] = (
    TaskSpec(
        "code_generation",
        (
            "Implement a REST endpoint for user signup",
            "Write a function that parses ISO dates",
            "Create a class for rate limiting API calls",
        ),
        (
            Candidate(("plan", "write_code", "run_tests", "review"), 0.90, 42.0, 0.020),
            Candidate(("write_code", "review"), 0.55, 20.0, 0.010),
            Candidate(("plan", "write_code"), 0.65, 30.0, 0.012),
        ),
    ),
    TaskSpec(
        "debugging",
        (
            "Fix the crash when the config file is missing",
            "Debug the failing login flow",
            "Investigate the memory leak in the worker",
        ),
        (
            Candidate(("reproduce", "bisect", "patch", "regression_test"), 0.85, 65.0, 0.030),
            Candidate(("read_logs", "patch"), 0.45, 25.0, 0.010),
            Candidate(("reproduce", "patch"), 0.70, 40.0, 0.018),
        ),
    ),
    TaskSpec(
        "data_analysis",
        (
            "Analyze last month's churn by plan",
            "Build a report of weekly active users",
            "Find anomalies in the payment dataset",
        ),
        (
            Candidate(("load", "clean", "explore", "report"), 0.80, 55.0, 0.025),
            Candidate(("load", "report"), 0.40, 15.0, 0.008),
            Candidate(("load", "clean", "report"), 0.68, 35.0, 0.015),
        ),
    ),
    TaskSpec(
        "deployment",
        (
            "Deploy the API to staging",
            "Roll out the new release to production",
            "Release version 2.3 with a canary",
        ),
        (
            Candidate(("build", "test", "canary", "promote"), 0.92, 80.0, 0.040),
            Candidate(("build", "deploy"), 0.60, 20.0, 0.015),
            Candidate(("build", "test", "deploy"), 0.78, 45.0, 0.025),
        ),
    ),
)

_FAILURES = {
    "code_generation": ("type error in generated code", "missing import"),
    "debugging": ("could not reproduce", "fix broke another test"),
    "data_analysis": ("null values in join key", "query timeout"),
    "deployment": ("health check failed", "migration lock timeout"),
}


class World:
    """Draws requests and outcomes from the hidden truth with its own seeded RNG."""

    def __init__(self, seed: int, specs: tuple[TaskSpec, ...] = TASK_WORLD) -> None:
        self.rng = random.Random(seed)
        self.specs = specs
        self.by_type = {spec.task_type: spec for spec in specs}

    def next_task(self) -> tuple[TaskSpec, str]:
        spec = self.rng.choice(self.specs)
        return spec, self.rng.choice(spec.requests)

    def run(self, spec: TaskSpec, candidate: Candidate, request: str) -> Outcome:
        success = self.rng.random() < candidate.success_rate
        duration = max(1.0, self.rng.gauss(candidate.mean_duration, candidate.mean_duration * 0.2))
        cost = max(0.0, self.rng.gauss(candidate.mean_cost, candidate.mean_cost * 0.1))
        steps = " -> ".join(candidate.steps)
        if success:
            summary = f"{request}: completed with {steps}"
            errors: tuple[str, ...] = ()
        else:
            error = self.rng.choice(_FAILURES.get(spec.task_type, ("unknown failure",)))
            summary = f"{request}: failed during {steps} ({error})"
            errors = (error,)
        return Outcome(success, round(duration, 2), round(cost, 4), summary, errors)

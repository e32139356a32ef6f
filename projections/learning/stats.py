"""Running aggregates the learner keeps (plain, JSON-serialisable, order-preserving)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["FeedbackStats", "OutcomeStats", "PatternVersion", "WorkflowStats"]


@dataclass
class WorkflowStats:
    """One distinct sequence of steps within a (namespace, task type)."""

    steps: list[str]
    executions: int = 0
    successes: int = 0
    duration_sum: float = 0.0
    cost_sum: float = 0.0
    cost_count: int = 0
    last_seen: str = ""
    last_sequence: int = 0

    @property
    def success_rate(self) -> float:
        return self.successes / self.executions if self.executions else 0.0

    @property
    def avg_duration(self) -> float:
        return self.duration_sum / self.executions if self.executions else 0.0

    @property
    def avg_cost(self) -> float | None:
        return self.cost_sum / self.cost_count if self.cost_count else None

    def add(self, success: bool, duration: float, cost: float | None, when: str, seq: int) -> None:
        self.executions += 1
        self.successes += int(success)
        self.duration_sum += duration
        if cost is not None:
            self.cost_sum += cost
            self.cost_count += 1
        self.last_seen = when
        self.last_sequence = seq


@dataclass
class OutcomeStats:
    """Task executions of a (namespace, task type): outcomes, error patterns, summary terms."""

    successes: int = 0
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    success_terms: dict[str, int] = field(default_factory=dict)
    failure_terms: dict[str, int] = field(default_factory=dict)
    last_sequence: int = 0

    @property
    def total(self) -> int:
        return self.successes + self.failures


@dataclass
class FeedbackStats:
    helpful: int = 0
    unhelpful: int = 0
    adjustment: float = 0.0


@dataclass
class PatternVersion:
    """What the learner last decided about a pattern (its announced version and figures)."""

    version: int
    success_rate: float
    confidence: float
    is_best: bool
    sample_size: int
    pattern_type: str
    namespace: str
    task_type: str
    details: dict[str, Any]
    caused_by_sequence: int


def to_plain(value: Any) -> Any:
    return asdict(value)

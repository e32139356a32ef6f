"""What queries return, as pydantic models. The field names are the ones orchestrators built on
the original memory designs already use (TaskMetrics, SessionMetrics, get_task_context ...).
Unknown fields are ignored, so an older SDK reads a newer engine's answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AssembledContext",
    "ContextChunk",
    "LearnedPattern",
    "LearningMetrics",
    "SearchHit",
    "TaskContext",
    "TaskMetrics",
    "WorkflowPattern",
]


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class TaskMetrics(_Result):
    """How one task type has done: executions, successes, success rate, duration and cost."""

    task_type: str
    namespace: str = "default"
    total_executions: int
    successful_executions: int
    success_rate: float
    avg_duration: float
    avg_cost: float | None = None


class WorkflowPattern(_Result):
    """A distinct sequence of steps for a task type and how it has done."""

    pattern_id: str
    namespace: str
    task_type: str
    workflow_steps: list[str]
    executions: int
    successes: int
    success_rate: float
    avg_duration: float
    avg_cost: float | None = None
    last_seen: str = ""
    confidence: float = 0.0
    version: int = 0
    is_best: bool = False


class LearnedPattern(_Result):
    """A learned pattern as announced on memory.pattern.learned (current version)."""

    pattern_id: str
    pattern_type: str
    namespace: str
    task_type: str
    version: int
    success_rate: float
    confidence: float
    sample_size: int
    is_best: bool = False
    caused_by_sequence: int = 0
    workflow_steps: list[str] | None = None
    success_indicators: list[str] = Field(default_factory=list)
    failure_indicators: list[str] = Field(default_factory=list)
    error_patterns: list[str] = Field(default_factory=list)
    recommended_context: list[str] = Field(default_factory=list)


class LearningMetrics(_Result):
    """What the learner knows of a namespace: overall success rate, totals, learned task types."""

    namespace: str
    overall_success_rate: float
    total_workflows_executed: int
    learned_task_types: list[str]
    patterns_learned: int
    metrics_by_task_type: dict[str, TaskMetrics]


class SearchHit(_Result):
    """One similar memory (task execution, decision or knowledge)."""

    id: str
    collection: str
    namespace: str
    similarity_score: float
    text: str
    success: bool | None = None
    task_id: str | None = None
    task_type: str | None = None
    occurred_at: str
    sequence: int
    reused_count: int = 0
    occurrences: int = 1
    """How many times this text was stored (identical texts are one memory)."""
    duplicates: int = 0
    """How many near-duplicate hits this one stands for (grouped under it, not listed)."""
    duplicate_ids: list[str] = []
    """The ids of those near-duplicates, best first."""


class ContextChunk(_Result):
    """One piece of assembled context: where it came from and what it costs."""

    tier: str
    source: str
    event_id: str | None = None
    sequence: int | None = None
    text: str
    relevance: float
    tokens: int


class AssembledContext(_Result):
    """Context for a task from the three memory tiers, within a token budget."""

    task_description: str
    max_tokens: int
    total_tokens: int
    chunks: list[ContextChunk]
    token_counter: str


class TaskContext(_Result):
    """Everything an agent needs before a task: similar past tasks, the patterns that match its
    type, the best workflow and recommendations in plain sentences."""

    task_description: str
    task_type: str
    similar_tasks: list[SearchHit]
    patterns: list[LearnedPattern]
    best_workflow: WorkflowPattern | None = None
    recommendations: list[str]
    extra: dict[str, Any] = Field(default_factory=dict)

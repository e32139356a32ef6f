"""Payloads of the events agents publish (the public wire contract, schema version 1)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, StrictBool, field_validator

from engine.events._base import (
    EventData,
    Identifier,
    JsonObject,
    NonNegativeFloat,
    ShortText,
    Text,
)

__all__ = [
    "DecisionLogged",
    "DecisionOutcome",
    "KnowledgeAdded",
    "KnowledgeKind",
    "PatternFeedback",
    "SessionEnded",
    "SessionStarted",
    "TaskExecuted",
    "WorkflowExecuted",
]

TaskTypeName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$", strict=True)
]
Step = Annotated[str, Field(min_length=1, max_length=256, strict=True)]

FLOAT32_MAX = 3.4028235e38
"""The largest float32: vectors are indexed as float32, where anything larger is infinite."""


class WorkflowExecuted(EventData):
    """One run of a workflow (a sequence of steps) for a task, and how it went."""

    task_type: TaskTypeName | None = None
    request: Text | None = None
    workflow_steps: list[Step] = Field(min_length=1, max_length=1_000)
    success: StrictBool
    duration: NonNegativeFloat
    cost: NonNegativeFloat | None = None
    metadata: JsonObject = Field(default_factory=dict)


class TaskExecuted(EventData):
    """One executed task with a summary; ``embedding``, when given, is indexed as is.

    Every value of ``embedding`` must be finite and within float32 range: it is the event's
    content, so a vector the index cannot hold is refused here (an invalid event), not failed
    on by the vectors projection. An all-zero vector is accepted: it is finite, the index gives
    it similarity 0 to every query (no direction: never a vector hit, never a failure), the
    task is still found by its text, and refusing it would turn stored v1 events into dead
    letters on replay.
    """

    task_id: Identifier
    execution_summary: Annotated[str, Field(min_length=1, max_length=200_000, strict=True)]
    success: StrictBool
    task_type: TaskTypeName | None = None
    error_patterns: list[ShortText] = Field(default_factory=list, max_length=1_000)
    embedding: list[float] | None = Field(default=None, min_length=1, max_length=8_192)
    metadata: JsonObject = Field(default_factory=dict)

    @field_validator("embedding")
    @classmethod
    def _indexable(cls, embedding: list[float] | None) -> list[float] | None:
        # One problem for the whole vector, not one per value (a 384-d vector of overflows).
        if embedding is None:
            return None
        bad = [i for i, x in enumerate(embedding) if not math.isfinite(x) or abs(x) > FLOAT32_MAX]
        if bad:
            raise ValueError(
                f"every value must be a finite number within float32 range "
                f"(abs <= {FLOAT32_MAX!r}); {len(bad)} of {len(embedding)} are not, the first "
                f"at index {bad[0]}: {embedding[bad[0]]!r}"
            )
        return embedding


class DecisionLogged(EventData):
    """A decision: who took it, what it was, why, in what context, against which options."""

    decision_id: Identifier
    actor: ShortText
    decision: Annotated[str, Field(min_length=1, max_length=200_000, strict=True)]
    rationale: Text = ""
    context: Text = ""
    alternatives: list[ShortText] = Field(default_factory=list, max_length=1_000)
    task_id: Identifier | None = None


class DecisionOutcome(EventData):
    """How an earlier decision turned out."""

    decision_id: Identifier
    success: StrictBool
    notes: Text = ""


class PatternFeedback(EventData):
    """An agent's judgement of a learned pattern it was given."""

    pattern_id: Identifier
    helpful: StrictBool
    confidence_adjustment: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0


class SessionStarted(EventData):
    """A session (one orchestration request, a conversation) begins."""

    session_id: Identifier
    goal: Text | None = None


class SessionEnded(EventData):
    """A session ends, optionally with its overall outcome."""

    session_id: Identifier
    success: StrictBool | None = None


KnowledgeKind = Literal["procedure", "incident", "knowledge", "config"]


class KnowledgeAdded(EventData):
    """A long-term document: a procedure, an incident report, knowledge or a configuration."""

    kind: KnowledgeKind
    title: ShortText
    content: Annotated[str, Field(min_length=1, max_length=200_000, strict=True)]
    knowledge_id: Identifier | None = None
    tags: list[ShortText] = Field(default_factory=list, max_length=100)
    metadata: JsonObject = Field(default_factory=dict)

    @field_validator("tags")
    @classmethod
    def _unique_tags(cls, tags: list[str]) -> list[str]:
        return list(dict.fromkeys(tags))

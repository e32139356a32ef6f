"""What each query verb answers: one pydantic model per verb (the records inside come from
``engine.results``). Unknown fields are ignored, so an older client reads a newer engine."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from engine.results import (
    AssembledContext,
    LearnedPattern,
    LearningMetrics,
    SearchHit,
    TaskContext,
    TaskMetrics,
    WorkflowPattern,
)

__all__ = [
    "BestWorkflowReply",
    "CacheLookupReply",
    "CacheStatus",
    "CheckpointsReply",
    "Consistency",
    "ExportReply",
    "ExtractPatternReply",
    "ItemNamespacesReply",
    "ItemsReply",
    "PatternListReply",
    "PatternsReply",
    "ProjectionStatus",
    "QueryReply",
    "SearchReply",
    "SessionsReply",
    "SqlReply",
    "StatusReply",
    "StoredItem",
    "StreamDurability",
    "TableMetricsReply",
    "TaskMetricsReply",
    "WorkflowMetricsReply",
]


class QueryReply(BaseModel):
    """The base of every reply model."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Consistency(QueryReply):
    """What an answer reflects: every reply of a verb that reads projections carries one, as
    ``consistency`` beside the verb's own fields."""

    sequence: int
    """The stream sequence every projection the answer read had applied (the lowest of them)."""
    stale: bool = False
    """True when the request's ``min_sequence`` was not reached within the engine's bound
    (``query_consistency_wait_s``): the answer reflects ``sequence``, not every write asked for."""


class ProjectionStatus(QueryReply):
    checkpoint: int
    last_sequence: int
    lag: int
    durable: str
    degraded: bool
    reason: str | None = None
    duplicates: int = 0


class StreamDurability(QueryReply):
    """The stream's replication, storage and limits, and the server's fsync interval."""

    replicas: int
    storage: str
    """``file`` or ``memory``."""
    max_age_s: float
    """0: events are kept forever."""
    max_bytes: int
    """-1: no limit."""
    max_msg_size: int
    """-1: no limit (the server's max_payload still bounds a message)."""
    duplicate_window_s: float
    sync_interval: str
    """``always`` (fsync before every ack), ``2m (nats-server default)``, or ``unknown`` (a
    server engram did not start: its configuration is not visible to clients)."""
    persist_mode: str | None = None
    """The stream's persist mode when set (nats-server 2.12+; ``async`` acks before writing)."""
    warning: str | None = None
    """Set when acknowledged events can be lost on a power failure (one replica, no fsync per
    write), saying how to fix it."""


class CacheStatus(QueryReply):
    """The semantic cache of an engine's namespaces, in ``status``."""

    entries: int
    """Cached prompts live now (from the log: the same on every engine and replay)."""
    puts: int
    evictions: int
    """Entries gone before a newer put replaced them: ``expired`` + ``removed``."""
    expired: int
    """Evicted because their namespace's event time passed their ``expires_at``."""
    removed: int
    """Removed by a ``cache.evicted`` event."""
    lookups: int
    """``cache_lookup`` requests this engine answered since it started (queries are not events:
    another engine, or this one after a restart, counts its own)."""
    hits: int
    hit_rate: float | None = None
    """hits / lookups (None before the first lookup)."""
    counting_since: datetime
    """When this engine started counting lookups and hits."""
    namespaces: dict[str, dict[str, Any]] | None = None
    """The same per namespace (left out above 50 namespaces)."""


class StatusReply(QueryReply):
    """The stream and, per projection, its checkpoint and lag."""

    stream: str
    messages: int
    bytes: int
    first_sequence: int
    last_sequence: int
    projections: dict[str, ProjectionStatus]
    snapshots: dict[str, Any]
    instance: str
    history_from: int | None = None
    """Set when the engine started empty on a stream whose early history is gone (compacted or
    expired) and no snapshot of its namespaces covered it: its projections start there."""
    namespaces: list[str] | None = None
    """The namespaces the engine owns (None: every one)."""
    namespace_set: str | None = None
    nats_connected: bool | None = None
    """The engine's own NATS connection is up (None: an engine that does not say)."""
    ready_max_lag: int | None = None
    """The lag above which the engine calls a projection not ready (``Settings.ready_max_lag``)."""
    durability: StreamDurability | None = None
    """How safely the stream keeps what it acknowledged (None: an engine that does not say)."""
    cache: CacheStatus | None = None
    """The semantic cache: entries and evictions from the log, lookups and hits counted by this
    engine since it started (None: an engine without one)."""


class CheckpointsReply(QueryReply):
    checkpoints: dict[str, int]


class TableMetricsReply(QueryReply):
    """Rows of the ``task_metrics`` view."""

    metrics: list[dict[str, Any]]


class WorkflowMetricsReply(QueryReply):
    """Rows of the ``workflow_metrics`` view."""

    workflows: list[dict[str, Any]]


class SqlReply(QueryReply):
    columns: list[str]
    rows: list[dict[str, Any]]
    truncated: bool
    note: str | None = None


class ExportReply(QueryReply):
    """The export's manifest and where it was written."""

    format: str
    compression: str
    sequence: int
    tables: dict[str, Any]
    location: str


class PatternsReply(QueryReply):
    patterns: list[WorkflowPattern]


class BestWorkflowReply(QueryReply):
    workflow: WorkflowPattern | None


class TaskMetricsReply(QueryReply):
    metrics: list[TaskMetrics]


class PatternListReply(QueryReply):
    patterns: list[LearnedPattern]


class ExtractPatternReply(QueryReply):
    """The pooled pattern, or null below ``min_samples``."""

    pattern: dict[str, Any] | None


class SessionsReply(QueryReply):
    sessions: list[dict[str, Any]]
    overview: dict[str, Any]


class SearchReply(QueryReply):
    hits: list[SearchHit]


LearningReply = LearningMetrics
TaskContextReply = TaskContext
AssembledContextReply = AssembledContext


# -- items (the LangGraph store) -----------------------------------------------------------------


class StoredItem(QueryReply):
    """One item: where it is, its value, and when the events that made it happened."""

    path: list[str]
    key: str
    value: dict[str, Any]
    created_at: datetime
    """The ``occurred_at`` of the first put since the item last did not exist."""
    updated_at: datetime
    """The ``occurred_at`` of its newest put."""
    expires_at: datetime | None = None
    sequence: int
    """The stream sequence of its newest put."""
    score: float | None = None
    """How similar it is to a search's query (0..1); None without a query, or not indexed."""


class ItemsReply(QueryReply):
    items: list[StoredItem]
    truncated: bool = False
    """True when the items were cut to fit one NATS message (ask the rest with an offset)."""
    note: str | None = None


class ItemNamespacesReply(QueryReply):
    namespaces: list[list[str]]
    truncated: bool = False
    note: str | None = None


class CacheLookupReply(QueryReply):
    """A ``cache_lookup``: hit or miss, and the nearest live cached prompt."""

    hit: bool
    similarity: float | None = None
    """How similar the nearest live cached prompt is (0..1; None: the namespace has none)."""
    threshold: float
    """The similarity a hit needed."""
    prompt: str | None = None
    """The nearest live cached prompt (on a miss too, so a threshold can be tuned)."""
    response: Any = None
    """The cached response (text or JSON) on a hit; null on a miss."""
    model: str | None = None
    metadata: dict[str, Any] | None = None
    cached_at: datetime | None = None
    """The put's ``occurred_at``."""
    expires_at: datetime | None = None
    """``cached_at`` plus the put's ttl."""
    event_id: str | None = None
    """The envelope id of the ``cache.put`` that cached it."""

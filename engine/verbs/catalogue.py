"""Every query verb, declared once.

A verb's entry says what it is called, what it accepts and answers (pydantic models), which
projections it reads, who it is for, and how it is offered. Everything else derives from it: the
engine's dispatcher validates requests with ``request`` and refuses an unknown verb by this list;
``MemoryClient`` has one method per verb (``sdk``); the command line one sub-command per verb
(``cli``); the AsyncAPI document one channel per verb. The handlers live on the bus side
(``consumers/queries``), keyed by name; a test checks that every surface covers every entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from engine.errors import UsageError
from engine.subjects import ServiceSubjects
from engine.verbs import replies as r
from engine.verbs import requests as q

__all__ = ["CATALOGUE", "QUERY_PREFIX", "Scope", "VerbSpec", "verb"]

QUERY_PREFIX = "engram.query."
"""Queries are NATS requests on ``engram.query.<namespace>.<verb>`` (a tenant's) or
``engram.query.<verb>`` (the operator's, about no one tenant)."""

Reads = Literal["tables", "patterns", "vectors", "sessions", "recent", "cache", "stream", "runners"]
Scope = Literal["tenant", "operator", "either"]
"""Whom a verb is about, hence the subject it is asked on (``VerbSpec.subject``)."""

_SERVICE = ServiceSubjects()


@dataclass(frozen=True, slots=True)
class VerbSpec:
    """One query verb."""

    name: str
    summary: str
    request: type[q.QueryRequest]
    reply: type[BaseModel]
    reads: tuple[Reads, ...]
    """The projections (or other state) its answer comes from."""
    sdk: str
    """The ``MemoryClient`` method that asks it."""
    cli: str | None
    """The ``engram`` sub-command that asks it (None: part of another's, see ``cli_via``)."""
    scope: Scope = "tenant"
    """``tenant``: about one namespace, asked on ``engram.query.<namespace>.<verb>`` (the
    subject's namespace is the one asked about). ``operator``: about the engine or every tenant
    (status, checkpoints, sql, export), asked on ``engram.query.<verb>`` of an engine owning
    every namespace, or on ``engram.query.<namespace>.<verb>`` of the engine owning that
    namespace. ``either``: a tenant's subject when a namespace is named, else the operator's
    (every namespace)."""
    cli_via: str | None = None
    """The sub-command (and its switch) that asks it when ``cli`` is None."""
    trim: str | None = None
    """The list in its reply that may be cut to fit one NATS message (marked ``truncated``)."""
    lower: str = "ask for less"
    """What to lower when its reply does not fit in one NATS message."""

    @property
    def operator(self) -> bool:
        """For operators, not agents (``sql`` and ``export`` are also off unless enabled)."""
        return self.scope == "operator"

    def subject(self, namespace: str | None, service: ServiceSubjects = _SERVICE) -> str:
        """The subject it is asked on: ``engram.query.<namespace>.<verb>``, or the operator's
        ``engram.query.<verb>`` when ``namespace`` is None (raises UsageError for a tenant
        verb, which is always about one namespace)."""
        if namespace is not None:
            return service.tenant_query(namespace, self.name)
        if self.scope == "tenant":
            raise UsageError(f"{self.name} is about one namespace: name it")
        return service.operator_query(self.name)


def _catalogue(*specs: VerbSpec) -> dict[str, VerbSpec]:
    return {spec.name: spec for spec in specs}


CATALOGUE: dict[str, VerbSpec] = _catalogue(
    VerbSpec(
        "status",
        "the stream and, per projection, its checkpoint, lag and health",
        q.StatusRequest,
        r.StatusReply,
        ("stream", "runners"),
        sdk="status",
        cli="status",
        scope="operator",
    ),
    VerbSpec(
        "checkpoints",
        "the stored checkpoint of each table projection",
        q.CheckpointsRequest,
        r.CheckpointsReply,
        ("tables",),
        sdk="checkpoints",
        cli="checkpoints",
        scope="operator",
    ),
    VerbSpec(
        "metrics",
        "task success metrics per task type, from the tables",
        q.TableMetricsRequest,
        r.TableMetricsReply,
        ("tables",),
        sdk="table_metrics",
        cli="metrics",
        scope="either",
        lower="name a namespace or task_type",
    ),
    VerbSpec(
        "workflows",
        "success metrics per workflow within task types, from the tables",
        q.TableMetricsRequest,
        r.WorkflowMetricsReply,
        ("tables",),
        sdk="workflow_metrics",
        cli=None,
        cli_via="metrics --workflows",
        scope="either",
        lower="name a namespace or task_type",
    ),
    VerbSpec(
        "sql",
        "one read-only SQL statement over copies of the tables, in a sandbox (operators; off "
        "unless the engine runs with --enable-sql)",
        q.SqlRequest,
        r.SqlReply,
        ("tables",),
        sdk="sql",
        cli="sql",
        scope="operator",
        trim="rows",
    ),
    VerbSpec(
        "export",
        "every table as Parquet (zstd) with a manifest (operators; asked of an engine: off "
        "unless it runs with --enable-export, and only under <data dir>/exports)",
        q.ExportRequest,
        r.ExportReply,
        ("tables",),
        sdk="export",
        cli="export",
        scope="operator",
    ),
    VerbSpec(
        "patterns",
        "learned workflow patterns above a success rate, best first",
        q.PatternsRequest,
        r.PatternsReply,
        ("patterns",),
        sdk="retrieve_workflow_patterns",
        cli="patterns",
        lower="name a task_type or raise min_success_rate",
    ),
    VerbSpec(
        "best_workflow",
        "the workflow to use for a task type (null while the evidence is too thin)",
        q.BestWorkflowRequest,
        r.BestWorkflowReply,
        ("patterns",),
        sdk="get_best_workflow_for_task",
        cli="best-workflow",
    ),
    VerbSpec(
        "task_metrics",
        "the learner's success metrics of one or every task type",
        q.TaskMetricsRequest,
        r.TaskMetricsReply,
        ("patterns",),
        sdk="get_task_success_metrics",
        cli="task-metrics",
    ),
    VerbSpec(
        "search_patterns",
        "learned patterns (workflow, success, failure) of a task type, most confident first",
        q.SearchPatternsRequest,
        r.PatternListReply,
        ("patterns",),
        sdk="search_patterns",
        cli="search-patterns",
        lower="lower limit",
    ),
    VerbSpec(
        "list_patterns",
        "every learned pattern of a namespace, newest version of each",
        q.ListPatternsRequest,
        r.PatternListReply,
        ("patterns",),
        sdk="list_patterns",
        cli="list-patterns",
        lower="lower limit",
    ),
    VerbSpec(
        "learning",
        "learning metrics: success rate, workflows run, learned task types",
        q.LearningRequest,
        r.LearningReply,
        ("patterns",),
        sdk="get_learning_metrics",
        cli="learning",
    ),
    VerbSpec(
        "extract_pattern",
        "one pattern pooled over every task type a pattern matches (null below min_samples)",
        q.ExtractPatternRequest,
        r.ExtractPatternReply,
        ("patterns",),
        sdk="extract_pattern",
        cli="extract-pattern",
    ),
    VerbSpec(
        "sessions",
        "compacted sessions: metrics and summaries, newest first",
        q.SessionsRequest,
        r.SessionsReply,
        ("sessions",),
        sdk="sessions",
        cli="sessions",
        lower="lower limit or ask for one session",
    ),
    VerbSpec(
        "search",
        "similar past tasks, decisions and knowledge (words and vectors fused)",
        q.SearchRequest,
        r.SearchReply,
        ("vectors",),
        sdk="search_similar",
        cli="search",
        lower="lower top_k",
    ),
    VerbSpec(
        "task_context",
        "similar tasks, matching patterns and recommendations in plain sentences",
        q.TaskContextRequest,
        r.TaskContextReply,
        ("vectors", "patterns"),
        sdk="get_task_context",
        cli="task-context",
        lower="lower top_k",
    ),
    VerbSpec(
        "assemble_context",
        "context for a task from the operational, working and long-term tiers, within a "
        "token budget",
        q.AssembleContextRequest,
        r.AssembledContextReply,
        ("recent", "vectors", "patterns"),
        sdk="assemble_context",
        cli="context",
        lower="lower max_tokens",
    ),
    VerbSpec(
        "items_get",
        "stored items (the LangGraph store) of one path, by key",
        q.ItemsGetRequest,
        r.ItemsReply,
        ("tables",),
        sdk="get_items",
        cli="items-get",
        trim="items",
        lower="ask for fewer keys",
    ),
    VerbSpec(
        "items_search",
        "stored items at or below a path, filtered on their values, newest first or ranked by "
        "a query (words and vectors fused)",
        q.ItemsSearchRequest,
        r.ItemsReply,
        ("tables",),
        sdk="search_items",
        cli="items-search",
        trim="items",
        lower="lower limit",
    ),
    VerbSpec(
        "items_namespaces",
        "the paths holding stored items, by prefix and suffix (wildcards allowed), up to a depth",
        q.ItemNamespacesRequest,
        r.ItemNamespacesReply,
        ("tables",),
        sdk="list_item_namespaces",
        cli="items-namespaces",
        trim="namespaces",
        lower="lower limit",
    ),
    VerbSpec(
        "cache_lookup",
        "a cached response for a prompt: a hit when a cached prompt of the namespace is similar "
        "enough (0.85 by default) and has not expired",
        q.CacheLookupRequest,
        r.CacheLookupReply,
        ("cache",),
        sdk="cache_lookup",
        cli="cache-lookup",
        lower="cache smaller responses",
    ),
)


def verb(name: str) -> VerbSpec:
    """The catalogued verb ``name``; raises UsageError naming the known ones."""
    spec = CATALOGUE.get(name)
    if spec is None:
        raise UsageError(f"unknown query verb {name!r}; known: {', '.join(sorted(CATALOGUE))}")
    return spec

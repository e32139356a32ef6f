"""The SDK's asking half: the query verbs, over NATS request-reply to a running engine.

One method per catalogued verb (``engine.verbs.CATALOGUE``; the method is the verb's ``sdk``),
each marked with ``@asks(verb)`` and each a thin wrapper: it builds the verb's request model (a
bad argument raises the UsageError the engine would answer, before anything is sent), sends it on
the namespace's subject ``engram.query.<namespace>.<verb>`` (the namespace asked about, else the
client's: an operator verb such as ``status`` is answered by the engine owning the client's
namespace), or on the operator's ``engram.query.<verb>`` for ``metrics`` and ``workflows`` over
every namespace, and reads the answer with the verb's reply model.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, ValidationError

from engine.errors import QueryError, UsageError
from engine.events.envelope import check_namespace
from engine.query_client import query_remote
from engine.results import (
    AssembledContext,
    LearnedPattern,
    LearningMetrics,
    SearchHit,
    TaskContext,
    TaskMetrics,
    WorkflowPattern,
)
from engine.subjects import ServiceSubjects
from engine.verbs import VerbSpec, validate_request, verb
from engine.verbs import replies as r
from engine.verbs.replies import Consistency
from engine.verbs.requests import SQL_MAX_ROWS, SearchMode, Target

__all__ = ["Answer", "Consistency", "RecallVerbs", "SearchMode", "asked_verb", "asks"]

Consistency_ = Literal["eventual", "read_your_writes"]
"""How a client reads: ``eventual`` (answers as the projections are) or ``read_your_writes``."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A verb's answer: its reply model and what it reflects."""

    reply: BaseModel
    consistency: Consistency | None
    """The stream sequence the answer reflects and whether it is ``stale`` (the request's
    ``min_sequence`` was not reached in time); None for a verb reading no projection."""


R = TypeVar("R", bound=BaseModel)
M = TypeVar("M", bound=Callable[..., Awaitable[Any]])

_MARK = "__engram_verb__"


def asks(name: str) -> Callable[[M], M]:
    """Mark a method as the SDK's one for the catalogued verb ``name`` (its ``sdk`` name)."""
    spec = verb(name)

    def mark(method: M) -> M:
        if method.__name__ != spec.sdk:
            raise TypeError(f"{method.__name__} asks {name}, whose SDK method is {spec.sdk}")
        setattr(method, _MARK, name)
        return method

    return mark


def asked_verb(method: object) -> str | None:
    """The verb ``method`` asks (see ``asks``), None for a method that asks none itself."""
    name = getattr(method, _MARK, None)
    return name if isinstance(name, str) else None


class RecallVerbs:
    """Query verbs shared by MemoryClient; the engine (``engram serve``) answers them."""

    namespace: str
    _query_timeout_s: float
    consistency: Consistency_ = "eventual"
    """``read_your_writes``: every query waits (bounded, see ``Answer.consistency``) until
    the projections it reads hold this client's last write (``last_written``)."""
    last_written: int = 0
    """The stream sequence of this client's last write (0: none yet)."""
    last_read: Consistency | None = None
    """What the last answer reflected (None: the verb reads no projection, or an engine too
    old to say)."""
    _service: ServiceSubjects = ServiceSubjects()
    """Where the engine answers: the service subjects of the client's stream settings."""

    def _connection(self) -> NatsClient:
        raise NotImplementedError

    async def ask(
        self, name: str, arguments: Mapping[str, Any], *, namespace: str | None = None
    ) -> Answer:
        """Ask the catalogued verb ``name`` with ``arguments`` (its request model's fields; a
        bad one raises UsageError naming it, before anything is sent): the generic form of the
        typed methods, for surfaces derived from the catalogue (HTTP, MCP).

        ``namespace``: the tenant asked about (its subject), else the client's; a tenant verb
        is always asked on a namespace's subject, an operator verb on the operator's subject
        when ``namespace`` is None and the client's namespace is not wanted (``scoped``)."""
        spec = verb(name)
        fields = dict(arguments)
        if namespace is not None:
            fields["namespace"] = namespace
        scoped = namespace is not None or spec.scope == "tenant"
        return await self._answer(spec, scoped=scoped, **fields)

    async def _ask(self, name: str, reply: type[R], *, scoped: bool = True, **arguments: Any) -> R:
        """Ask verb ``name`` with ``arguments`` (None: not given, the verb's default applies).

        ``scoped`` (the default): asked on the subject of the namespace given, else of the
        client's (which also fills the request's ``namespace``); a namespace that is not one
        subject token raises UsageError naming the pattern. Not ``scoped``: on the operator's
        subject (every namespace)."""
        parsed = (await self._answer(verb(name), scoped=scoped, **arguments)).reply
        if not isinstance(parsed, reply):  # the catalogue and this method disagree: a bug
            raise QueryError(f"{name} answers {type(parsed).__name__}, not {reply.__name__}")
        return parsed

    async def _answer(self, spec: VerbSpec, *, scoped: bool, **arguments: Any) -> Answer:
        payload = {key: value for key, value in arguments.items() if value is not None}
        if scoped and "namespace" in spec.request.model_fields:
            payload.setdefault("namespace", self.namespace)
        if self.consistency == "read_your_writes" and self.last_written:
            payload.setdefault("min_sequence", self.last_written)
        request = validate_request(spec.request, payload)
        namespace = (getattr(request, "namespace", None) or self.namespace) if scoped else None
        subject = spec.subject(
            None if namespace is None else check_namespace(namespace), self._service
        )
        answer = await query_remote(
            self._connection(),
            spec.name,
            request.model_dump(exclude_none=True, mode="json"),
            self._query_timeout_s,
            subject=subject,
        )
        consistency = _consistency(spec.name, answer.pop("consistency", None))
        try:
            parsed = spec.reply.model_validate(answer)
        except ValidationError as exc:  # an engine of another version, or a bug: still ours
            raise QueryError(
                f"the engine's answer to {spec.name} is not a {spec.reply.__name__}: "
                f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}"
            ) from None
        self.last_read = consistency
        return Answer(parsed, consistency)

    # -- operators ---------------------------------------------------------------------------

    @asks("status")
    async def status(
        self,
        *,
        min_sequence: int | None = None,
    ) -> r.StatusReply:
        """The stream and, per projection, its checkpoint, lag and health."""
        return await self._ask("status", r.StatusReply, min_sequence=min_sequence)

    @asks("checkpoints")
    async def checkpoints(
        self,
        *,
        min_sequence: int | None = None,
    ) -> dict[str, int]:
        """The stored checkpoint (stream sequence) of each table projection."""
        return (
            await self._ask("checkpoints", r.CheckpointsReply, min_sequence=min_sequence)
        ).checkpoints

    @asks("sql")
    async def sql(
        self,
        sql: str,
        limit: int = SQL_MAX_ROWS,
        *,
        min_sequence: int | None = None,
    ) -> r.SqlReply:
        """One read-only SELECT over copies of the tables, in a sandbox (at most ``limit`` rows;
        ``truncated`` says when there were more). Off unless the engine runs with
        ``--enable-sql`` (a QueryError saying so otherwise)."""
        return await self._ask("sql", r.SqlReply, sql=sql, limit=limit, min_sequence=min_sequence)

    @asks("export")
    async def export(
        self,
        to: str,
        *,
        min_sequence: int | None = None,
    ) -> r.ExportReply:
        """Every table as Parquet (zstd) with a manifest, written by the engine under its
        ``<data dir>/exports/<to>``. Off unless the engine runs with ``--enable-export``."""
        return await self._ask("export", r.ExportReply, to=to, min_sequence=min_sequence)

    # -- the tables ----------------------------------------------------------------------------

    @asks("metrics")
    async def table_metrics(
        self,
        task_type: str | None = None,
        *,
        namespace: str | None = None,
        every_namespace: bool = False,
        min_sequence: int | None = None,
    ) -> list[TaskMetrics]:
        """TaskMetrics per task type from the tables, most executed first: of this client's
        namespace (or ``namespace``), or of every namespace with ``every_namespace``."""
        rows = await self._ask(
            "metrics",
            r.TableMetricsReply,
            scoped=_scoped(namespace, every_namespace),
            task_type=task_type,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return [TaskMetrics.model_validate(row) for row in rows.metrics]

    @asks("workflows")
    async def workflow_metrics(
        self,
        task_type: str | None = None,
        *,
        namespace: str | None = None,
        every_namespace: bool = False,
        min_sequence: int | None = None,
    ) -> list[dict[str, Any]]:
        """One row per distinct sequence of steps within a task type (``workflow_steps``,
        ``executions``, ``successes``, ``success_rate``, ``avg_duration``, ``avg_cost``,
        ``last_seen``), best success rate first; namespaces as in ``table_metrics``."""
        reply = await self._ask(
            "workflows",
            r.WorkflowMetricsReply,
            scoped=_scoped(namespace, every_namespace),
            task_type=task_type,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.workflows

    # -- what was learned ----------------------------------------------------------------------

    @asks("patterns")
    async def retrieve_workflow_patterns(
        self,
        task_type: str | None = None,
        min_success_rate: float = 0.7,
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> list[WorkflowPattern]:
        """Workflow patterns with at least ``min_success_rate``, best first."""
        reply = await self._ask(
            "patterns",
            r.PatternsReply,
            task_type=task_type,
            namespace=namespace,
            min_success_rate=min_success_rate,
            min_sequence=min_sequence,
        )
        return reply.patterns

    @asks("best_workflow")
    async def get_best_workflow_for_task(
        self,
        task_type: str,
        optimization_target: Target = "success_rate",
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> WorkflowPattern | None:
        """The workflow to use, or None while there is not enough evidence (min samples)."""
        reply = await self._ask(
            "best_workflow",
            r.BestWorkflowReply,
            task_type=task_type,
            optimization_target=optimization_target,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.workflow

    @asks("task_metrics")
    async def get_task_success_metrics(
        self,
        task_type: str,
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> TaskMetrics | None:
        """TaskMetrics of ``task_type`` (None when it never ran)."""
        reply = await self._ask(
            "task_metrics",
            r.TaskMetricsReply,
            task_type=task_type,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.metrics[0] if reply.metrics else None

    @asks("search_patterns")
    async def search_patterns(
        self,
        task_type: str | None = None,
        pattern_type: str | None = None,
        limit: int = 10,
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> list[LearnedPattern]:
        reply = await self._ask(
            "search_patterns",
            r.PatternListReply,
            task_type=task_type,
            pattern_type=pattern_type,
            limit=limit,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.patterns

    @asks("list_patterns")
    async def list_patterns(
        self,
        pattern_type: str | None = None,
        limit: int = 50,
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> list[LearnedPattern]:
        reply = await self._ask(
            "list_patterns",
            r.PatternListReply,
            pattern_type=pattern_type,
            limit=limit,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.patterns

    @asks("extract_pattern")
    async def extract_pattern(
        self,
        task_type_pattern: str,
        pattern_type: str = "success",
        min_samples: int = 5,
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> dict[str, Any] | None:
        """Pool every task type ``task_type_pattern`` matches whole (e.g.
        ``.*authentication.*``) into one pattern; None below ``min_samples`` (at least 1).

        The pattern is a regular-expression subset matched in linear time: literals, ``.``,
        classes, ``\\d \\w \\s``, groups, ``|``, ``* + ?`` and ``{m,n}``, at most 256
        characters; backreferences, lookarounds and flags are refused (UsageError).
        """
        reply = await self._ask(
            "extract_pattern",
            r.ExtractPatternReply,
            task_type_pattern=task_type_pattern,
            pattern_type=pattern_type,
            min_samples=min_samples,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.pattern

    @asks("learning")
    async def get_learning_metrics(
        self,
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> LearningMetrics:
        return await self._ask(
            "learning", LearningMetrics, namespace=namespace, min_sequence=min_sequence
        )

    # -- sessions ------------------------------------------------------------------------------

    @asks("sessions")
    async def sessions(
        self,
        session: str | None = None,
        limit: int = 50,
        summary: bool = True,
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> r.SessionsReply:
        """Compacted sessions, newest first (each with its metrics, and its compressed summary
        unless ``summary`` is false), or every compacted segment of ``session``; ``overview``
        sums them up."""
        return await self._ask(
            "sessions",
            r.SessionsReply,
            session=session,
            limit=limit,
            summary=summary,
            namespace=namespace,
            min_sequence=min_sequence,
        )

    # -- similar memories and context ----------------------------------------------------------

    @asks("search")
    async def search_similar(
        self,
        text: str | None = None,
        *,
        vector: Sequence[float] | None = None,
        top_k: int = 5,
        similarity_threshold: float = 0.0,
        success_only: bool = False,
        collections: Sequence[str] | None = None,
        task_type: str | None = None,
        namespace: str | None = None,
        mode: SearchMode = "hybrid",
        group_duplicates: bool = True,
        duplicate_similarity: float | None = None,
        min_sequence: int | None = None,
    ) -> list[SearchHit]:
        """Similar past memories by text or by vector, most similar first.

        ``mode``: ``hybrid`` (default; the text's words and its vector, fused), ``vector`` or
        ``lexical`` (needs ``text``). ``similarity_score`` is 0..1 in every mode (1: the query's
        own text; 0: nothing in common), and ``similarity_threshold`` applies to it. Filters
        (``collections``, ``task_type``, ``success_only``) apply inside the retrievers, so
        ``top_k`` hits come back whenever that many memories pass them. Near-duplicates (term
        cosine >= ``duplicate_similarity``, the engine's setting by default) are grouped under
        the best one (``duplicates``, ``duplicate_ids``) unless ``group_duplicates`` is false.
        """
        reply = await self._ask(
            "search",
            r.SearchReply,
            text=text,
            vector=list(vector) if vector is not None else None,
            top_k=top_k,
            similarity_threshold=similarity_threshold,
            success_only=success_only,
            task_type=task_type,
            namespace=namespace,
            collections=list(collections) if collections else None,
            mode=mode,
            group_duplicates=group_duplicates,
            duplicate_similarity=duplicate_similarity,
            min_sequence=min_sequence,
        )
        return reply.hits

    async def find_similar_decisions(
        self,
        context: str,
        top_k: int = 5,
        *,
        namespace: str | None = None,
        mode: SearchMode = "hybrid",
        min_sequence: int | None = None,
    ) -> list[SearchHit]:
        """Past decisions made in a similar context (``search_similar`` over decisions)."""
        return await self.search_similar(
            context,
            top_k=top_k,
            collections=["decisions"],
            namespace=namespace,
            mode=mode,
            min_sequence=min_sequence,
        )

    @asks("task_context")
    async def get_task_context(
        self,
        task_description: str,
        top_k: int = 5,
        *,
        namespace: str | None = None,
        mode: SearchMode = "hybrid",
        min_sequence: int | None = None,
    ) -> TaskContext:
        """Similar tasks, matching patterns and recommendations in plain sentences."""
        return await self._ask(
            "task_context",
            TaskContext,
            task_description=task_description,
            top_k=top_k,
            namespace=namespace,
            mode=mode,
            min_sequence=min_sequence,
        )

    @asks("assemble_context")
    async def assemble_context(
        self,
        task_description: str,
        max_tokens: int = 1_000,
        tiers: Sequence[str] = ("operational", "working", "longterm"),
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> AssembledContext:
        """Ranked chunks from the three tiers, never over ``max_tokens``."""
        return await self._ask(
            "assemble_context",
            AssembledContext,
            task_description=task_description,
            max_tokens=max_tokens,
            tiers=list(tiers),
            namespace=namespace,
            min_sequence=min_sequence,
        )

    # -- items (the LangGraph store) -----------------------------------------------------------

    @asks("items_get")
    async def get_items(
        self,
        path: Sequence[str],
        keys: Sequence[str],
        *,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> list[r.StoredItem]:
        """The items stored under ``path`` with these ``keys`` (those that exist and have not
        expired), in the order of ``keys``. ``truncated`` replies (more than one NATS message)
        are not completed here: ask for fewer keys."""
        reply = await self._ask(
            "items_get",
            r.ItemsReply,
            path=list(path),
            keys=list(keys),
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.items

    @asks("items_search")
    async def search_items(
        self,
        prefix: Sequence[str] = (),
        *,
        filter: Mapping[str, Any] | None = None,
        query: str | None = None,
        limit: int = 10,
        offset: int = 0,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> list[r.StoredItem]:
        """Items at or below ``prefix`` whose value passes ``filter`` (a value per field, or
        operators ``$eq $ne $gt $gte $lt $lte``), newest first; with ``query``, most similar
        first (hybrid: words and vectors), each with its ``score``."""
        reply = await self._ask(
            "items_search",
            r.ItemsReply,
            prefix=list(prefix),
            filter=dict(filter) if filter is not None else None,
            query=query,
            limit=limit,
            offset=offset,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.items

    @asks("items_namespaces")
    async def list_item_namespaces(
        self,
        *,
        prefix: Sequence[str] | None = None,
        suffix: Sequence[str] | None = None,
        max_depth: int | None = None,
        limit: int = 100,
        offset: int = 0,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> list[list[str]]:
        """The paths holding items, starting with ``prefix`` and ending with ``suffix`` (``*``
        matches any one label), cut to ``max_depth`` labels, sorted."""
        reply = await self._ask(
            "items_namespaces",
            r.ItemNamespacesReply,
            prefix=list(prefix) if prefix is not None else None,
            suffix=list(suffix) if suffix is not None else None,
            max_depth=max_depth,
            limit=limit,
            offset=offset,
            namespace=namespace,
            min_sequence=min_sequence,
        )
        return reply.namespaces

    # -- the semantic cache --------------------------------------------------------------------

    @asks("cache_lookup")
    async def cache_lookup(
        self,
        prompt: str,
        *,
        threshold: float | None = None,
        model: str | None = None,
        namespace: str | None = None,
        min_sequence: int | None = None,
    ) -> r.CacheLookupReply:
        """A cached response for ``prompt``: ``hit`` when a cached prompt of the namespace (of
        ``model``, when given) is at least ``threshold`` similar (default: the engine's, 0.85)
        and has not expired; a miss still names the nearest live prompt and its similarity."""
        return await self._ask(
            "cache_lookup",
            r.CacheLookupReply,
            prompt=prompt,
            threshold=threshold,
            model=model,
            namespace=namespace,
            min_sequence=min_sequence,
        )


def _consistency(name: str, found: Any) -> Consistency | None:
    if found is None:
        return None
    try:
        return Consistency.model_validate(found)
    except ValidationError:
        raise QueryError(f"the engine's answer to {name} has a malformed consistency") from None


def _scoped(namespace: str | None, every_namespace: bool) -> bool:
    """Whether the client's namespace applies (not when every namespace is asked for)."""
    if every_namespace and namespace is not None:
        raise UsageError("namespace and every_namespace exclude each other: give one")
    return not every_namespace

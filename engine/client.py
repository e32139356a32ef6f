"""The Python SDK: ``async with MemoryClient(url) as memory:`` then typed verbs.

Every verb validates before it sends (an InvalidEventError names each wrong field) and returns
the stream sequence the event was stored at. A verb retried with the same ``event_id`` is stored
once (JetStream deduplicates on ``Nats-Msg-Id`` within the duplicate window).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from nats.aio.client import Client as NatsClient
from pydantic import ValidationError

from engine.endpoint import open_nats
from engine.errors import EngramError, ForbiddenEventTypeError, InvalidEventError, UsageError
from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    Event,
    EventData,
    KnowledgeAdded,
    KnowledgeKind,
    PatternFeedback,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
    make_event,
)
from engine.events.cache import DEFAULT_TTL_SECONDS, CacheEvicted, CachePut
from engine.events.codec import explain_validation_error
from engine.events.items import ItemDeleted, ItemPut
from engine.events.registry import require_agent_type
from engine.recall import Consistency_, RecallVerbs
from engine.settings import Settings
from engine.stream import AppendResult, EventLog

__all__ = ["BatchReport", "EnvelopeOptions", "MemoryClient"]

D = TypeVar("D", bound=EventData)


class SessionEnvelopeOptions(TypedDict, total=False):
    """Envelope fields the session verbs accept (their session id is the envelope's)."""

    namespace: str
    agent_id: str
    occurred_at: datetime
    event_id: str


class EnvelopeOptions(SessionEnvelopeOptions, total=False):
    """Envelope fields every verb accepts (all optional)."""

    session_id: str


@dataclass(frozen=True, slots=True)
class BatchReport:
    """Outcome of a batch publish: one entry per event, in input order."""

    results: tuple[AppendResult | EngramError, ...]

    @property
    def accepted(self) -> int:
        return sum(1 for r in self.results if isinstance(r, AppendResult))

    @property
    def rejected(self) -> int:
        return len(self.results) - self.accepted

    @property
    def sequences(self) -> list[int | None]:
        return [r.sequence if isinstance(r, AppendResult) else None for r in self.results]


def _payload(model: type[D], fields: Mapping[str, Any]) -> D:
    values = {k: v for k, v in fields.items() if v is not None}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = tuple("data." + p for p in explain_validation_error(exc))
        raise InvalidEventError(
            f"invalid {model.__name__}: " + "; ".join(problems), problems
        ) from None


class MemoryClient(RecallVerbs):
    """Async client of engram. Connects on ``__aenter__``; closes on ``__aexit__``.

    With ``url=None`` the settings decide (``ENGRAM_NATS_URL``, else the embedded server of the
    data directory, started if needed). ``namespace`` and ``agent_id`` are defaults for every
    event; each verb can override them.

    The client only looks the stream up: entering raises StreamNotFoundError when it does not
    exist (``engram serve`` or ``engram stream apply`` create it), and never changes its
    configuration. A user the broker refuses the stream's info (a tenant's agent of
    ``engram auth``) skips the lookup; its first append then fails naming the stream if none
    captures its subject. ``ensure_stream=True`` is for tests and tools that own their stream: it
    creates a missing stream and raises limits, but never lowers those of an existing one.

    The query methods (``RecallVerbs``: one per verb of ``engine.verbs.CATALOGUE``) ask a
    running engine; an argument the verb's request model refuses raises UsageError before
    anything is sent. Each takes ``min_sequence`` (read your writes: the engine answers once the
    projections the verb reads hold that stream sequence, e.g. the one a write returned, or
    after its bound with ``last_read.stale`` true). ``consistency="read_your_writes"`` passes
    this client's last written sequence on every query. Its cost: a query right after a write
    waits for the write's batch to be applied (typically milliseconds, at most the engine's
    ``query_consistency_wait_s``, 2 s by default), and the engine then holds one of that verb's
    query workers while it waits; the default, ``eventual``, never waits. ``last_read`` says
    what the last answer reflected.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        namespace: str = "default",
        agent_id: str | None = None,
        ensure_stream: bool = False,
        consistency: Consistency_ = "eventual",
    ) -> None:
        base = settings or Settings.load()
        if url is not None:
            base = base.model_copy(update={"nats": base.nats.model_copy(update={"url": url})})
        self.settings = base
        self.namespace = namespace
        self.agent_id = agent_id
        self._ensure_stream = ensure_stream
        if consistency not in ("eventual", "read_your_writes"):
            raise UsageError(
                f"consistency must be 'eventual' or 'read_your_writes', got {consistency!r}"
            )
        self.consistency = consistency
        self.last_written = 0
        self.last_read = None
        self._stack: AsyncExitStack | None = None
        self._log: EventLog | None = None
        self._query_timeout_s = base.nats.request_timeout_s
        self._service = base.stream.service
        self.url: str | None = None

    async def __aenter__(self) -> MemoryClient:
        stack = AsyncExitStack()
        try:
            endpoint = await stack.enter_async_context(open_nats(self.settings))
            self._log = EventLog(
                endpoint.nc,
                self.settings.stream,
                timeout_s=self.settings.nats.request_timeout_s,
                max_in_flight=self.settings.publish_max_in_flight,
            )
            if self._ensure_stream:
                await self._log.ensure(allow_downgrade=False)
            else:  # a user refused the stream's info (a tenant's agent) goes on without it
                await self._log.lookup_if_allowed()
        except BaseException:
            await stack.aclose()
            raise
        self.url = endpoint.url
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack, self._log = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    def _connection(self) -> NatsClient:
        return self.log.nc

    @property
    def log(self) -> EventLog:
        if self._log is None:
            raise EngramError("MemoryClient is not connected: use `async with MemoryClient()`")
        return self._log

    # -- building and publishing ------------------------------------------------------------

    def event(self, data: EventData, **envelope: Unpack[EnvelopeOptions]) -> Event:
        """Wrap a payload in an envelope with this client's defaults."""
        return make_event(
            data,
            namespace=envelope.get("namespace", self.namespace),
            agent_id=envelope.get("agent_id", self.agent_id),
            session_id=envelope.get("session_id"),
            occurred_at=envelope.get("occurred_at"),
            event_id=envelope.get("event_id"),
        )

    async def publish(self, event: Event, *, expected_last_subject_seq: int | None = None) -> int:
        """Append a built event; returns its stream sequence.

        Raises ForbiddenEventTypeError, before sending, for a type only the engine publishes
        (``pattern.learned``, ``session.compacted``, ``snapshot.created``, usage events).
        """
        require_agent_type(event.type)
        result = await self.log.append(event, expected_last_subject_seq=expected_last_subject_seq)
        self.last_written = max(self.last_written, result.sequence)
        return result.sequence

    async def publish_many(self, events: Iterable[Event]) -> BatchReport:
        """Append many events with bounded acks in flight; reports each sequence or error.

        An event of a type only the engine publishes is not sent: its entry is the
        ForbiddenEventTypeError, and the others are appended.
        """
        batch = list(events)
        refused: dict[int, EngramError] = {}
        for index, event in enumerate(batch):
            try:
                require_agent_type(event.type)
            except ForbiddenEventTypeError as exc:
                refused[index] = exc
        allowed = [event for index, event in enumerate(batch) if index not in refused]
        sent = iter(await self.log.append_many(allowed))
        report = BatchReport(tuple(refused.get(i) or next(sent) for i in range(len(batch))))
        self.last_written = max([self.last_written, *filter(None, report.sequences)])
        return report

    async def _send(
        self, model: type[D], fields: Mapping[str, Any], envelope: EnvelopeOptions
    ) -> int:
        return await self.publish(self.event(_payload(model, fields), **envelope))

    # -- typed verbs, one per agent-published event type ------------------------------------

    async def store_workflow(
        self,
        *,
        workflow_steps: Sequence[str],
        success: bool,
        duration: float,
        task_type: str | None = None,
        request: str | None = None,
        cost: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Record a workflow execution (``workflow.executed``); task_type is inferred if None."""
        fields = {
            "workflow_steps": list(workflow_steps),
            "success": success,
            "duration": duration,
            "task_type": task_type,
            "request": request,
            "cost": cost,
            "metadata": dict(metadata) if metadata else None,
        }
        return await self._send(WorkflowExecuted, fields, envelope)

    async def store_execution(
        self,
        *,
        task_id: str,
        execution_summary: str,
        success: bool,
        task_type: str | None = None,
        error_patterns: Sequence[str] | None = None,
        embedding: Sequence[float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Record an executed task (``task.executed``)."""
        fields = {
            "task_id": task_id,
            "execution_summary": execution_summary,
            "success": success,
            "task_type": task_type,
            "error_patterns": list(error_patterns) if error_patterns else None,
            "embedding": list(embedding) if embedding is not None else None,
            "metadata": dict(metadata) if metadata else None,
        }
        return await self._send(TaskExecuted, fields, envelope)

    async def log_decision(
        self,
        *,
        decision_id: str,
        actor: str,
        decision: str,
        rationale: str = "",
        context: str = "",
        alternatives: Sequence[str] = (),
        task_id: str | None = None,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Record who decided what and why (``decision.logged``)."""
        fields = {
            "decision_id": decision_id,
            "actor": actor,
            "decision": decision,
            "rationale": rationale,
            "context": context,
            "alternatives": list(alternatives),
            "task_id": task_id,
        }
        return await self._send(DecisionLogged, fields, envelope)

    async def record_outcome(
        self,
        *,
        decision_id: str,
        success: bool,
        notes: str = "",
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Record how a decision turned out (``decision.outcome``)."""
        fields = {"decision_id": decision_id, "success": success, "notes": notes}
        return await self._send(DecisionOutcome, fields, envelope)

    async def give_feedback(
        self,
        *,
        pattern_id: str,
        helpful: bool,
        confidence_adjustment: float = 0.0,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Judge a learned pattern (``pattern.feedback``)."""
        fields = {
            "pattern_id": pattern_id,
            "helpful": helpful,
            "confidence_adjustment": confidence_adjustment,
        }
        return await self._send(PatternFeedback, fields, envelope)

    async def start_session(
        self,
        session_id: str,
        *,
        goal: str | None = None,
        **envelope: Unpack[SessionEnvelopeOptions],
    ) -> int:
        """Open a session (``session.started``); the envelope's session_id is set too."""
        options: EnvelopeOptions = {**envelope, "session_id": session_id}
        return await self._send(SessionStarted, {"session_id": session_id, "goal": goal}, options)

    async def end_session(
        self,
        session_id: str,
        *,
        success: bool | None = None,
        **envelope: Unpack[SessionEnvelopeOptions],
    ) -> int:
        """Close a session (``session.ended``), optionally with its outcome."""
        options: EnvelopeOptions = {**envelope, "session_id": session_id}
        fields = {"session_id": session_id, "success": success}
        return await self._send(SessionEnded, fields, options)

    async def add_knowledge(
        self,
        *,
        kind: KnowledgeKind,
        title: str,
        content: str,
        knowledge_id: str | None = None,
        tags: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Add a long-term document (``knowledge.added``)."""
        fields = {
            "kind": kind,
            "title": title,
            "content": content,
            "knowledge_id": knowledge_id,
            "tags": list(tags),
            "metadata": dict(metadata) if metadata else None,
        }
        return await self._send(KnowledgeAdded, fields, envelope)

    async def put_item(
        self,
        path: Sequence[str],
        key: str,
        value: Mapping[str, Any],
        *,
        index: Sequence[str] | Literal[False] | None = None,
        ttl: float | None = None,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Store ``value`` (a JSON object) under ``path`` (labels: no period, not empty) and
        ``key`` (``item.put``), replacing what was there. ``index``: the value's fields a
        search's query is matched against (None: all of it; False: none); ``ttl``: minutes
        until it expires. Read back with ``get_items`` / ``search_items``."""
        fields = {
            "path": list(path),
            "key": key,
            "value": dict(value),
            "index": index if index is None or index is False else list(index),
            "ttl": ttl,
        }
        return await self._send(ItemPut, fields, envelope)

    async def delete_item(
        self, path: Sequence[str], key: str, **envelope: Unpack[EnvelopeOptions]
    ) -> int:
        """Remove the item under ``path`` and ``key`` (``item.deleted``; none there: no
        change)."""
        return await self._send(ItemDeleted, {"path": list(path), "key": key}, envelope)

    async def cache_put(
        self,
        prompt: str,
        response: Any,
        *,
        ttl: float = DEFAULT_TTL_SECONDS,
        model: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Cache ``response`` (text, or any JSON value) for ``prompt`` (``cache.put``) for
        ``ttl`` seconds after the event's ``occurred_at`` (at most a year), replacing what the
        same prompt (and ``model``) had. ``cache_lookup`` finds it for similar prompts of the
        namespace until it expires."""
        fields = {
            "prompt": prompt,
            "response": response,
            "ttl": ttl,
            "model": model,
            "metadata": dict(metadata) if metadata is not None else None,
        }
        return await self._send(CachePut, fields, envelope)

    async def cache_evict(
        self,
        prompt: str,
        *,
        model: str | None = None,
        reason: str | None = None,
        **envelope: Unpack[EnvelopeOptions],
    ) -> int:
        """Remove the cached response of ``prompt`` (and ``model``) before it expires
        (``cache.evicted``; none cached: no change)."""
        fields = {"prompt": prompt, "model": model, "reason": reason}
        return await self._send(CacheEvicted, fields, envelope)

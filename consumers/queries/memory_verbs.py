"""Query verbs over memories: search, task_context, assemble_context.

Usage is itself recorded: a search publishes ``memory.recalled`` (so ``reused_count`` survives a
replay), and a task context publishes ``memory.context.suggested`` and ``memory.pattern.matched``.
These are published after the reply is computed, off the request's path. What the answers are
made of (recommendations, context candidates) is the projections' (``projections.context``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from consumers.queries.dispatch import QueryDispatcher
from engine.events import ContextSuggested, EventData, MemoryRecalled, PatternMatched
from engine.events.derived import usage_excerpt
from engine.verbs.requests import AssembleContextRequest, SearchRequest, TaskContextRequest
from projections.context import RecentEvents, TokenCounter, assemble
from projections.context.candidates import gather_candidates
from projections.context.task_context import task_context
from projections.context.text_vectors import TextVectorCache
from projections.learning import LearnerProjection
from projections.vectors.projection import VectorProjection

__all__ = ["MemoryVerbs"]

log = structlog.get_logger(__name__)

Publish = Callable[[EventData, str], Coroutine[Any, Any, None]]


class MemoryVerbs:
    """Answers the memory verbs from the vector projection, the learner and the recent tier."""

    def __init__(
        self,
        vectors: VectorProjection,
        learner: LearnerProjection,
        recent: RecentEvents,
        counter: TokenCounter,
        publish: Publish | None,
    ) -> None:
        self.vectors = vectors
        self.learner = learner
        self.recent = recent
        self.counter = counter
        self.publish = publish
        self._described = TextVectorCache()
        self._background: set[asyncio.Task[None]] = set()

    def register(self, dispatcher: QueryDispatcher) -> None:
        dispatcher.register("search", self.search)
        dispatcher.register("task_context", self.task_context)
        dispatcher.register("assemble_context", self.assemble_context)

    def _record(self, data: EventData, namespace: str) -> None:
        if self.publish is None:
            return
        task = asyncio.create_task(self.publish(data, namespace))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _search(self, r: SearchRequest) -> list[dict[str, Any]]:
        args: dict[str, Any] = {
            "namespace": r.namespace,
            "text": r.text,
            "vector": r.vector,
            "top_k": r.top_k,
            "similarity_threshold": r.similarity_threshold,
            "success_only": r.success_only,
            "collections": list(r.collections) if r.collections is not None else None,
            "task_type": r.task_type,
            "mode": r.mode,
            "group_duplicates": r.group_duplicates,
        }
        if r.duplicate_similarity is not None:
            args["duplicate_similarity"] = r.duplicate_similarity
        return self.vectors.search(**args)

    async def search(self, r: SearchRequest) -> dict[str, Any]:
        hits = await asyncio.to_thread(self._search, r)
        if hits:
            query = usage_excerpt(r.text or "")
            self._record(
                MemoryRecalled(memory_ids=[h["id"] for h in hits], query=query), r.namespace
            )
        return {"hits": hits}

    async def task_context(self, r: TaskContextRequest) -> dict[str, Any]:
        reply = await asyncio.to_thread(
            task_context,
            r.task_description,
            r.namespace,
            top_k=r.top_k,
            task_type=r.task_type,
            mode=r.mode,
            vectors=self.vectors,
            learner=self.learner,
        )
        excerpt = usage_excerpt(r.task_description)
        self._record(
            ContextSuggested(
                task_description=excerpt,
                task_type=reply["task_type"],
                similar_memory_ids=[h["id"] for h in reply["similar_tasks"]],
                pattern_ids=[pt["pattern_id"] for pt in reply["patterns"]],
                recommendations=reply["recommendations"],
            ),
            r.namespace,
        )
        for pattern in reply["patterns"]:
            self._record(
                PatternMatched(
                    pattern_id=pattern["pattern_id"],
                    task_type=reply["task_type"],
                    task_description=excerpt,
                ),
                r.namespace,
            )
        return reply

    async def assemble_context(self, r: AssembleContextRequest) -> dict[str, Any]:
        candidates = await asyncio.to_thread(
            gather_candidates,
            r.task_description,
            r.namespace,
            set(r.tiers),
            r.max_tokens,
            vectors=self.vectors,  # one index for the whole request, even across a reindex
            learner=self.learner,
            recent=self.recent,
            described=self._described,
        )
        return assemble(r.task_description, candidates, r.max_tokens, self.counter)

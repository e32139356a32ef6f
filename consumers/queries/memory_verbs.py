"""Query verbs over memories: search_similar, get_task_context, assemble_context.

Usage is itself recorded: a search publishes ``memory.recalled`` (so ``reused_count`` survives a
replay), and a task context publishes ``memory.context.suggested`` and ``memory.pattern.matched``.
These are published after the reply is computed, off the request's path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import structlog

from consumers.queries._text_vectors import TextVectorCache
from consumers.queries.dispatch import QueryDispatcher
from consumers.queries.params import (
    limit_param,
    namespace_param,
    number_param,
    required_text,
    text_param,
)
from engine.errors import UsageError
from engine.events import (
    EVENT_TYPES,
    ContextSuggested,
    EventData,
    MemoryRecalled,
    PatternMatched,
)
from engine.events.derived import usage_excerpt
from projections.context import TIERS, Candidate, RecentEvents, TokenCounter, assemble
from projections.context.describe import describe_event
from projections.learning import LearnerProjection
from projections.learning import queries as q
from projections.vectors.projection import VectorProjection

__all__ = ["MemoryVerbs", "recommendations"]

log = structlog.get_logger(__name__)

Publish = Callable[[EventData, str], Coroutine[Any, Any, None]]


def recommendations(
    best: dict[str, Any] | None, patterns: list[dict[str, Any]], similar: list[dict[str, Any]]
) -> list[str]:
    """Plain sentences an agent can act on (seed 001's recommendations)."""
    said: list[str] = []
    if best is not None:
        said.append(
            f"Use the workflow {' -> '.join(best['workflow_steps'])}: it succeeded in "
            f"{best['success_rate']:.0%} of {best['executions']} runs "
            f"(average {best['avg_duration']:.1f} s)."
        )
    for pattern in patterns:
        if pattern["pattern_type"] == "success" and pattern.get("success_indicators"):
            said.append(
                "Successful runs mention: " + ", ".join(pattern["success_indicators"]) + "."
            )
        if pattern["pattern_type"] == "failure" and pattern.get("error_patterns"):
            said.append("Watch for recurring errors: " + ", ".join(pattern["error_patterns"]) + ".")
    failed = [h for h in similar if h.get("success") is False]
    if failed:
        said.append(f'A similar task failed before: "{failed[0]["text"][:160]}".')
    succeeded = [h for h in similar if h.get("success") is True]
    if succeeded:
        said.append(f'A similar task succeeded: "{succeeded[0]["text"][:160]}".')
    return said


def _bool_param(payload: Mapping[str, Any], key: str, default: bool) -> bool:
    value = payload.get(key, default)
    if not isinstance(value, bool):
        raise UsageError(f"{key} must be true or false, got {type(value).__name__}")
    return value


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

    def _search(self, p: Mapping[str, Any], **fixed: Any) -> list[dict[str, Any]]:
        vector = p.get("vector")
        if vector is not None and not (
            isinstance(vector, list) and all(isinstance(x, int | float) for x in vector)
        ):
            raise UsageError("vector must be a list of numbers")
        collections = p.get("collections")
        if collections is not None and not (
            isinstance(collections, list) and all(isinstance(c, str) for c in collections)
        ):
            raise UsageError("collections must be a list of strings")
        args: dict[str, Any] = {
            "namespace": namespace_param(p),
            "text": text_param(p, "text"),
            "vector": vector,
            "top_k": int(number_param(p, "top_k", 5)),
            "similarity_threshold": number_param(p, "similarity_threshold", 0.0),
            "success_only": _bool_param(p, "success_only", False),  # "false" is not true
            "collections": collections,
            "task_type": text_param(p, "task_type"),
            "mode": text_param(p, "mode") or "hybrid",
            "group_duplicates": _bool_param(p, "group_duplicates", True),
        }
        if p.get("duplicate_similarity") is not None:
            args["duplicate_similarity"] = number_param(p, "duplicate_similarity", 0.9)
        args.update(fixed)
        return self.vectors.search(**args)

    async def search(self, p: Mapping[str, Any]) -> dict[str, Any]:
        hits = await asyncio.to_thread(self._search, p)
        if hits:
            query = usage_excerpt(text_param(p, "text") or "")
            self._record(
                MemoryRecalled(memory_ids=[h["id"] for h in hits], query=query), namespace_param(p)
            )
        return {"hits": hits}

    async def task_context(self, p: Mapping[str, Any]) -> dict[str, Any]:
        description = required_text(p, "task_description")
        namespace, top_k = namespace_param(p), int(number_param(p, "top_k", 5))
        task_type = text_param(p, "task_type") or self.vectors.classifier.classify(description)
        similar = await asyncio.to_thread(
            self.vectors.search,
            namespace=namespace,
            text=description,
            top_k=top_k,
            collections=["tasks"],
            mode=text_param(p, "mode") or "hybrid",
        )
        patterns, best = await asyncio.to_thread(
            self.learner.read,
            lambda s: (
                q.search_patterns(s, namespace, task_type, None, 10),
                q.best_workflow(s, namespace, task_type),
            ),
        )
        said = recommendations(best, patterns, similar)
        self._record(
            ContextSuggested(
                task_description=usage_excerpt(description),
                task_type=task_type,
                similar_memory_ids=[h["id"] for h in similar],
                pattern_ids=[pt["pattern_id"] for pt in patterns],
                recommendations=said,
            ),
            namespace,
        )
        for pattern in patterns:
            self._record(
                PatternMatched(
                    pattern_id=pattern["pattern_id"],
                    task_type=task_type,
                    task_description=usage_excerpt(description),
                ),
                namespace,
            )
        return {
            "task_description": description,
            "task_type": task_type,
            "similar_tasks": similar,
            "patterns": patterns,
            "best_workflow": best,
            "recommendations": said,
        }

    def _candidates(
        self, description: str, namespace: str, tiers: set[str], budget: int
    ) -> list[Candidate]:
        found: list[Candidate] = []
        window_start = self.recent.checkpoint() - self.recent.capacity
        vectors = self.vectors  # one index for the whole request, even across a reindex switch
        # Embedded once for both the operational tier and the vector search.
        query = vectors.embedder.embed([description])[0]
        if "operational" in tiers:
            # What agents did; the engine's own events (announcements, usage) are not context.
            recent = [
                e
                for e in self.recent.recent(namespace, limit=200)
                if EVENT_TYPES[e.event.type].publisher == "agent"
            ][:50]
            sessions = self.recent.active_sessions(namespace)
            texts = [describe_event(e.event) for e in recent]
            texts += [describe_event(s.event, active=True) for s in sessions]
            sources = [(e, "recent_events") for e in recent] + [
                (s, "active_sessions") for s in sessions
            ]
            if texts:
                relevance = self._described.embed(vectors.embedder, texts) @ query
                for (item, source), text, score in zip(sources, texts, relevance, strict=True):
                    found.append(
                        Candidate(
                            "operational",
                            source,
                            text,
                            float(max(0.0, score)),
                            item.event.id,
                            item.sequence,
                        )
                    )
        k = max(5, min(50, budget // 40))
        if tiers & {"working", "longterm"}:
            # Hybrid: the words of the description and its vector (embedded once, above).
            hits = vectors.search(
                namespace=namespace, text=description, vector=query.tolist(), top_k=k
            )
            for hit in hits:
                older = hit["sequence"] <= window_start or hit["collection"] == "knowledge"
                tier = "longterm" if older else "working"
                if tier in tiers:
                    found.append(
                        Candidate(
                            tier,
                            hit["collection"],
                            hit["text"],
                            hit["similarity_score"],
                            hit["id"],
                            hit["sequence"],
                        )
                    )
        if "working" in tiers:
            task_type = vectors.classifier.classify(description)
            best = self.learner.read(lambda s: q.best_workflow(s, namespace, task_type))
            if best is not None:
                text = recommendations(best, [], [])[0]
                found.append(Candidate("working", "patterns", text, best["confidence"], None, None))
        return found

    async def assemble_context(self, p: Mapping[str, Any]) -> dict[str, Any]:
        description = required_text(p, "task_description")
        max_tokens = limit_param(p, 1_000, key="max_tokens")
        tiers = p.get("tiers", list(TIERS))
        if (
            not isinstance(tiers, list)
            or not tiers
            or not all(isinstance(t, str) and t in TIERS for t in tiers)
        ):
            raise UsageError(f"tiers must be a non-empty list of {', '.join(TIERS)}")
        candidates = await asyncio.to_thread(
            self._candidates, description, namespace_param(p), set(tiers), max_tokens
        )
        return assemble(description, candidates, max_tokens, self.counter)

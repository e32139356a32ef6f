"""The SDK's asking half: the query verbs, over NATS request-reply to a running engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from nats.aio.client import Client as NatsClient

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

__all__ = ["RecallVerbs", "SearchMode"]

Target = Literal["success_rate", "duration", "cost"]
SearchMode = Literal["hybrid", "vector", "lexical"]
"""hybrid (default): words (BM25) and vectors fused; vector or lexical: one retriever alone."""


class RecallVerbs:
    """Query verbs shared by MemoryClient; the engine (``engram serve``) answers them."""

    namespace: str
    _query_timeout_s: float

    def _connection(self) -> NatsClient:
        raise NotImplementedError

    async def _ask(self, verb: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = {k: v for k, v in payload.items() if v is not None}
        body.setdefault("namespace", self.namespace)
        return await query_remote(self._connection(), verb, body, self._query_timeout_s)

    async def retrieve_workflow_patterns(
        self,
        task_type: str | None = None,
        min_success_rate: float = 0.7,
        *,
        namespace: str | None = None,
    ) -> list[WorkflowPattern]:
        """Workflow patterns with at least ``min_success_rate``, best first."""
        reply = await self._ask(
            "patterns",
            {"task_type": task_type, "namespace": namespace, "min_success_rate": min_success_rate},
        )
        return [WorkflowPattern.model_validate(p) for p in reply["patterns"]]

    async def get_best_workflow_for_task(
        self,
        task_type: str,
        optimization_target: Target = "success_rate",
        *,
        namespace: str | None = None,
    ) -> WorkflowPattern | None:
        """The workflow to use, or None while there is not enough evidence (min samples)."""
        reply = await self._ask(
            "best_workflow",
            {
                "task_type": task_type,
                "optimization_target": optimization_target,
                "namespace": namespace,
            },
        )
        found = reply.get("workflow")
        return None if found is None else WorkflowPattern.model_validate(found)

    async def get_task_success_metrics(
        self, task_type: str, *, namespace: str | None = None
    ) -> TaskMetrics | None:
        """TaskMetrics of ``task_type`` (None when it never ran)."""
        reply = await self._ask("task_metrics", {"task_type": task_type, "namespace": namespace})
        rows = reply["metrics"]
        return TaskMetrics.model_validate(rows[0]) if rows else None

    async def search_patterns(
        self,
        task_type: str | None = None,
        pattern_type: str | None = None,
        limit: int = 10,
        *,
        namespace: str | None = None,
    ) -> list[LearnedPattern]:
        reply = await self._ask(
            "search_patterns",
            {
                "task_type": task_type,
                "pattern_type": pattern_type,
                "limit": limit,
                "namespace": namespace,
            },
        )
        return [LearnedPattern.model_validate(p) for p in reply["patterns"]]

    async def list_patterns(
        self, pattern_type: str | None = None, limit: int = 50, *, namespace: str | None = None
    ) -> list[LearnedPattern]:
        reply = await self._ask(
            "list_patterns", {"pattern_type": pattern_type, "limit": limit, "namespace": namespace}
        )
        return [LearnedPattern.model_validate(p) for p in reply["patterns"]]

    async def extract_pattern(
        self,
        task_type_pattern: str,
        pattern_type: str = "success",
        min_samples: int = 5,
        *,
        namespace: str | None = None,
    ) -> dict[str, Any] | None:
        """Seed 001: pool every task type ``task_type_pattern`` matches whole (e.g.
        ``.*authentication.*``); None below ``min_samples`` (at least 1).

        The pattern is a regular-expression subset matched in linear time: literals, ``.``,
        classes, ``\\d \\w \\s``, groups, ``|``, ``* + ?`` and ``{m,n}``, at most 256
        characters; backreferences, lookarounds and flags are refused (UsageError).
        """
        reply = await self._ask(
            "extract_pattern",
            {
                "task_type_pattern": task_type_pattern,
                "pattern_type": pattern_type,
                "min_samples": min_samples,
                "namespace": namespace,
            },
        )
        found: dict[str, Any] | None = reply.get("pattern")
        return found

    async def get_learning_metrics(self, *, namespace: str | None = None) -> LearningMetrics:
        return LearningMetrics.model_validate(await self._ask("learning", {"namespace": namespace}))

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
            {
                "text": text,
                "vector": list(vector) if vector is not None else None,
                "top_k": top_k,
                "similarity_threshold": similarity_threshold,
                "success_only": success_only,
                "task_type": task_type,
                "namespace": namespace,
                "collections": list(collections) if collections else None,
                "mode": mode,
                "group_duplicates": group_duplicates,
                "duplicate_similarity": duplicate_similarity,
            },
        )
        return [SearchHit.model_validate(h) for h in reply["hits"]]

    async def find_similar_decisions(
        self,
        context: str,
        top_k: int = 5,
        *,
        namespace: str | None = None,
        mode: SearchMode = "hybrid",
    ) -> list[SearchHit]:
        """Seed 002: past decisions made in a similar context."""
        return await self.search_similar(
            context, top_k=top_k, collections=["decisions"], namespace=namespace, mode=mode
        )

    async def get_task_context(
        self,
        task_description: str,
        top_k: int = 5,
        *,
        namespace: str | None = None,
        mode: SearchMode = "hybrid",
    ) -> TaskContext:
        """Seed 001: similar tasks, matching patterns and recommendations in plain sentences."""
        reply = await self._ask(
            "task_context",
            {
                "task_description": task_description,
                "top_k": top_k,
                "namespace": namespace,
                "mode": mode,
            },
        )
        return TaskContext.model_validate(reply)

    async def assemble_context(
        self,
        task_description: str,
        max_tokens: int = 1_000,
        tiers: Sequence[str] = ("operational", "working", "longterm"),
        *,
        namespace: str | None = None,
    ) -> AssembledContext:
        """Seed 002: ranked chunks from the three tiers, never over ``max_tokens``."""
        reply = await self._ask(
            "assemble_context",
            {
                "task_description": task_description,
                "max_tokens": max_tokens,
                "tiers": list(tiers),
                "namespace": namespace,
            },
        )
        return AssembledContext.model_validate(reply)

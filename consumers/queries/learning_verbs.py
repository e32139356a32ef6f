"""Query verbs answered from the learner's state (seed 000 / 001 names and fields)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from consumers.queries.dispatch import QueryDispatcher
from consumers.queries.params import (
    limit_param,
    namespace_param,
    number_param,
    required_text,
    text_param,
)
from engine.errors import UsageError
from projections.learning import LearnerProjection
from projections.learning import queries as q
from projections.learning.type_pattern import TaskTypePattern

__all__ = ["LEARNING_VERBS", "register_learning_verbs"]


def _verbs(learner: LearnerProjection) -> dict[str, Any]:
    def patterns(p: Mapping[str, Any]) -> dict[str, Any]:
        rate = number_param(p, "min_success_rate", 0.7)
        tt = text_param(p, "task_type")
        return {
            "patterns": learner.read(
                lambda s: q.retrieve_workflow_patterns(s, namespace_param(p), tt, rate)
            )
        }

    def best(p: Mapping[str, Any]) -> dict[str, Any]:
        tt = required_text(p, "task_type")
        target = text_param(p, "optimization_target", "success_rate") or "success_rate"
        return {
            "workflow": learner.read(lambda s: q.best_workflow(s, namespace_param(p), tt, target))
        }

    def task_metrics(p: Mapping[str, Any]) -> dict[str, Any]:
        tt = text_param(p, "task_type")
        return {
            "metrics": learner.read(lambda s: q.task_success_metrics(s, namespace_param(p), tt))
        }

    def search(p: Mapping[str, Any]) -> dict[str, Any]:
        tt, kind, limit = (
            text_param(p, "task_type"),
            text_param(p, "pattern_type"),
            limit_param(p, 10),
        )
        return {
            "patterns": learner.read(
                lambda s: q.search_patterns(s, namespace_param(p), tt, kind, limit)
            )
        }

    def listing(p: Mapping[str, Any]) -> dict[str, Any]:
        kind, limit = text_param(p, "pattern_type"), limit_param(p, 50)
        return {
            "patterns": learner.read(lambda s: q.list_patterns(s, namespace_param(p), kind, limit))
        }

    def learning(p: Mapping[str, Any]) -> dict[str, Any]:
        return learner.read(lambda s: q.learning_metrics(s, namespace_param(p)))

    def extract(p: Mapping[str, Any]) -> dict[str, Any]:
        matcher = TaskTypePattern(required_text(p, "task_type_pattern"))
        kind = text_param(p, "pattern_type", "success") or "success"
        if kind not in ("success", "failure", "workflow"):
            raise UsageError("pattern_type must be success, failure or workflow")
        n, ns = limit_param(p, 5, key="min_samples"), namespace_param(p)
        # The pattern runs outside the learner's lock: a batch being applied never waits for it.
        matched = matcher.filter(learner.read(lambda s: q.task_types(s, ns)))
        return {"pattern": learner.read(lambda s: q.pool_pattern(s, ns, matched, kind, n))}

    return {
        "patterns": patterns,
        "best_workflow": best,
        "task_metrics": task_metrics,
        "search_patterns": search,
        "list_patterns": listing,
        "learning": learning,
        "extract_pattern": extract,
    }


LEARNING_VERBS = (
    "patterns",
    "best_workflow",
    "task_metrics",
    "search_patterns",
    "list_patterns",
    "learning",
    "extract_pattern",
)


def register_learning_verbs(dispatcher: QueryDispatcher, learner: LearnerProjection) -> None:
    """Serve the learner's verbs. Each is answered in a worker thread: reading the state takes
    its lock, which a batch being applied holds (milliseconds), and the event loop must never
    wait on a lock (it also renews the announcer lease and feeds every runner)."""
    for verb, handler in _verbs(learner).items():

        async def answer(payload: Mapping[str, Any], handler: Any = handler) -> dict[str, Any]:
            result: dict[str, Any] = await asyncio.to_thread(handler, payload)
            return result

        dispatcher.register(verb, answer)

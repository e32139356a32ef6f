"""Query verbs answered from the learner's state."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from consumers.queries.dispatch import QueryDispatcher
from engine.verbs.requests import (
    BestWorkflowRequest,
    ExtractPatternRequest,
    LearningRequest,
    ListPatternsRequest,
    PatternsRequest,
    SearchPatternsRequest,
    TaskMetricsRequest,
)
from projections.learning import LearnerProjection
from projections.learning import queries as q
from projections.learning.type_pattern import TaskTypePattern

__all__ = ["register_learning_verbs"]


def _verbs(learner: LearnerProjection) -> dict[str, Callable[[Any], Mapping[str, Any]]]:
    def patterns(r: PatternsRequest) -> dict[str, Any]:
        return {
            "patterns": learner.read(
                lambda s: q.retrieve_workflow_patterns(
                    s, r.namespace, r.task_type, r.min_success_rate
                )
            )
        }

    def best(r: BestWorkflowRequest) -> dict[str, Any]:
        return {
            "workflow": learner.read(
                lambda s: q.best_workflow(s, r.namespace, r.task_type, r.optimization_target)
            )
        }

    def task_metrics(r: TaskMetricsRequest) -> dict[str, Any]:
        return {
            "metrics": learner.read(lambda s: q.task_success_metrics(s, r.namespace, r.task_type))
        }

    def search(r: SearchPatternsRequest) -> dict[str, Any]:
        return {
            "patterns": learner.read(
                lambda s: q.search_patterns(s, r.namespace, r.task_type, r.pattern_type, r.limit)
            )
        }

    def listing(r: ListPatternsRequest) -> dict[str, Any]:
        return {
            "patterns": learner.read(
                lambda s: q.list_patterns(s, r.namespace, r.pattern_type, r.limit)
            )
        }

    def learning(r: LearningRequest) -> dict[str, Any]:
        return learner.read(lambda s: q.learning_metrics(s, r.namespace))

    def extract(r: ExtractPatternRequest) -> dict[str, Any]:
        matcher = TaskTypePattern(r.task_type_pattern)
        # The pattern runs outside the learner's lock: a batch being applied never waits for it.
        matched = matcher.filter(learner.read(lambda s: q.task_types(s, r.namespace)))
        return {
            "pattern": learner.read(
                lambda s: q.pool_pattern(s, r.namespace, matched, r.pattern_type, r.min_samples)
            )
        }

    return {
        "patterns": patterns,
        "best_workflow": best,
        "task_metrics": task_metrics,
        "search_patterns": search,
        "list_patterns": listing,
        "learning": learning,
        "extract_pattern": extract,
    }


def register_learning_verbs(dispatcher: QueryDispatcher, learner: LearnerProjection) -> None:
    """Serve the learner's verbs. Each is answered in a worker thread: reading the state takes
    its lock, which a batch being applied holds (milliseconds), and the event loop must never
    wait on a lock (it also renews the announcer lease and feeds every runner)."""
    for name, handler in _verbs(learner).items():

        async def answer(
            request: Any, handler: Callable[[Any], Mapping[str, Any]] = handler
        ) -> Mapping[str, Any]:
            return await asyncio.to_thread(handler, request)

        dispatcher.register(name, answer)

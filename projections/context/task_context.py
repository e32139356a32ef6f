"""Everything an agent needs before a task: similar past tasks, the patterns its type has
learned, the best workflow and recommendations in plain sentences."""

from __future__ import annotations

from typing import Any

from projections.context.recommendations import recommendations
from projections.learning import LearnerProjection
from projections.learning import queries as q
from projections.vectors.projection import VectorProjection

__all__ = ["PATTERNS_CONSIDERED", "task_context"]

PATTERNS_CONSIDERED = 10
"""The most confident learned patterns of the task's type a task context lists."""


def task_context(
    description: str,
    namespace: str,
    *,
    top_k: int,
    task_type: str | None,
    mode: str,
    vectors: VectorProjection,
    learner: LearnerProjection,
) -> dict[str, Any]:
    """The task context of ``description`` in ``namespace`` (its type inferred when not
    given): the ``top_k`` most similar past tasks, the type's patterns, the best workflow and
    the recommendations drawn from them. Blocking (it embeds and reads the projections under
    their read locks): call it off the event loop."""
    kind = task_type or vectors.classifier.classify(description)
    similar = vectors.search(
        namespace=namespace, text=description, top_k=top_k, collections=["tasks"], mode=mode
    )
    patterns, best = learner.read(
        lambda s: (
            q.search_patterns(s, namespace, kind, None, PATTERNS_CONSIDERED),
            q.best_workflow(s, namespace, kind),
        )
    )
    return {
        "task_description": description,
        "task_type": kind,
        "similar_tasks": similar,
        "patterns": patterns,
        "best_workflow": best,
        "recommendations": recommendations(best, patterns, similar),
    }

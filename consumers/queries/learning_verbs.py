"""Query verbs answered from the learner's state (seed 000 / 001 names and fields)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from consumers.queries.dispatch import QueryDispatcher
from engine.errors import UsageError
from projections.learning import LearnerProjection
from projections.learning import queries as q

__all__ = ["LEARNING_VERBS", "register_learning_verbs"]


def _str(payload: Mapping[str, Any], key: str, default: str | None = None) -> str | None:
    value = payload.get(key, default)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _num(payload: Mapping[str, Any], key: str, default: float) -> float:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{key} must be a number, got {type(value).__name__}")
    return float(value)


def _limit(payload: Mapping[str, Any], default: int) -> int:
    value = payload.get("limit", default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError("limit must be a positive integer")
    return value


def _ns(payload: Mapping[str, Any]) -> str:
    return _str(payload, "namespace", "default") or "default"


def _required(payload: Mapping[str, Any], key: str) -> str:
    value = _str(payload, key)
    if not value:
        raise UsageError(f"{key} is required")
    return value


def _verbs(learner: LearnerProjection) -> dict[str, Any]:
    def patterns(p: Mapping[str, Any]) -> dict[str, Any]:
        rate = _num(p, "min_success_rate", 0.7)
        tt = _str(p, "task_type")
        return {
            "patterns": learner.read(lambda s: q.retrieve_workflow_patterns(s, _ns(p), tt, rate))
        }

    def best(p: Mapping[str, Any]) -> dict[str, Any]:
        tt = _required(p, "task_type")
        target = _str(p, "optimization_target", "success_rate") or "success_rate"
        return {"workflow": learner.read(lambda s: q.best_workflow(s, _ns(p), tt, target))}  # type: ignore[arg-type]

    def task_metrics(p: Mapping[str, Any]) -> dict[str, Any]:
        tt = _str(p, "task_type")
        return {"metrics": learner.read(lambda s: q.task_success_metrics(s, _ns(p), tt))}

    def search(p: Mapping[str, Any]) -> dict[str, Any]:
        tt, kind, limit = _str(p, "task_type"), _str(p, "pattern_type"), _limit(p, 10)
        return {"patterns": learner.read(lambda s: q.search_patterns(s, _ns(p), tt, kind, limit))}

    def listing(p: Mapping[str, Any]) -> dict[str, Any]:
        kind, limit = _str(p, "pattern_type"), _limit(p, 50)
        return {"patterns": learner.read(lambda s: q.list_patterns(s, _ns(p), kind, limit))}

    def learning(p: Mapping[str, Any]) -> dict[str, Any]:
        return learner.read(lambda s: q.learning_metrics(s, _ns(p)))

    def extract(p: Mapping[str, Any]) -> dict[str, Any]:
        regex = _required(p, "task_type_pattern")
        kind = _str(p, "pattern_type", "success") or "success"
        if kind not in ("success", "failure", "workflow"):
            raise UsageError("pattern_type must be success, failure or workflow")
        n = int(_num(p, "min_samples", 5))
        return {"pattern": learner.read(lambda s: q.extract_pattern(s, _ns(p), regex, kind, n))}  # type: ignore[arg-type]

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
    """Serve the learner's verbs; answered inline (in-memory state: microseconds)."""
    for verb, handler in _verbs(learner).items():

        async def answer(payload: Mapping[str, Any], handler: Any = handler) -> dict[str, Any]:
            result: dict[str, Any] = handler(payload)
            return result

        dispatcher.register(verb, answer)

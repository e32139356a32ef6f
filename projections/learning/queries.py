"""Read verbs over the learner's state (pure functions; results use the field names of
``engine.results``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from engine.errors import UsageError
from projections.learning.scoring import wilson_lower_bound
from projections.learning.state import LearnerState, workflow_pattern_id
from projections.learning.stats import WorkflowStats
from projections.learning.type_pattern import TaskTypePattern

__all__ = [
    "best_workflow",
    "extract_pattern",
    "learning_metrics",
    "list_patterns",
    "pool_pattern",
    "retrieve_workflow_patterns",
    "search_patterns",
    "task_success_metrics",
    "task_types",
]

Target = Literal["success_rate", "duration", "cost"]
RELIABILITY_MARGIN = 0.15
"""For duration or cost, only workflows within this much of the best success rate compete."""


def _workflow_pattern(
    state: LearnerState, ns: str, tt: str, key: str, s: WorkflowStats
) -> dict[str, Any]:
    pid = workflow_pattern_id(ns, tt, key)
    snapshot = state.versions.get(pid)
    return {
        "pattern_id": pid,
        "namespace": ns,
        "task_type": tt,
        "workflow_steps": list(s.steps),
        "executions": s.executions,
        "successes": s.successes,
        "success_rate": s.success_rate,
        "success_rate_lower_bound": wilson_lower_bound(s.successes, s.executions),
        "avg_duration": s.avg_duration,
        "avg_cost": s.avg_cost,
        "last_seen": s.last_seen,
        "confidence": snapshot.confidence if snapshot else 0.0,
        "version": snapshot.version if snapshot else 0,
        "is_best": state.best.get((ns, tt)) == key,
    }


def retrieve_workflow_patterns(
    state: LearnerState, namespace: str, task_type: str | None, min_success_rate: float = 0.7
) -> list[dict[str, Any]]:
    """WorkflowPatterns with at least ``min_samples`` executions and the given success rate,
    best first (success rate, then executions, then shorter duration)."""
    found = [
        _workflow_pattern(state, ns, tt, key, s)
        for (ns, tt), by_key in state.workflows.items()
        if ns == namespace and (task_type is None or tt == task_type)
        for key, s in by_key.items()
        if s.executions >= state.config.min_samples and s.success_rate >= min_success_rate
    ]
    return sorted(
        found,
        key=lambda p: (-p["success_rate"], -p["executions"], p["avg_duration"], p["pattern_id"]),
    )


def best_workflow(
    state: LearnerState, namespace: str, task_type: str, target: str = "success_rate"
) -> dict[str, Any] | None:
    """The workflow to use for ``task_type``, or None without enough evidence (no workflow with
    ``min_samples`` executions). For duration/cost, the fastest/cheapest among the reliable."""
    if target not in ("success_rate", "duration", "cost"):
        raise UsageError(f"optimization_target must be success_rate, duration or cost: {target!r}")
    patterns = retrieve_workflow_patterns(state, namespace, task_type, min_success_rate=0.0)
    if not patterns:
        return None
    # Most credible success, not the luckiest: rank by the Wilson lower bound.
    credible = max(
        patterns,
        key=lambda p: (p["success_rate_lower_bound"], p["executions"], -p["avg_duration"]),
    )
    if target == "success_rate":
        return credible
    floor = credible["success_rate_lower_bound"] - RELIABILITY_MARGIN
    reliable = [p for p in patterns if p["success_rate_lower_bound"] >= floor]
    if target == "duration":
        return min(reliable, key=lambda p: (p["avg_duration"], -p["success_rate"]))
    costed = [p for p in reliable if p["avg_cost"] is not None]
    return min(costed, key=lambda p: (p["avg_cost"], -p["success_rate"])) if costed else None


def task_success_metrics(
    state: LearnerState, namespace: str, task_type: str | None = None
) -> list[dict[str, Any]]:
    """TaskMetrics per task type, from every workflow execution."""
    results = []
    for (ns, tt), by_key in state.workflows.items():
        if ns != namespace or (task_type is not None and tt != task_type):
            continue
        total = sum(s.executions for s in by_key.values())
        ok = sum(s.successes for s in by_key.values())
        cost_n = sum(s.cost_count for s in by_key.values())
        results.append(
            {
                "task_type": tt,
                "namespace": ns,
                "total_executions": total,
                "successful_executions": ok,
                "success_rate": ok / total if total else 0.0,
                "avg_duration": sum(s.duration_sum for s in by_key.values()) / total
                if total
                else 0.0,
                "avg_cost": sum(s.cost_sum for s in by_key.values()) / cost_n if cost_n else None,
            }
        )
    return sorted(results, key=lambda m: (-m["total_executions"], m["task_type"]))


def _snapshot_dict(pid: str, state: LearnerState) -> dict[str, Any]:
    s = state.versions[pid]
    return {
        "pattern_id": pid,
        "pattern_type": s.pattern_type,
        "namespace": s.namespace,
        "task_type": s.task_type,
        "version": s.version,
        "success_rate": s.success_rate,
        "confidence": s.confidence,
        "sample_size": s.sample_size,
        "is_best": s.is_best,
        "caused_by_sequence": s.caused_by_sequence,
        **s.details,
    }


def search_patterns(
    state: LearnerState,
    namespace: str,
    task_type: str | None,
    pattern_type: str | None,
    limit: int = 10,
) -> list[dict[str, Any]]:
    """Learned patterns (those with a version), most confident first."""
    found = [
        _snapshot_dict(pid, state)
        for pid, s in state.versions.items()
        if s.namespace == namespace
        and (task_type is None or s.task_type == task_type)
        and (pattern_type is None or s.pattern_type == pattern_type)
    ]
    found.sort(key=lambda p: (-p["confidence"], -p["success_rate"], p["pattern_id"]))
    return found[:limit]


def list_patterns(
    state: LearnerState, namespace: str, pattern_type: str | None, limit: int = 50
) -> list[dict[str, Any]]:
    return search_patterns(state, namespace, None, pattern_type, limit)


def learning_metrics(state: LearnerState, namespace: str) -> dict[str, Any]:
    """The learning metrics: overall success rate, totals, learned task types."""
    by_type = {m["task_type"]: m for m in task_success_metrics(state, namespace)}
    total = sum(m["total_executions"] for m in by_type.values())
    ok = sum(m["successful_executions"] for m in by_type.values())
    learned = sorted({s.task_type for s in state.versions.values() if s.namespace == namespace})
    return {
        "namespace": namespace,
        "overall_success_rate": ok / total if total else 0.0,
        "total_workflows_executed": total,
        "learned_task_types": learned,
        "patterns_learned": sum(1 for s in state.versions.values() if s.namespace == namespace),
        "metrics_by_task_type": by_type,
    }


def task_types(state: LearnerState, namespace: str) -> list[str]:
    """Every task type seen in ``namespace`` (with outcomes or workflows), sorted."""
    return sorted({tt for ns, tt in {*state.outcomes, *state.workflows} if ns == namespace})


def extract_pattern(
    state: LearnerState,
    namespace: str,
    task_type_pattern: str,
    pattern_type: str = "success",
    min_samples: int = 5,
) -> dict[str, Any] | None:
    """extract_pattern: pool every task type the pattern matches whole (a safe
    regular-expression subset, see type_pattern); None below ``min_samples``. Computed on demand
    (not announced). Raises UsageError for an unsupported pattern."""
    matcher = TaskTypePattern(task_type_pattern)
    matched = matcher.filter(task_types(state, namespace))
    return pool_pattern(state, namespace, matched, pattern_type, min_samples)


def pool_pattern(
    state: LearnerState,
    namespace: str,
    matched: Iterable[str],
    pattern_type: str = "success",
    min_samples: int = 5,
) -> dict[str, Any] | None:
    """extract_pattern over task types already matched: ``min_samples`` must be at least 1."""
    if min_samples < 1:
        raise UsageError(f"min_samples must be a positive integer, got {min_samples}")
    scopes = [(namespace, tt) for tt in sorted(set(matched))]
    scopes = [s for s in scopes if s in state.outcomes or s in state.workflows]
    if pattern_type == "workflow":
        pooled: dict[str, list[int]] = {}
        for scope in scopes:
            for s in state.workflows.get(scope, {}).values():
                entry = pooled.setdefault(" -> ".join(s.steps), [0, 0])
                entry[0] += s.executions
                entry[1] += s.successes
        ranked = sorted(
            ((ok / n, n, steps) for steps, (n, ok) in pooled.items() if n >= min_samples),
            reverse=True,
        )
        if not ranked:
            return None
        rate, n, steps = ranked[0]
        return {
            "pattern_type": "workflow",
            "task_types": sorted(s[1] for s in scopes),
            "workflow": steps,
            "success_rate": rate,
            "sample_size": n,
        }
    outcomes = [state.outcomes[s] for s in scopes if s in state.outcomes]
    successes = sum(o.successes for o in outcomes)
    failures = sum(o.failures for o in outcomes)
    count = successes if pattern_type == "success" else failures
    if count < min_samples:
        return None
    errors: dict[str, int] = {}
    for o in outcomes:
        for error, n in o.errors.items():
            errors[error] = errors.get(error, 0) + n
    return {
        "pattern_type": pattern_type,
        "task_types": sorted(s[1] for s in scopes),
        "success_rate": successes / (successes + failures),
        "sample_size": count,
        "error_patterns": sorted(errors, key=lambda e: (-errors[e], e))[:5],
    }

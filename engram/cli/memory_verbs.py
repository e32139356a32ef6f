"""How the recall verbs' replies print as text: search, patterns, best-workflow, context,
task-context, learning, sessions (their sub-commands come from the catalogue, see
catalogue_verbs)."""

from __future__ import annotations

from typing import Any

from engine.verbs.requests import BestWorkflowRequest
from engram.cli.query_verbs import print_table

__all__ = [
    "print_best_workflow",
    "print_context",
    "print_learning",
    "print_patterns",
    "print_search",
    "print_sessions",
    "print_task_context",
]


def print_search(reply: dict[str, Any], _request: Any) -> None:
    """engram search TEXT: similar past tasks, decisions and knowledge."""
    print_table(reply["hits"], ["similarity_score", "collection", "success", "duplicates", "text"])


def print_patterns(reply: dict[str, Any], _request: Any) -> None:
    """engram patterns: workflow patterns above a success rate, best first."""
    rows = [{**p, "workflow": " -> ".join(p["workflow_steps"])} for p in reply["patterns"]]
    print_table(
        rows,
        [
            "task_type",
            "workflow",
            "executions",
            "success_rate",
            "avg_duration",
            "confidence",
            "is_best",
        ],
    )


def print_best_workflow(reply: dict[str, Any], request: BestWorkflowRequest) -> None:
    """engram best-workflow --task-type T [--target success_rate|duration|cost]."""
    best = reply["workflow"]
    if best is None:
        print(f"no workflow for {request.task_type} has enough runs yet")
    else:
        print(
            f"{' -> '.join(best['workflow_steps'])}: {best['success_rate']:.0%} of "
            f"{best['executions']} runs succeeded, {best['avg_duration']:.1f} s on average"
        )


def print_context(reply: dict[str, Any], _request: Any) -> None:
    """engram context TEXT --max-tokens N: assembled context within the budget."""
    print(f"{reply['total_tokens']}/{reply['max_tokens']} tokens ({reply['token_counter']})")
    for chunk in reply["chunks"]:
        origin = chunk["event_id"] or chunk["source"]
        print(
            f"[{chunk['tier']}/{chunk['source']} {chunk['relevance']:.2f} {origin}] {chunk['text']}"
        )


def print_task_context(reply: dict[str, Any], _request: Any) -> None:
    """engram task-context TEXT: similar tasks, matching patterns, recommendations."""
    print(f"task type: {reply['task_type']}")
    for sentence in reply["recommendations"]:
        print(f"- {sentence}")


def print_learning(reply: dict[str, Any], _request: Any) -> None:
    """engram learning: overall success rate, workflows, learned task types."""
    print(
        f"overall success rate: {reply['overall_success_rate']:.1%} over "
        f"{reply['total_workflows_executed']} workflows; "
        f"{reply['patterns_learned']} patterns learned"
    )
    print_table(
        list(reply["metrics_by_task_type"].values()),
        ["task_type", "total_executions", "success_rate", "avg_duration", "avg_cost"],
    )


def print_sessions(reply: dict[str, Any], _request: Any) -> None:
    """engram sessions [--session ID]: compacted sessions with their SessionMetrics."""
    print_table(
        [{**s, **s["metrics"]} for s in reply["sessions"]],
        [
            "session_id",
            "reason",
            "num_memories",
            "original_size_bytes",
            "compressed_size_bytes",
            "compression_ratio",
            "num_patterns_extracted",
            "compaction_duration_ms",
        ],
    )

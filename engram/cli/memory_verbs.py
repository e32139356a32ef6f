"""Verbs that recall: search, patterns, best-workflow, context, task-context, learning."""

from __future__ import annotations

import argparse
from typing import Any

from engine.settings import Settings
from engram.cli._common import EXIT_OK, emit_json
from engram.cli.query_verbs import ask, print_table

__all__ = [
    "cmd_best_workflow",
    "cmd_context",
    "cmd_learning",
    "cmd_patterns",
    "cmd_search",
    "cmd_sessions",
    "cmd_task_context",
]


def _ns(args: argparse.Namespace) -> str:
    return str(args.namespace or "default")


async def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    """engram search TEXT: similar past tasks, decisions and knowledge."""
    reply = await ask(
        settings,
        "search",
        {
            "text": args.text,
            "top_k": args.top_k,
            "similarity_threshold": args.threshold,
            "success_only": args.success_only,
            "namespace": _ns(args),
            "collections": args.collection or None,
            "task_type": args.task_type,
            "mode": args.mode,
            "group_duplicates": args.group_duplicates,
        },
    )
    if args.json:
        emit_json(reply)
    else:
        print_table(
            reply["hits"], ["similarity_score", "collection", "success", "duplicates", "text"]
        )
    return EXIT_OK


async def cmd_patterns(args: argparse.Namespace, settings: Settings) -> int:
    """engram patterns: workflow patterns above a success rate, best first."""
    reply = await ask(
        settings,
        "patterns",
        {
            "task_type": args.task_type,
            "namespace": _ns(args),
            "min_success_rate": args.min_success_rate,
        },
    )
    if args.json:
        emit_json(reply)
    else:
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
    return EXIT_OK


async def cmd_best_workflow(args: argparse.Namespace, settings: Settings) -> int:
    """engram best-workflow --task-type T [--target success_rate|duration|cost]."""
    reply = await ask(
        settings,
        "best_workflow",
        {"task_type": args.task_type, "optimization_target": args.target, "namespace": _ns(args)},
    )
    if args.json:
        emit_json(reply)
        return EXIT_OK
    best = reply["workflow"]
    if best is None:
        print(f"no workflow for {args.task_type} has enough runs yet")
    else:
        print(
            f"{' -> '.join(best['workflow_steps'])}: {best['success_rate']:.0%} of "
            f"{best['executions']} runs succeeded, {best['avg_duration']:.1f} s on average"
        )
    return EXIT_OK


async def cmd_context(args: argparse.Namespace, settings: Settings) -> int:
    """engram context TEXT --max-tokens N: assembled context within the budget."""
    reply = await ask(
        settings,
        "assemble_context",
        {
            "task_description": args.text,
            "max_tokens": args.max_tokens,
            "tiers": args.tier or ["operational", "working", "longterm"],
            "namespace": _ns(args),
        },
    )
    if args.json:
        emit_json(reply)
        return EXIT_OK
    print(f"{reply['total_tokens']}/{reply['max_tokens']} tokens ({reply['token_counter']})")
    for chunk in reply["chunks"]:
        origin = chunk["event_id"] or chunk["source"]
        print(
            f"[{chunk['tier']}/{chunk['source']} {chunk['relevance']:.2f} {origin}] {chunk['text']}"
        )
    return EXIT_OK


async def cmd_task_context(args: argparse.Namespace, settings: Settings) -> int:
    """engram task-context TEXT: similar tasks, matching patterns, recommendations."""
    reply: dict[str, Any] = await ask(
        settings,
        "task_context",
        {"task_description": args.text, "top_k": args.top_k, "namespace": _ns(args)},
    )
    if args.json:
        emit_json(reply)
        return EXIT_OK
    print(f"task type: {reply['task_type']}")
    for sentence in reply["recommendations"]:
        print(f"- {sentence}")
    return EXIT_OK


async def cmd_learning(args: argparse.Namespace, settings: Settings) -> int:
    """engram learning: overall success rate, workflows, learned task types."""
    reply = await ask(settings, "learning", {"namespace": _ns(args)})
    if args.json:
        emit_json(reply)
        return EXIT_OK
    print(
        f"overall success rate: {reply['overall_success_rate']:.1%} over "
        f"{reply['total_workflows_executed']} workflows; "
        f"{reply['patterns_learned']} patterns learned"
    )
    print_table(
        list(reply["metrics_by_task_type"].values()),
        ["task_type", "total_executions", "success_rate", "avg_duration", "avg_cost"],
    )
    return EXIT_OK


async def cmd_sessions(args: argparse.Namespace, settings: Settings) -> int:
    """engram sessions [--session ID]: compacted sessions with their SessionMetrics."""
    payload = {
        "namespace": _ns(args),
        "session": args.session,
        "limit": args.limit,
        "summary": bool(args.json),
    }
    reply = await ask(settings, "sessions", payload)
    if args.json:
        emit_json(reply)
    else:
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
    return EXIT_OK

"""engram demo: simulated orchestrator agents publishing their work to engram.

Runs on the embedded nats-server under the data directory and leaves it there, so the events can
be explored afterwards with ``engram tail`` / ``engram status``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from engine.cli._common import EXIT_OK, emit_json
from engine.cli.log_verbs import stream_status
from engine.client import MemoryClient
from engine.demo.world import World
from engine.settings import Settings

__all__ = ["cmd_demo"]

AGENTS = ("planner-1", "coder-1", "analyst-1", "releaser-1")


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate ``--events`` workflows across sessions and agents, then report the stream."""
    world = World(args.seed)
    started = time.monotonic()
    counts: Counter[str] = Counter()
    async with MemoryClient(settings=settings) as memory:
        await memory.add_knowledge(
            kind="procedure",
            title="Release checklist",
            content="Build, run the tests, deploy a canary, watch error rates, then promote.",
            knowledge_id="kb-release-checklist",
            event_id="demo-kb-release-checklist",
        )
        counts["knowledge.added"] += 1
        session_size = 5
        for index in range(args.events):
            session_id = f"demo-session-{index // session_size:04d}"
            agent = AGENTS[index % len(AGENTS)]
            if index % session_size == 0:
                await memory.start_session(session_id, goal="demo orchestration", agent_id=agent)
                counts["session.started"] += 1
            spec, request = world.next_task()
            candidate = world.rng.choice(spec.candidates)
            outcome = world.run(spec, candidate, request)
            await memory.store_workflow(
                task_type=spec.task_type,
                request=request,
                workflow_steps=candidate.steps,
                success=outcome.success,
                duration=outcome.duration,
                cost=outcome.cost,
                agent_id=agent,
                session_id=session_id,
            )
            await memory.store_execution(
                task_id=f"task-{index:05d}",
                execution_summary=outcome.summary,
                success=outcome.success,
                task_type=spec.task_type,
                error_patterns=outcome.error_patterns,
                agent_id=agent,
                session_id=session_id,
            )
            counts["workflow.executed"] += 1
            counts["task.executed"] += 1
            if index % session_size == session_size - 1:
                await memory.end_session(session_id, success=outcome.success, agent_id=agent)
                counts["session.ended"] += 1
        status = await stream_status(settings, memory.log.nc)
        url = memory.url
    elapsed = time.monotonic() - started
    summary = {
        "published": dict(counts),
        "seconds": round(elapsed, 2),
        "nats_url": url,
        "data_dir": str(settings.data_dir),
        "stream": status,
    }
    if args.json:
        emit_json(summary)
    else:
        print(f"published {sum(counts.values())} events in {elapsed:.1f}s:")
        for name, count in sorted(counts.items()):
            print(f"  {name:>18}: {count}")
        print(
            f"stream {status['stream']}: {status['messages']} messages, "
            f"sequences {status['first_sequence']}..{status['last_sequence']}, "
            f"{status['bytes']:,} bytes"
        )
        print(f"explore: engram tail --data-dir {settings.data_dir} --type workflow.executed")
    return EXIT_OK

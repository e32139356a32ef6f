"""engram demo: orchestrators that remember versus one that does not, on the embedded server.

It runs the engine in-process (unless ``engram serve`` already runs on the data directory),
listens to ``memory.pattern.learned.*`` (every tenant's announcements) like any other service
would, simulates the two orchestrators, then prints and plots success over time, shows a
similarity search and an assembled context, and leaves the data directory for the CLI to explore.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg

from engine.client import MemoryClient
from engine.endpoint import open_nats
from engine.errors import EngineUnavailableError
from engine.events import KnowledgeKind
from engine.query_client import query_remote
from engine.settings import Settings
from engram.cli._common import EXIT_OK, emit_json
from engram.demo.plot import plot_success
from engram.demo.simulation import Orchestrator, Recalled, rolling_rate
from engram.demo.world import TASK_WORLD, Candidate, Outcome, TaskSpec, World

__all__ = ["cmd_demo"]

WINDOW = 40
KNOWLEDGE: tuple[tuple[KnowledgeKind, str, str], ...] = (
    (
        "procedure",
        "Release checklist",
        "Build, run the tests, deploy a canary, watch error rates for ten minutes, then promote.",
    ),
    (
        "incident",
        "Outage after a direct deploy",
        "A release deployed without a canary broke checkout; roll back, then add a canary stage.",
    ),
    (
        "knowledge",
        "Debugging memory leaks",
        "Reproduce under load, bisect the commit range, patch, and add a regression test.",
    ),
)


@contextlib.asynccontextmanager
async def _engine(settings: Settings, nc: Any, url: str) -> AsyncIterator[str]:
    """An in-process engine, unless one already answers on this server."""
    queries = settings.stream.service.query_prefix
    try:
        await query_remote(nc, "status", {}, timeout_s=1.0, prefix=queries)
        yield "already running (engram serve)"
        return
    except EngineUnavailableError:
        pass
    from consumers.runner import RunnerSettings
    from engram.app import Engine

    engine = Engine(
        settings, nc, url, runner_settings=RunnerSettings(batch_size=200, max_wait_s=0.05)
    )
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        async with asyncio.timeout(30):
            while True:
                with contextlib.suppress(EngineUnavailableError):
                    await query_remote(nc, "status", {}, timeout_s=0.5, prefix=queries)
                    break
                await asyncio.sleep(0.05)
        yield "in-process"
    finally:
        stop.set()
        await task


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Simulate ``--tasks`` tasks for each orchestrator and show what memory changed."""
    started = time.monotonic()
    heard: list[dict[str, Any]] = []

    async def on_learned(msg: Msg) -> None:
        heard.append(json.loads(msg.data)["data"])

    async with (
        open_nats(settings) as endpoint,
        _engine(settings, endpoint.nc, endpoint.url) as engine_mode,
    ):
        learned = settings.stream.events.subject("pattern.learned", "*")  # every namespace
        subscription = await endpoint.nc.subscribe(learned, cb=on_learned)
        client_settings = settings.model_copy(
            update={"nats": settings.nats.model_copy(update={"url": endpoint.url})}
        )
        async with MemoryClient(settings=client_settings, namespace="demo") as memory:
            for kind, title, content in KNOWLEDGE:
                await memory.add_knowledge(
                    kind=kind,
                    title=title,
                    content=content,
                    knowledge_id=title.lower().replace(" ", "-"),
                    event_id=f"demo-kb-{title.lower().replace(' ', '-')}",
                )

            def recorder(namespace: str, agent: str) -> Any:
                count = 0

                async def record(
                    spec: TaskSpec, candidate: Candidate, request: str, outcome: Outcome
                ) -> None:
                    nonlocal count
                    count += 1
                    session = f"{namespace}-session-{count // 10:04d}"
                    await memory.store_workflow(
                        task_type=spec.task_type,
                        request=request,
                        workflow_steps=candidate.steps,
                        success=outcome.success,
                        duration=outcome.duration,
                        cost=outcome.cost,
                        namespace=namespace,
                        agent_id=agent,
                        session_id=session,
                    )
                    await memory.store_execution(
                        task_id=f"{namespace}-task-{count:05d}",
                        task_type=spec.task_type,
                        execution_summary=outcome.summary,
                        success=outcome.success,
                        error_patterns=outcome.error_patterns,
                        namespace=namespace,
                        agent_id=agent,
                        session_id=session,
                    )

                return record

            async def recall(task_type: str) -> Recalled:
                patterns = await memory.retrieve_workflow_patterns(task_type, min_success_rate=0)
                best = await memory.get_best_workflow_for_task(task_type)
                return Recalled(
                    best=None if best is None else tuple(best.workflow_steps),
                    runs={tuple(p.workflow_steps): (p.successes, p.executions) for p in patterns},
                )

            with_memory = Orchestrator(
                World(args.seed), recall, recorder("demo", "orchestrator"), seed=args.seed
            )
            baseline = Orchestrator(
                World(args.seed + 1),
                None,
                recorder("baseline", "orchestrator-no-memory"),
                seed=args.seed + 1,
            )
            for _ in range(args.tasks):
                await with_memory.step()
                await baseline.step()
            await asyncio.sleep(1.0)  # let the engine project the last events
            search = await memory.search_similar("worker leaks memory under load", top_k=3)
            context = await memory.assemble_context(
                "Roll out the new release to production", max_tokens=160
            )
            task_context = await memory.get_task_context("Deploy the API to staging")
            learning = await memory.get_learning_metrics()
            best_now = {
                spec.task_type: await memory.get_best_workflow_for_task(spec.task_type)
                for spec in TASK_WORLD
            }
        await asyncio.sleep(0.2)
        await subscription.unsubscribe()

    memory_curve = rolling_rate(with_memory.log.outcomes, WINDOW)
    baseline_curve = rolling_rate(baseline.log.outcomes, WINDOW)
    picture = plot_success(
        memory_curve, baseline_curve, settings.data_dir / "demo-success.png", WINDOW
    )
    summary = {
        "tasks_per_orchestrator": args.tasks,
        "success_rate_with_memory": round(with_memory.log.success_rate, 3),
        "success_rate_without_memory": round(baseline.log.success_rate, 3),
        "last_window_with_memory": round(memory_curve[-1], 3) if memory_curve else None,
        "last_window_without_memory": round(baseline_curve[-1], 3) if baseline_curve else None,
        "choices_with_memory": {
            "followed_best": with_memory.log.followed_best,
            "gathering_evidence": with_memory.log.gathering,
            "explored": with_memory.log.explored,
        },
        "patterns_heard": len(heard),
        "best_workflows": {
            task_type: None
            if best is None
            else {
                "workflow_steps": best.workflow_steps,
                "success_rate": best.success_rate,
                "executions": best.executions,
                "truly_best": tuple(best.workflow_steps) == _truth(task_type),
            }
            for task_type, best in best_now.items()
        },
        "metrics_by_task_type": {
            name: metrics.model_dump() for name, metrics in learning.metrics_by_task_type.items()
        },
        "plot": str(picture) if picture else None,
        "engine": engine_mode,
        "seconds": round(time.monotonic() - started, 1),
        "data_dir": str(settings.data_dir),
    }
    if args.json:
        emit_json(summary)
        return EXIT_OK
    _print_report(summary, memory_curve, baseline_curve, heard, search, context, task_context)
    return EXIT_OK


def _truth(task_type: str) -> tuple[str, ...]:
    return next(spec.best.steps for spec in TASK_WORLD if spec.task_type == task_type)


def _print_report(
    summary: dict[str, Any],
    memory_curve: list[float],
    baseline: list[float],
    heard: list[dict[str, Any]],
    search: Any,
    context: Any,
    task_context: Any,
) -> None:
    print(
        f"engram demo: {summary['tasks_per_orchestrator']} tasks per orchestrator "
        f"in {summary['seconds']} s (engine {summary['engine']})\n"
    )
    print(f"success rate over the last {WINDOW} tasks:")
    print("   task   with engram   without memory")
    step = max(1, len(memory_curve) // 8)
    for index in [*range(step - 1, len(memory_curve), step)][:8]:
        print(f"  {index + 1:5d}   {memory_curve[index]:10.0%}   {baseline[index]:14.0%}")
    choices = summary["choices_with_memory"]
    print(
        f"\noverall: {summary['success_rate_with_memory']:.0%} with engram, "
        f"{summary['success_rate_without_memory']:.0%} without; with engram, "
        f"{choices['followed_best']} tasks followed its best workflow, "
        f"{choices['gathering_evidence']} gathered evidence, {choices['explored']} explored"
    )
    if summary["plot"]:
        print(f"plot: {summary['plot']}")
    else:
        print("plot: install matplotlib (pip install -e '.[demo]') to get the PNG")
    print(
        f"\nheard {len(heard)} memory.pattern.learned announcements; "
        "engram's best workflow per task type now:"
    )
    for task_type, best in summary["best_workflows"].items():
        if best is None:
            print(f"  {task_type:16} (not enough evidence yet)")
            continue
        truth = " (the truly best)" if best["truly_best"] else " (not the truly best)"
        print(
            f"  {task_type:16} {' -> '.join(best['workflow_steps'])}: "
            f"{best['success_rate']:.0%} over {best['executions']} runs{truth}"
        )
    print("\nsimilar to 'worker leaks memory under load':")
    for hit in search:
        print(
            f"  {hit.similarity_score:.2f} [{hit.collection}] {hit.text[:90]}".replace("\n", " / ")
        )
    print("\nrecommendations for 'Deploy the API to staging':")
    for sentence in task_context.recommendations:
        print(f"  - {sentence}")
    print(
        f"\ncontext for 'Roll out the new release to production' "
        f"({context.total_tokens}/{context.max_tokens} tokens):"
    )
    for chunk in context.chunks:
        print(f"  [{chunk.tier}/{chunk.source}] {chunk.text[:100]}")
    print(
        f"\nexplore it: engram patterns --data-dir {summary['data_dir']} --namespace demo "
        "--min-success-rate 0"
    )

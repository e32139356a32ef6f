"""Learning and recall latency (issue 5): the query verbs over NATS request-reply, storage, and
the delay from a workflow.executed to the memory.pattern.learned it causes.

Usage::

    .venv/bin/python bench/bench_queries.py                       # 100,000 memories, 10,000 wf
    .venv/bin/python bench/bench_queries.py --embedder minilm --memories 10000
    .venv/bin/python bench/bench_queries.py --nats-url nats://127.0.0.1:4222 --profile
    .venv/bin/python bench/bench_queries.py --mode hybrid vector lexical   # search per mode

One run:

1. fills a fresh stream (embedded nats-server in a temporary directory, or ``--nats-url``) with
   ``--memories`` task.executed events (templated, varied summaries over the nine task types,
   some failing with error patterns) and ``--workflows`` workflow.executed events (four candidate
   step sequences per task type, each with its own hidden success rate), interleaved, all in
   namespace ``bench``, through ``EventLog.append_many`` in chunks (``query_workload.py``);
2. runs an in-process ``engram.app.Engine`` (default ``Settings`` but the data directory, the
   stream, ``--embedder`` and the snapshot policy, off unless ``--snapshots``: a fresh engine
   over a long stream would snapshot at once, a full replay beside the timed calls; default
   ``RunnerSettings``, as ``engram serve``) until every projection's lag is 0 and the stream is
   quiet; then appends ``--live`` recent agent events (the catch-up ends the stream with the
   learner's announcements, which the operational tier skips) and waits again;
3. times each verb's handler alone: the same verb answered by an in-process dispatcher over the
   same projections (no NATS, no usage events recorded), so transport and compute can be told
   apart; ``--profile`` adds a cProfile of those handlers (``asyncio.to_thread`` inlined so the
   worker-thread part is profiled too), top functions by cumulative time;
4. from a ``MemoryClient`` in a process of its own (``--same-process-client``: in the engine's
   event loop), times ``--calls`` sequential calls of each query verb after ``--warmup``
   untimed ones, then of ``store_workflow`` (publish + ack). ``search_similar`` records a
   memory.recalled per call, as in production, so the projections work between its calls;
5. ``--probes`` times: three runs of a new step sequence in a new task type (the third creates
   the pattern), from the third publish's ack to the resulting memory.pattern.learned arriving on
   a plain nats-py subscription of another connection.

The engine process's full (generation 2) garbage collections during step 4-5 are reported too.

With ``--nats-url`` the server must be a scratch one: the stream ``--stream`` (subjects
``memory.>``) is deleted and created again, and no other stream there may capture ``memory.>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import itertools
import json
import multiprocessing
import os
import pstats
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError
from query_workload import NAMESPACE, QUERY_TEXTS, TASK_TYPES, candidates, generate

from consumers.queries import QueryDispatcher
from consumers.queries.learning_verbs import register_learning_verbs
from consumers.queries.memory_verbs import MemoryVerbs
from engine.client import MemoryClient
from engine.logconfig import configure_logging
from engine.query_client import query_remote
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.app import Engine
from projections.context import HeuristicTokenCounter
from projections.projection_set import ProjectionSet

TARGETS_MS = {
    "retrieve_workflow_patterns": 10.0,
    "get_best_workflow_for_task": 10.0,
    "get_task_success_metrics": 10.0,
    "assemble_context": 25.0,
}
SEED_FIGURES_MS = {"retrieve_workflow_patterns": 8.7, "store_workflow": 2.3}


async def fill(log: EventLog, memories: int, workflows: int, seed: int) -> int:
    with contextlib.suppress(NotFoundError):
        await log.js.delete_stream(log.stream_name)
    await log.ensure()
    events = generate(memories, workflows, seed)
    while chunk := list(itertools.islice(events, 10_000)):
        results = await log.append_many(chunk)
        failed = [r for r in results if isinstance(r, Exception)]
        if failed:
            raise SystemExit(f"fill: {len(failed)} appends failed, first: {failed[0]}")
    state = await log.state()
    if state.messages != memories + workflows:
        raise SystemExit(f"fill: {state.messages} stored, expected {memories + workflows}")
    return state.last_sequence


async def catch_up(engine: Engine, target: int, limit_s: float) -> dict[str, float]:
    """Wait until every projection has applied ``target`` and the stream is quiet (the
    learner's own announcements are applied too); returns seconds to ``target`` per projection."""
    started = time.perf_counter()
    reached: dict[str, float] = {}
    last_print, previous = started, -1
    while True:
        await asyncio.sleep(0.25)
        status = await engine.status()
        now = time.perf_counter()
        projections = status["projections"]
        for name, p in projections.items():
            if name not in reached and p["checkpoint"] >= target:
                reached[name] = now - started
        caught_up = projections and all(p["lag"] == 0 for p in projections.values())
        if caught_up and status["last_sequence"] == previous:
            return reached
        previous = status["last_sequence"]
        if now - last_print > 15:
            last_print = now
            done = ", ".join(f"{n} {p['checkpoint']:,}" for n, p in projections.items())
            print(f"  {now - started:5.0f} s: {done} of {status['last_sequence']:,}", flush=True)
        if now - started > limit_s:
            raise SystemExit(f"projections not caught up after {limit_s:.0f} s: {projections}")


@dataclass(frozen=True, slots=True)
class Figures:
    name: str
    samples_ms: tuple[float, ...]

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.samples_ms)


async def timed(
    name: str, call: Callable[[int], Awaitable[Any]], calls: int, warmup: int
) -> Figures:
    for i in range(warmup):
        await call(i)
    samples = []
    for i in range(calls):
        start = time.perf_counter()
        await call(i)
        samples.append((time.perf_counter() - start) * 1e3)
    return Figures(name, tuple(samples))


def direct_dispatcher(projections: ProjectionSet) -> QueryDispatcher:
    """The engine's verbs over the same projections, answered in-process and recording nothing
    (no usage events), so the handler's own time can be measured and profiled."""
    dispatcher = QueryDispatcher(projections.store.reader)
    register_learning_verbs(dispatcher, projections.learner)
    MemoryVerbs(
        projections.vectors,
        projections.learner,
        projections.recent,
        HeuristicTokenCounter(),
        None,
    ).register(dispatcher)
    return dispatcher


def payloads(
    seed: int, modes: Sequence[str] | None = None
) -> dict[str, tuple[str, str, Callable[[int], dict[str, Any]]]]:
    """SDK method name -> (dispatcher verb, description, request payload of call i). With
    ``modes``, ``search_similar`` is timed once per search mode, as ``search_similar[mode]``."""
    rng = random.Random(seed + 3)
    texts = [f"{q} ({rng.choice(TASK_TYPES)})" for q in QUERY_TEXTS] + list(QUERY_TEXTS)
    ns = {"namespace": NAMESPACE}

    def tt(i: int) -> str:
        return TASK_TYPES[i % len(TASK_TYPES)]

    searches: dict[str, tuple[str, str, Callable[[int], dict[str, Any]]]] = {
        "search_similar": (
            "search",
            f"{len(texts)} texts rotate, top_k 5",
            lambda i: {**ns, "text": texts[i % len(texts)], "top_k": 5},
        ),
    }
    if modes:

        def in_mode(mode: str) -> Callable[[int], dict[str, Any]]:
            return lambda i: {**ns, "text": texts[i % len(texts)], "top_k": 5, "mode": mode}

        searches = {
            f"search_similar[{mode}]": (
                "search",
                f"{len(texts)} texts rotate, top_k 5, mode {mode}",
                in_mode(mode),
            )
            for mode in modes
        }
    return {
        "retrieve_workflow_patterns": (
            "patterns",
            "task type rotates, min_success_rate 0.7",
            lambda i: {**ns, "task_type": tt(i), "min_success_rate": 0.7},
        ),
        "get_best_workflow_for_task": (
            "best_workflow",
            "task type rotates, target success_rate",
            lambda i: {**ns, "task_type": tt(i), "optimization_target": "success_rate"},
        ),
        "get_task_success_metrics": (
            "task_metrics",
            "task type rotates",
            lambda i: {**ns, "task_type": tt(i)},
        ),
        "assemble_context": (
            "assemble_context",
            "max_tokens 500, all three tiers",
            lambda i: {**ns, "task_description": texts[i % len(texts)], "max_tokens": 500},
        ),
        **searches,
    }


def sdk_call(memory: MemoryClient, method: str, payload: Callable[[int], dict[str, Any]]) -> Any:
    async def call(i: int) -> Any:
        p = payload(i)
        if method == "retrieve_workflow_patterns":
            return await memory.retrieve_workflow_patterns(p["task_type"], p["min_success_rate"])
        if method == "get_best_workflow_for_task":
            return await memory.get_best_workflow_for_task(p["task_type"])
        if method == "get_task_success_metrics":
            return await memory.get_task_success_metrics(p["task_type"])
        if method.startswith("search_similar"):
            return await memory.search_similar(
                p["text"], top_k=p["top_k"], mode=p.get("mode", "hybrid")
            )
        return await memory.assemble_context(p["task_description"], max_tokens=p["max_tokens"])

    return call


@contextlib.contextmanager
def inline_threads() -> Iterator[None]:
    """Run ``asyncio.to_thread`` work inline, so cProfile (one thread) sees it."""

    async def inline(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    original = asyncio.to_thread
    asyncio.to_thread = inline
    try:
        yield
    finally:
        asyncio.to_thread = original


async def profile_handler(
    dispatcher: QueryDispatcher, verb: str, payload: Callable[[int], dict[str, Any]], calls: int
) -> str:
    profiler = cProfile.Profile()
    with inline_threads():
        profiler.enable()
        for i in range(calls):
            await dispatcher.handle(verb, payload(i))
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(18)
    return out.getvalue()


class GcPauses:
    """Durations of the garbage collector's full (generation 2) collections while active."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1e3)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._callback)


async def settled(memory: MemoryClient, limit_s: float = 120.0) -> None:
    """Wait (over the status verb) until every projection's lag is 0 on a quiet stream."""
    previous, deadline = -1, time.monotonic() + limit_s
    while time.monotonic() < deadline:
        status = await query_remote(memory.log.nc, "status", {}, timeout_s=5.0)
        lags = [p["lag"] for p in status["projections"].values()]
        if lags and not any(lags) and status["last_sequence"] == previous:
            return
        previous = status["last_sequence"]
        await asyncio.sleep(0.25)
    raise SystemExit(f"projections not settled within {limit_s:.0f} s")


async def probe_learned(memory: MemoryClient, probes: int, run_id: str) -> list[Figures]:
    """Per probe: a new task type and step sequence, three successful runs; the third creates
    the pattern. Times the third publish's ack -> pattern.learned heard (and publish -> heard),
    on a plain nats-py subscription of its own connection."""
    heard: dict[str, asyncio.Future[float]] = {}

    async def on_learned(msg: Msg) -> None:
        at = time.perf_counter()
        data = json.loads(msg.data)["data"]
        future = heard.get(data["task_type"])
        if future is not None and not future.done() and data["pattern_type"] == "workflow":
            future.set_result(at)

    assert memory.url is not None
    listener = await nats.connect(memory.url, name="engram-bench-listener")
    sub = await listener.subscribe("memory.pattern.learned.*", cb=on_learned)
    await listener.flush()
    from_ack, from_publish = [], []
    loop = asyncio.get_running_loop()
    try:
        for k in range(probes):
            task_type = f"probe_{run_id}_{k:03d}"
            steps = ["plan", f"probe_step_{k}", "verify"]
            heard[task_type] = loop.create_future()
            for _ in range(2):
                await memory.store_workflow(
                    task_type=task_type, workflow_steps=steps, success=True, duration=5.0
                )
            await asyncio.sleep(0.3)  # the first two are applied: the third is timed alone
            start = time.perf_counter()
            await memory.store_workflow(
                task_type=task_type, workflow_steps=steps, success=True, duration=5.0
            )
            acked = time.perf_counter()
            received = await asyncio.wait_for(heard[task_type], timeout=10.0)
            from_ack.append((received - acked) * 1e3)
            from_publish.append((received - start) * 1e3)
            await asyncio.sleep(0.2)
    finally:
        await sub.unsubscribe()
        await listener.drain()
    return [
        Figures("pattern.learned (ack -> heard)", tuple(from_ack)),
        Figures("pattern.learned (publish -> heard)", tuple(from_publish)),
    ]


async def store_calls(memory: MemoryClient, calls: int, warmup: int, seed: int) -> Figures:
    rng = random.Random(seed + 5)
    by_type = candidates(seed)

    async def call(_i: int) -> int:
        c = rng.choice(by_type[rng.choice(TASK_TYPES)])
        return await memory.store_workflow(
            task_type=c.task_type,
            workflow_steps=c.steps,
            success=rng.random() < c.rate,
            duration=round(c.duration, 3),
            cost=c.cost,
            request="benchmark workflow run",
        )

    return await timed("store_workflow", call, calls, warmup)


@dataclass(frozen=True, slots=True)
class ClientJob:
    """What the timing client needs (picklable: it may run in another process)."""

    url: str
    stream: str
    calls: int
    warmup: int
    probes: int
    seed: int
    modes: tuple[str, ...] | None = None


async def client_phase(job: ClientJob) -> list[Figures]:
    """Every timed SDK call, in order: the query verbs, store_workflow, the probes."""
    settings = Settings(nats=NatsSettings(url=job.url), stream=StreamSettings(name=job.stream))
    found = []
    async with MemoryClient(settings=settings, namespace=NAMESPACE, ensure_stream=False) as memory:
        for method, (_verb, _note, payload) in payloads(job.seed, job.modes).items():
            figures = await timed(method, sdk_call(memory, method, payload), job.calls, job.warmup)
            found.append(figures)
            print(f"  {method}: p50 {figures.p50:.2f} ms, p99 {figures.pct(0.99):.2f} ms",
                  flush=True)  # fmt: skip
        found.append(await store_calls(memory, job.calls, job.warmup, job.seed))
        await settled(memory)
        found += await probe_learned(memory, job.probes, f"{os.getpid()}")
    return found


def client_process(job: ClientJob) -> list[Figures]:
    configure_logging(level="warning")
    return asyncio.run(client_phase(job))


def row(f: Figures, note: str, handler: Figures | None = None) -> str:
    target = TARGETS_MS.get(f.name)
    seed = SEED_FIGURES_MS.get(f.name)
    verdict = ""
    if target is not None:
        verdict = f"< {target:.0f} ms: {'met' if f.pct(0.99) < target else 'MISSED'}"
    if seed is not None:
        beat = "beaten" if f.mean < seed else "not beaten"
        verdict += ("; " if verdict else "") + f"seed mean {seed} ms: {beat}"
    direct = f"{handler.p50:.2f} / {handler.pct(0.99):.2f}" if handler else "-"
    return (
        f"| `{f.name}` | {note} | {len(f.samples_ms)} | {f.p50:.2f} | {f.pct(0.99):.2f} | "
        f"{f.mean:.2f} | {direct} | {verdict or '-'} |"
    )


async def bench(args: argparse.Namespace, url: str, tmp: Path) -> None:
    stream = StreamSettings(name=args.stream)
    settings = Settings(
        data_dir=tmp / "engine",
        nats=NatsSettings(url=url),
        stream=stream,
        embedder=args.embedder,
        # A fresh engine over a long stream snapshots at once (a full replay in the background):
        # off unless asked for, so the figures are the query path's, not a concurrent replay's.
        snapshot_every_events=50_000 if args.snapshots else 0,
        snapshot_every_s=1_800.0 if args.snapshots else 0.0,
    )
    engine_nc = await nats.connect(url, name="engram-bench-engine")
    stop = asyncio.Event()
    engine_task: asyncio.Task[None] | None = None
    try:
        log = EventLog(engine_nc, stream)
        started = time.perf_counter()
        last = await fill(log, args.memories, args.workflows, args.seed)
        fill_s = time.perf_counter() - started
        total = args.memories + args.workflows
        print(f"filled {total:,} events in {fill_s:.1f} s ({total / fill_s:,.0f}/s)", flush=True)

        engine = Engine(settings, engine_nc, url)
        started = time.perf_counter()
        engine_task = asyncio.create_task(engine.run(stop))
        reached = await catch_up(engine, last, args.max_project_s)
        project_s = time.perf_counter() - started
        per = ", ".join(f"{n} {s:.1f} s" for n, s in sorted(reached.items(), key=lambda x: x[1]))
        print(f"projections caught up in {project_s:.1f} s ({per})", flush=True)

        # The learner's catch-up announcements end the stream; the operational tier shows agent
        # events only, so recent agent activity is what assemble_context would normally find.
        if args.live:
            appended = await log.append_many(generate(args.live, args.live // 10, args.seed,
                                                     batch="live"))  # fmt: skip
            if any(isinstance(r, Exception) for r in appended):
                raise SystemExit("live events: some appends failed")
            await catch_up(engine, (await log.state()).last_sequence, args.max_project_s)

        # The handlers alone first, on the state the client will find (they record nothing).
        direct = direct_dispatcher(engine.set)
        handlers: dict[str, Figures] = {}
        profiles: dict[str, str] = {}
        for method, (verb, _note, payload) in payloads(args.seed, args.mode).items():

            async def handled(i: int, verb: str = verb, payload: Any = payload) -> Any:
                return await direct.handle(verb, payload(i))

            handlers[method] = await timed(method, handled, args.calls, args.warmup)
            if args.profile:
                profiles[method] = await profile_handler(direct, verb, payload, args.calls)

        modes = tuple(args.mode) if args.mode else None
        job = ClientJob(url, args.stream, args.calls, args.warmup, args.probes, args.seed, modes)
        load_before = os.getloadavg()[0]
        with GcPauses() as pauses:
            if args.same_process_client:
                results = await client_phase(job)
            else:
                context = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(1, mp_context=context) as pool:
                    loop = asyncio.get_running_loop()
                    results = await loop.run_in_executor(pool, client_process, job)
        load_after = os.getloadavg()[0]

        notes = {method: note for method, (_v, note, _p) in payloads(args.seed, args.mode).items()}
        notes["store_workflow"] = "SDK publish, waits for the JetStream ack"
        probe_note = f"{args.probes} new patterns, 3rd of 3 runs timed (p99 = max)"
        patterns = engine.set.learner.read(lambda s: len(s.versions))
        where = "in the engine's process" if args.same_process_client else "in its own process"
        print()
        print(f"{args.memories:,} task.executed + {args.workflows:,} workflow.executed in "
              f"namespace {NAMESPACE!r}; embedder {engine.set.vectors.embedder.name}; "
              f"{len(engine.set.vectors.memories):,} memories indexed, {patterns} patterns "
              f"learned; fill {fill_s:.0f} s, projections {project_s:.0f} s; "
              f"client {where}")  # fmt: skip
        print()
        print("| call | workload | calls | p50 ms | p99 ms | mean ms | "
              "handler alone p50 / p99 ms | target |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---|")
        for figures in results:
            note = notes.get(figures.name, probe_note)
            print(row(figures, note, handlers.get(figures.name)))
        gen2 = pauses.pauses_ms
        print(f"\n{os.cpu_count()} CPUs; 1-minute load average {load_before:.2f} before the "
              f"timed calls, {load_after:.2f} after; engine process: {len(gen2)} full GC "
              f"collections during them, longest {max(gen2, default=0.0):.1f} ms")  # fmt: skip
        for method, text in profiles.items():
            print(f"\n### cProfile: {method} handler, {args.calls} in-process calls\n")
            print("```")
            print(text.strip())
            print("```")
    finally:
        stop.set()
        if engine_task is not None:
            await engine_task
        with contextlib.suppress(Exception):
            await engine_nc.jetstream().delete_stream(args.stream)
        await engine_nc.drain()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--memories", type=int, default=100_000,
                        help="task.executed events (100,000)")  # fmt: skip
    parser.add_argument("--workflows", type=int, default=10_000,
                        help="workflow.executed events (10,000)")  # fmt: skip
    parser.add_argument("--embedder", choices=("hashing", "minilm"), default="hashing")
    parser.add_argument("--live", type=int, default=300,
                        help="recent task.executed appended after the catch-up (300)")  # fmt: skip
    parser.add_argument("--calls", type=int, default=500, help="timed calls per verb (500)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed calls first (20)")
    parser.add_argument("--probes", type=int, default=20,
                        help="new patterns timed to pattern.learned (20)")  # fmt: skip
    parser.add_argument("--same-process-client", action="store_true",
                        help="time from the engine's own process and event loop")  # fmt: skip
    parser.add_argument("--snapshots", action="store_true",
                        help="keep the default snapshot policy (off otherwise)")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="cProfile the in-process handlers of each verb")  # fmt: skip
    parser.add_argument("--max-project-s", type=float, default=3_600.0,
                        help="give up when projections are not caught up by then")  # fmt: skip
    parser.add_argument("--nats-url", help="use this (scratch) server instead of an embedded one")
    parser.add_argument("--stream", default="ENGRAM_BENCH_Q", help="stream to (re)create")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--mode", nargs="+", choices=("hybrid", "vector", "lexical"),
                        help="time search_similar in each of these modes (default: one "
                        "search without mode, i.e. the engine's default, hybrid)")  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory(prefix="engram-bench-q-") as tmp:
        if args.nats_url:
            asyncio.run(bench(args, args.nats_url, Path(tmp)))
            return 0
        with EmbeddedServer(Path(tmp) / "nats") as server:
            asyncio.run(bench(args, server.url, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Publishing throughput: the SDK (build, validate, encode, publish) against raw nats-py.

Usage::

    .venv/bin/python bench/bench_publish.py              # embedded nats-server, 100,000 events
    .venv/bin/python bench/bench_publish.py --n 20000 --nats-url nats://127.0.0.1:4222

The SDK side pays what a user pays: typed payload models and ``MemoryClient.event`` (validation),
then one ``MemoryClient.publish_many`` (encoding, publishing, every ack awaited). The raw side
publishes the same bodies with the same headers (``Nats-Msg-Id``, ``Nats-Expected-Stream``) and
the same maximum of acks in flight through ``js.publish_async`` (``wait_stall`` left unset, as
its default: setting it costs a task per message), then awaits every ack. The stream is deleted
and created again before every run, so each starts from an empty stream; each side runs
``--rounds`` times in alternating order and the best run (wall time) counts. The harness's
prepared inputs are frozen out of the cyclic GC before each run; what a run allocates (the SDK's
events, raw's futures) is collected as usual. "client CPU" is this process's CPU time per event:
steadier than wall time on a busy machine.

With ``--nats-url`` the server must be a scratch one: the stream ``--stream`` (subjects
``memory.>``) is deleted and created again, and no other stream there may capture ``memory.>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from engine.client import MemoryClient
from engine.events import (
    DecisionLogged,
    Event,
    EventData,
    SessionEnded,
    SessionStarted,
    TaskExecuted,
    WorkflowExecuted,
)
from engine.logconfig import configure_logging
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import encode_for_append
from engine.stream.append import EXPECTED_STREAM, MSG_ID, message_id

TARGET_RATIO = 0.70

TASK_TYPES = ("code_review", "bugfix", "refactor", "data_analysis", "deployment", "research")
STEPS = (
    "plan", "search_code", "read_files", "write_patch", "run_tests", "lint", "review",
    "summarise", "fetch_docs", "query_db", "deploy", "rollback", "notify",
)  # fmt: skip
SENTENCE = (
    "the agent inspected failing tests in the parser module and found an off by one error "
    "while handling trailing commas so it rewrote the tokenizer loop added regression cases "
    "and verified the build on both python versions before opening a pull request with notes"
)
WORDS = tuple(SENTENCE.split())
ACTORS = ("planner", "coder", "reviewer", "orchestrator")

PayloadSpec = tuple[type[EventData], dict[str, Any], dict[str, Any]]
"""(payload model, payload fields, envelope options): the user's input for one event."""


def _text(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def make_inputs(n: int, seed: int = 7) -> list[PayloadSpec]:
    """``n`` inputs shaped like agent sessions: started, tasks with workflows and decisions, ended.

    About 38% workflow.executed (3-6 steps), 38% task.executed (30-90 word summaries), 13%
    decision.logged and 11% session.started/ended.
    """
    rng = random.Random(seed)
    specs: list[PayloadSpec] = []
    session = 0
    while len(specs) < n:
        session += 1
        sid = f"sess-{session:07d}"
        env = {"session_id": sid}
        specs.append((SessionStarted, {"session_id": sid, "goal": _text(rng, 5, 15)}, env))
        for task in range(rng.randint(3, 5)):
            task_id = f"{sid}-task-{task}"
            task_type = rng.choice(TASK_TYPES)
            success = rng.random() < 0.85
            workflow = {
                "task_type": task_type,
                "request": _text(rng, 8, 25),
                "workflow_steps": rng.sample(STEPS, rng.randint(3, 6)),
                "success": success,
                "duration": round(rng.uniform(0.5, 120.0), 3),
                "cost": round(rng.uniform(0.001, 0.5), 4),
                "metadata": {"model": "gpt-4o-mini", "tokens": rng.randint(200, 9000)},
            }
            specs.append((WorkflowExecuted, workflow, env))
            execution = {
                "task_id": task_id,
                "execution_summary": _text(rng, 30, 90),
                "success": success,
                "task_type": task_type,
                "error_patterns": [] if success else [_text(rng, 3, 6)],
                "metadata": {"attempt": 1, "files": rng.randint(1, 12)},
            }
            specs.append((TaskExecuted, execution, env))
            if rng.random() < 0.35:
                decision = {
                    "decision_id": f"{task_id}-d",
                    "actor": rng.choice(ACTORS),
                    "decision": _text(rng, 4, 10),
                    "rationale": _text(rng, 10, 30),
                    "context": _text(rng, 5, 15),
                    "alternatives": [_text(rng, 2, 5) for _ in range(rng.randint(1, 3))],
                    "task_id": task_id,
                }
                specs.append((DecisionLogged, decision, env))
        specs.append((SessionEnded, {"session_id": sid, "success": rng.random() < 0.8}, env))
    return specs[:n]


def build_events(client: MemoryClient, specs: Sequence[PayloadSpec]) -> list[Event]:
    """What user code does: typed payload models, wrapped by the client (both validate)."""
    return [client.event(model(**fields), **envelope) for model, fields, envelope in specs]


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run: wall time, and the CPU time of this process (the publishing client)."""

    wall_s: float
    cpu_s: float
    build_s: float = 0.0
    """SDK only: building and validating the events (payload models, then envelopes)."""
    encode_s: float = 0.0
    """SDK only: encoding the same events again, timed apart (publish_many encodes inside)."""


async def recreate_stream(client: MemoryClient) -> None:
    with contextlib.suppress(NotFoundError):
        await client.log.js.delete_stream(client.log.stream_name)
    await client.log.ensure()


def settle_heap(freeze: bool) -> None:
    """Collect; then, with ``freeze``, move what lives (the harness's inputs) out of GC's sight.

    Unfrozen, every full collection during a timed run also walks the 100,000 prepared inputs:
    a cost of the harness, not of either publishing path, and it lands mostly on the side that
    keeps more objects alive. What a run allocates is collected as usual either way.
    """
    gc.collect()
    if freeze:
        gc.freeze()


async def stored_count(client: MemoryClient) -> int:
    return (await client.log.state()).messages


async def run_sdk(client: MemoryClient, specs: Sequence[PayloadSpec], freeze: bool) -> Run:
    await recreate_stream(client)
    settle_heap(freeze)
    cpu_start, start = time.process_time(), time.perf_counter()
    events = build_events(client, specs)
    built = time.perf_counter()
    report = await client.publish_many(events)
    done, cpu_done = time.perf_counter(), time.process_time()
    if report.accepted != len(specs):
        first = next(r for r in report.results if isinstance(r, Exception))
        raise SystemExit(f"SDK run: {report.rejected} events rejected, first: {first}")
    if (stored := await stored_count(client)) != len(specs):
        raise SystemExit(f"SDK run: {stored} stored, expected {len(specs)}")
    encode_start = time.perf_counter()
    for event in events:
        encode_for_append(event)
    encode_s = time.perf_counter() - encode_start
    return Run(done - start, cpu_done - cpu_start, built - start, encode_s)


async def run_concurrent(
    client: MemoryClient, specs: Sequence[PayloadSpec], in_flight: int, freeze: bool
) -> Run:
    """Many agents in one process: ``in_flight`` tasks, each publishing one event at a time
    with ``MemoryClient.publish`` (what every typed ``store_*`` verb does: build, validate,
    encode, publish, await its own ack and sequence)."""
    await recreate_stream(client)
    settle_heap(freeze)
    cpu_start, start = time.process_time(), time.perf_counter()
    todo = iter(specs)
    sequences: list[int] = []

    async def agent() -> None:
        for model, fields, envelope in todo:
            sequences.append(await client.publish(client.event(model(**fields), **envelope)))

    await asyncio.gather(*(agent() for _ in range(in_flight)))
    done, cpu_done = time.perf_counter(), time.process_time()
    if len(set(sequences)) != len(specs):
        raise SystemExit(f"concurrent run: {len(set(sequences))} sequences for {len(specs)}")
    if (stored := await stored_count(client)) != len(specs):
        raise SystemExit(f"concurrent run: {stored} stored, expected {len(specs)}")
    return Run(done - start, cpu_done - cpu_start)


async def run_raw(
    client: MemoryClient,
    nc: NatsClient,
    batch: Sequence[tuple[str, str, bytes]],
    max_in_flight: int,
    freeze: bool,
) -> Run:
    await recreate_stream(client)
    stream = client.log.stream_name
    js = nc.jetstream(timeout=5.0, publish_async_max_pending=max_in_flight)
    settle_heap(freeze)
    cpu_start, start = time.process_time(), time.perf_counter()
    futures = [
        await js.publish_async(
            subject,
            body,
            headers={MSG_ID: message_id(event_id, subject), EXPECTED_STREAM: stream},
        )
        for event_id, subject, body in batch
    ]
    await js.publish_async_completed()
    failed = sum(1 for f in futures if f.exception() is not None)
    done, cpu_done = time.perf_counter(), time.process_time()
    if failed:
        raise SystemExit(f"raw run: {failed} publishes failed")
    if (stored := await stored_count(client)) != len(batch):
        raise SystemExit(f"raw run: {stored} stored, expected {len(batch)}")
    return Run(done - start, cpu_done - cpu_start)


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} events/s"


async def bench(args: argparse.Namespace, url: str, data_dir: Path) -> None:
    settings = Settings(
        data_dir=data_dir,
        nats=NatsSettings(url=url),
        stream=StreamSettings(name=args.stream),
        publish_max_in_flight=args.max_in_flight,
    )
    specs = make_inputs(args.n, args.seed)
    # The bench owns its stream: the client may create it (an application leaves that to serve).
    async with MemoryClient(
        settings=settings, agent_id="bench-agent", ensure_stream=True
    ) as client:
        nc = await nats.connect(url, name="engram-bench-raw")
        try:
            # The raw side publishes the very bodies the SDK produces (built once, untimed).
            batch = [encode_for_append(e) for e in build_events(client, specs)]
            mean_body = sum(len(body) for _, _, body in batch) / len(batch)
            gc_note = "frozen out of" if args.gc_freeze else "left to"
            print(
                f"{args.n:,} events, mean body {mean_body:.0f} bytes, "
                f"max in flight {args.max_in_flight:,}, {args.rounds} rounds (best counts), "
                f"inputs {gc_note} the GC"
            )

            runs: dict[str, list[Run]] = {"sdk": [], "raw": [], "concurrent": []}
            sides: dict[str, Callable[[], Awaitable[Run]]] = {
                "sdk": lambda: run_sdk(client, specs, args.gc_freeze),
                "raw": lambda: run_raw(client, nc, batch, args.max_in_flight, args.gc_freeze),
                "concurrent": lambda: run_concurrent(
                    client, specs, args.max_in_flight, args.gc_freeze
                ),
            }
            for round_no in range(args.rounds):
                order = ["sdk", "raw"] if round_no % 2 == 0 else ["raw", "sdk"]
                if args.concurrent:
                    order.insert(1, "concurrent")
                for side in order:
                    run = await sides[side]()
                    runs[side].append(run)
                    print(
                        f"  round {round_no + 1} {side}  {_rate(args.n, run.wall_s)}  "
                        f"(client CPU {run.cpu_s * 1e6 / args.n:5.1f} us/event)"
                    )

            if args.profile:
                await recreate_stream(client)
                profiler = cProfile.Profile()
                profiler.enable()
                await client.publish_many(build_events(client, specs))
                profiler.disable()
                pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
        finally:
            await nc.drain()
            with contextlib.suppress(NotFoundError):
                await client.log.js.delete_stream(args.stream)

    concurrent = min(runs["concurrent"], key=_wall) if runs["concurrent"] else None
    report(args.n, min(runs["sdk"], key=_wall), min(runs["raw"], key=_wall), concurrent)


def _wall(run: Run) -> float:
    return run.wall_s


def report(n: int, sdk: Run, raw: Run, concurrent: Run | None = None) -> None:
    us = 1e6 / n
    print()
    sides = [("raw nats-py publish_async", raw), ("SDK publish_many", sdk)]
    if concurrent is not None:
        sides.append(("SDK publish, concurrent", concurrent))
    for label, run in sides:
        print(f"{label:<27}{_rate(n, run.wall_s)}   client CPU {run.cpu_s * us:5.1f} us/event")
    ratio = raw.wall_s / sdk.wall_s
    print(f"{'SDK / raw':<27}{ratio:10.0%}   (target >= {TARGET_RATIO:.0%})")
    if concurrent is not None:
        ratio = raw.wall_s / concurrent.wall_s
        print(f"{'concurrent / raw':<27}{ratio:10.0%}   (target >= {TARGET_RATIO:.0%})")
    print("SDK time split (best run):")
    publishing_s = sdk.wall_s - sdk.build_s - sdk.encode_s
    for label, seconds in (
        ("build + validate events", sdk.build_s),
        ("encode (timed apart)", sdk.encode_s),
        ("publish + await acks", publishing_s),
    ):
        share = seconds / sdk.wall_s
        print(f"  {label:<26}{seconds:7.3f} s  {seconds * us:6.1f} us/event  {share:4.0%}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=100_000, help="events per run (100,000)")
    parser.add_argument("--nats-url", help="use this (scratch) server instead of an embedded one")
    parser.add_argument("--stream", default="ENGRAM_BENCH", help="stream to (re)create")
    parser.add_argument("--max-in-flight", type=int, default=Settings().publish_max_in_flight)
    parser.add_argument("--rounds", type=int, default=2, help="runs per side, best counts (2)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--concurrent", action="store_true",
        help="also time single publishes from --max-in-flight concurrent tasks (many agents)",
    )  # fmt: skip
    parser.add_argument(
        "--no-gc-freeze", dest="gc_freeze", action="store_false",
        help="leave the prepared inputs to the cyclic GC during timed runs (see settle_heap)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", type=int, default=0, metavar="LINES",
        help="afterwards, cProfile one SDK run and print the top LINES functions by own time",
    )  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory(prefix="engram-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        if args.nats_url:
            asyncio.run(bench(args, args.nats_url, data_dir))
            return 0
        with EmbeddedServer(Path(tmp) / "nats") as server:
            asyncio.run(bench(args, server.url, data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Engines that split the tenants: total projection throughput of four engines each owning a
quarter of the namespaces against one engine owning them all, on the same stream, same run;
and query latency for a namespace at the end of the list.

Usage::

    .venv/bin/python bench/bench_tenants.py                          # 1,000 x 200, both setups
    .venv/bin/python bench/bench_tenants.py --namespaces 200 --events 100   # a quicker run
    .venv/bin/python bench/bench_tenants.py --engines 2 --setups split  # only the split setup

One run starts an embedded nats-server (or uses ``--nats-url``: a scratch server, the stream
``--stream`` is deleted and created again), then for each setup fills the stream afresh (deleted
and created again, so no setup finds the other's derived events) with the same ``--events``
events for each of ``--namespaces`` namespaces (``ns-0000`` ...; v2 subjects, interleaved: every
namespace's first event, then every one's second ...; three in four ``workflow.executed`` of
four task types, one in four ``task.executed`` with a summary), and runs it:

- ``one``: ``engram serve`` owning every namespace;
- ``split``: ``--engines`` processes ``engram serve --namespaces <a contiguous share>``;

each engine a process of its own (so they use every core), each on a fresh data directory,
snapshots off. The clock runs from starting the processes until every engine's ``status``
(asked on ``engram.query.<one of its namespaces>.status``; the operator subject for ``one``)
shows lag 0 for every projection; events/s = filled events / that time (and / the time after
the first engine answered its status, start-up left out). The engines also apply what they
publish meanwhile (pattern.learned, session.compacted: "derived" in the table), so lag 0 means
the learners' announcements are in and read back too. Then ``--queries``
searches and as many ``workflow_metrics`` for the last namespace (``ns-0999`` by default),
one at a time through the SDK, give p50 / p99. The setups run one after the other (never
together: they would share the cores), then the engines are stopped and their consumers
deleted. The load average is printed before and after each setup.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from engine import MemoryClient
from engine.connection import connect
from engine.errors import EngramError
from engine.events import Event, TaskExecuted, WorkflowExecuted, make_event
from engine.query_client import query_remote
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.cli.serve import serve_command

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class SetupResult:
    setup: str
    engines: int
    events: int
    seconds: float
    first_answer_s: float
    search_ms: tuple[float, float]
    metrics_ms: tuple[float, float]
    load_before: float
    load_after: float
    projections_s: dict[str, float]
    """Per projection, when the last engine's reached lag 0 for good (seconds from the
    start; a projection caught up before the learners' announcements arrive is behind again)."""
    fill_s: float = 0.0
    derived: int = 0
    """Events the engines published while catching up (announcements)."""

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    @property
    def projecting_events_per_second(self) -> float:
        """From the first status answer (the engines are up) to lag 0: start-up left out."""
        span = self.seconds - self.first_answer_s
        return self.events / span if span >= 1.0 else 0.0  # 0: too short to tell


def namespace_names(count: int) -> list[str]:
    return [f"ns-{i:04d}" for i in range(count)]


def shares(names: Sequence[str], engines: int) -> list[list[str]]:
    """``engines`` contiguous shares of ``names``, as even as can be."""
    size, extra = divmod(len(names), engines)
    out, start = [], 0
    for i in range(engines):
        end = start + size + (1 if i < extra else 0)
        out.append(list(names[start:end]))
        start = end
    return out


def events_of(namespace: str, index: int) -> Event:
    """The ``index``-th event of ``namespace``: 3 in 4 workflows, 1 in 4 task executions."""
    task_type = f"task_{index % 4}"
    if index % 4 == 3:
        return make_event(
            TaskExecuted(
                task_id=f"{namespace}-t{index}",
                execution_summary=f"{namespace} ran {task_type} step {index} on host {index % 7}",
                success=index % 5 != 0,
                task_type=task_type,
            ),
            namespace=namespace,
            agent_id="bench",
        )
    return make_event(
        WorkflowExecuted(
            task_type=task_type,
            workflow_steps=["plan", f"do-{index % 3}", "check"],
            success=index % 5 != 0,
            duration=1.0 + index % 3,
        ),
        namespace=namespace,
        agent_id="bench",
    )


async def fill(log: EventLog, names: Sequence[str], per_namespace: int) -> float:
    """Append every namespace's events, interleaved; returns the seconds it took."""
    began = time.monotonic()
    chunk: list[Event] = []
    for index in range(per_namespace):
        for namespace in names:
            chunk.append(events_of(namespace, index))
            if len(chunk) >= 5_000:
                await log.append_many(chunk)
                chunk = []
    if chunk:
        await log.append_many(chunk)
    return time.monotonic() - began


def serve(settings: Settings, data_dir: Path, namespaces: Sequence[str] | None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "ENGRAM_SNAPSHOT_EVERY_EVENTS": "0",  # a snapshot would replay the history again
            "ENGRAM_SNAPSHOT_EVERY_S": "0",
            "ENGRAM_LOG_LEVEL": "warning",
        }
    )
    argv = serve_command(str(settings.nats.url), settings.stream.name, data_dir, namespaces)
    return asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )


async def status_of(nc: NatsClient, settings: Settings, namespace: str | None) -> dict[str, Any]:
    service = settings.stream.service
    if namespace is None:
        subject = service.operator_query("status")
    else:
        subject = service.tenant_query(namespace, "status")
    return await query_remote(nc, "status", {}, timeout_s=5.0, subject=subject)


async def lags(nc: NatsClient, settings: Settings, probe: str | None) -> dict[str, int] | None:
    """Each projection's lag in the status of the engine owning ``probe`` (None: every
    namespace); None while no engine answers."""
    try:
        status = await status_of(nc, settings, probe)
    except EngramError:
        return None
    return {name: int(p["lag"]) for name, p in (status.get("projections") or {}).items()}


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered), p99


async def query_latency(
    settings: Settings, namespace: str, count: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    """p50 / p99 ms of ``search_similar`` and of ``workflow_metrics`` for ``namespace``."""
    search: list[float] = []
    metrics: list[float] = []
    async with MemoryClient(settings=settings, namespace=namespace) as client:
        for i in range(count):
            began = time.perf_counter()
            await client.search_similar(f"{namespace} ran task_{i % 4} on host {i % 7}", top_k=5)
            search.append((time.perf_counter() - began) * 1_000)
            began = time.perf_counter()
            await client.workflow_metrics()
            metrics.append((time.perf_counter() - began) * 1_000)
    return percentiles(search), percentiles(metrics)


async def run_setup(
    nc: NatsClient,
    settings: Settings,
    workdir: Path,
    setup: str,
    owned: list[list[str]] | None,
    last: str,
    queries: int,
    events: int,
    verbose: bool = False,
) -> SetupResult:
    """Start the engines, time them to lag 0, measure queries, stop them."""
    load_before = os.getloadavg()[0]
    sets: list[list[str] | None] = [None] if owned is None else list(owned)
    began = time.monotonic()
    processes = [
        await serve(settings, workdir / f"{setup}-{i}", names) for i, names in enumerate(sets)
    ]
    probes = [None if names is None else names[-1] for names in sets]
    first_answer: float | None = None
    reached: list[dict[str, float]] = [{} for _ in sets]
    shown = 0.0
    try:
        pending = set(range(len(sets)))
        while pending:
            for i in sorted(pending):
                lag = await lags(nc, settings, probes[i])
                if lag is None:
                    continue
                now = time.monotonic() - began
                first_answer = now if first_answer is None else first_answer
                for name, behind in lag.items():
                    if behind == 0:
                        reached[i].setdefault(name, now)
                    else:  # behind again (the announcements arrived): not caught up yet
                        reached[i].pop(name, None)
                if lag and all(behind == 0 for behind in lag.values()):
                    pending.discard(i)
                if verbose and now - shown >= 10:
                    shown = now
                    state = (await nc.jetstream().stream_info(settings.stream.name)).state
                    print(f"  {now:6.1f}s engine {i}: last {state.last_seq} lag {lag}", flush=True)
            if any(p.returncode is not None for p in processes):
                raise SystemExit(f"an engine of setup {setup} exited")
            if pending:
                await asyncio.sleep(0.5)
        seconds = time.monotonic() - began
        at_lag_0 = (await nc.jetstream().stream_info(settings.stream.name)).state.last_seq
        search, metrics = await query_latency(settings, last, queries)
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()
        js = nc.jetstream()
        for name in [c.name for c in await js.consumers_info(settings.stream.name)]:
            with contextlib.suppress(Exception):
                await js.delete_consumer(settings.stream.name, name)
    return SetupResult(
        setup,
        len(sets),
        events,
        seconds,
        first_answer or 0.0,
        search,
        metrics,
        load_before,
        os.getloadavg()[0],
        {name: max(r[name] for r in reached) for name in sorted(reached[0])},
        derived=at_lag_0 - events,
    )


def report(results: list[SetupResult], args: argparse.Namespace, fill_s: float) -> str:
    total = args.namespaces * args.events
    lines = [
        f"{args.namespaces:,} namespaces x {args.events} events = {total:,} events per setup "
        f"(each filled in {fill_s:.1f} s or less); queries for "
        f"{namespace_names(args.namespaces)[-1]}, {args.queries} of each",
        "",
        "| setup | engines | derived | caught up s | events/s | first status s | events/s after it "
        "| search p50 / p99 ms | workflow_metrics p50 / p99 ms | load avg before -> after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.setup} | {r.engines} | {r.derived:,} | {r.seconds:.1f} | "
            f"{r.events_per_second:,.0f} | "
            f"{r.first_answer_s:.1f} | {r.projecting_events_per_second:,.0f} | "
            f"{r.search_ms[0]:.2f} / {r.search_ms[1]:.2f} | "
            f"{r.metrics_ms[0]:.2f} / {r.metrics_ms[1]:.2f} | "
            f"{r.load_before:.2f} -> {r.load_after:.2f} |"
        )
    lines.append("")
    lines.append("Per projection, seconds until the last engine's was at lag 0 for good:")
    lines.append("")
    for r in results:
        each = ", ".join(f"{name} {s:.1f}" for name, s in r.projections_s.items())
        lines.append(f"- {r.setup}: {each}")
    if len(results) == 2 and results[0].seconds:
        lines.append("")
        ratio = results[1].events_per_second / results[0].events_per_second
        lines.append(f"{results[1].setup} / {results[0].setup} throughput: {ratio:.2f}x")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    names = namespace_names(args.namespaces)
    with tempfile.TemporaryDirectory(prefix="bench-tenants-") as tmp:
        workdir = Path(tmp)
        server: EmbeddedServer | None = None
        url = args.nats_url
        if url is None:
            server = EmbeddedServer(workdir / "nats")
            server.start()
            url = server.url
        try:
            settings = Settings(
                data_dir=workdir / "client",
                nats=NatsSettings(url=url),
                stream=StreamSettings(name=args.stream),
            )
            nc = await connect(NatsSettings(), url)
            try:
                js = nc.jetstream()
                results = []
                for setup in args.setups.split(","):
                    for name in (args.stream, args.stream + "_DLQ"):
                        with contextlib.suppress(Exception):
                            await js.delete_stream(name)
                    log = EventLog(nc, settings.stream)
                    await log.ensure()
                    fill_s = await fill(log, names, args.events)
                    total = (await log.state()).last_sequence
                    print(f"{setup}: filled {total:,} events in {fill_s:.1f} s", flush=True)
                    owned = None if setup == "one" else shares(names, args.engines)
                    result = await run_setup(
                        nc,
                        settings,
                        workdir,
                        setup,
                        owned,
                        names[-1],
                        args.queries,
                        total,
                        args.verbose,
                    )
                    result = dataclasses.replace(result, fill_s=fill_s)
                    print(
                        f"{setup}: {result.engines} engine(s) caught up in {result.seconds:.1f} s "
                        f"({result.events_per_second:,.0f} events/s, {result.derived:,} derived)",
                        flush=True,
                    )
                    results.append(result)
                print()
                print(report(results, args, max(r.fill_s for r in results)))
            finally:
                await nc.drain()
        finally:
            if server is not None:
                server.stop()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespaces", type=int, default=1_000, help="tenants (default 1,000)")
    parser.add_argument("--events", type=int, default=200, help="events per namespace (200)")
    parser.add_argument("--engines", type=int, default=4, help="engines of the split setup (4)")
    parser.add_argument("--queries", type=int, default=200, help="queries of each verb (200)")
    parser.add_argument(
        "--setups", default="one,split", help="which setups, in order: one, split (both)"
    )
    parser.add_argument("--nats-url", help="a scratch nats-server (default: an embedded one)")
    parser.add_argument("--stream", default="BENCH_TENANTS")
    parser.add_argument("--verbose", action="store_true", help="print lags every 10 s")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))

"""What the Prometheus instrumentation of the runner costs on the hot path.

Usage::

    .venv/bin/python bench/bench_metrics_overhead.py                 # 20,000 events, 5 rounds
    .venv/bin/python bench/bench_metrics_overhead.py --n 50000 --batch-size 100

(1) micro: the observer's work per batch alone (two ``perf_counter`` reads and
    ``EngineMetrics.batch_applied``: two counters, two histograms), in nanoseconds, and per
    query request (``EngineMetrics.answered``);
(2) end to end, on an embedded nats-server holding ``--n`` events shaped like agent sessions:
    a ``ProjectionRunner`` from the start of the stream to its last sequence, without an
    observer and with the Prometheus one, alternating, ``--rounds`` times each, over two
    projections: a no-op one (the worst case: nothing but the bus and the runner, so the
    instrumentation's share is the largest) and the live tables projection (DuckDB).
    Reported: the median seconds of each and the ratio instrumented / plain.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
from bench_projection import generate_events
from nats.aio.client import Client as NatsClient

from consumers.runner import ProjectionRunner, RunnerSettings
from engine.server import EmbeddedServer
from engine.settings import StreamSettings
from engine.stream import EventLog
from engram.observability.prometheus import EngineMetrics
from projections.records import DeadLetter, SequencedEvent
from projections.tables import TablesProjection, TableStore


class NullProjection:
    """A projection that keeps only its checkpoint: the runner's own cost, nothing else."""

    name = "null"

    def __init__(self) -> None:
        self._checkpoint = 0

    def checkpoint(self) -> int:
        return self._checkpoint

    def apply(
        self, events: Sequence[SequencedEvent], dead: Sequence[DeadLetter], last: int
    ) -> None:
        self._checkpoint = max(self._checkpoint, last)

    def close(self) -> None:
        pass


def micro(calls: int = 200_000) -> float:
    """Nanoseconds of instrumentation per batch (what ``_handle`` adds when observed)."""
    metrics = EngineMetrics(_StubEngine())  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(calls):
        arrived = time.perf_counter()
        applied = time.perf_counter()
        metrics.batch_applied("tables", 2_000, applied - arrived, time.perf_counter() - arrived)
    return (time.perf_counter() - started) / calls * 1e9


def micro_query(calls: int = 200_000) -> float:
    """Nanoseconds of instrumentation per query request (the service's timing and
    ``EngineMetrics.answered``: a counter and a histogram)."""
    metrics = EngineMetrics(_StubEngine())  # type: ignore[arg-type]
    started = time.perf_counter()
    for _ in range(calls):
        asked = time.perf_counter()
        metrics.answered("search", time.perf_counter() - asked, None)
    return (time.perf_counter() - started) / calls * 1e9


class _StubEngine:
    """EngineMetrics only keeps its engine for scrape time; the micro run never scrapes."""


async def _fill(nc: NatsClient, stream: StreamSettings, n: int) -> int:
    log = EventLog(nc, stream)
    await log.ensure()
    events = generate_events()
    batch = [next(events) for _ in range(n)]
    await log.append_many(batch)
    return (await log.state()).last_sequence


async def _run(
    nc: NatsClient,
    stream: StreamSettings,
    projection: Any,
    last: int,
    observer: EngineMetrics | None,
    settings: RunnerSettings,
    durable: str,
) -> float:
    runner = ProjectionRunner(
        nc.jetstream(),
        stream.name,
        projection,
        durable=durable,
        settings=settings,
        observer=observer,
    )
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(runner.run(stop))
    while runner.checkpoint < last:
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    await nc.jetstream().delete_consumer(stream.name, durable)
    return elapsed


async def end_to_end(n: int, rounds: int, batch_size: int) -> dict[str, dict[str, float]]:
    settings = RunnerSettings(batch_size=batch_size, max_wait_s=0.05)
    stream = StreamSettings(name="BENCH_METRICS")
    results: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(Path(tmp) / "nats") as server:
        nc = await nats.connect(server.url)
        last = await _fill(nc, stream, n)
        metrics = EngineMetrics(_StubEngine())  # type: ignore[arg-type]
        runs = 0
        for name in ("null", "tables"):
            times: dict[str, list[float]] = {"plain": [], "prometheus": []}
            for round_ in range(rounds):
                # ABBA: which mode runs first alternates, so a drift of the server's state
                # (its consumers, its caches) does not count as either mode's cost.
                order = ("plain", "prometheus") if round_ % 2 == 0 else ("prometheus", "plain")
                for mode in order:
                    runs += 1
                    store = None
                    if name == "null":
                        projection: Any = NullProjection()
                    else:
                        store = TableStore.open(Path(tmp) / f"db{runs}")
                        projection = TablesProjection(store)
                    observer = metrics if mode == "prometheus" else None
                    seconds = await _run(
                        nc, stream, projection, last, observer, settings, f"bench-{runs}"
                    )
                    times[mode].append(seconds)
                    if store is not None:
                        store.close()
            results[name] = times
        await nc.close()
    return {
        name: {
            "plain_s": statistics.median(t["plain"]),
            "prometheus_s": statistics.median(t["prometheus"]),
            "ratio": statistics.median(t["prometheus"]) / statistics.median(t["plain"]),
            "plain_spread": max(t["plain"]) - min(t["plain"]),
            "prometheus_spread": max(t["prometheus"]) - min(t["prometheus"]),
        }
        for name, t in results.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=2_000)
    args = parser.parse_args()
    per_batch_ns = micro()
    print(f"micro: {per_batch_ns:,.0f} ns of instrumentation per batch")
    print(f"micro: {micro_query():,.0f} ns of instrumentation per query request")
    found = asyncio.run(end_to_end(args.n, args.rounds, args.batch_size))
    batches = -(-args.n // args.batch_size)
    for name, figures in found.items():
        share = per_batch_ns * batches / 1e9 / figures["plain_s"]
        print(
            f"{name:>7}: plain {figures['plain_s']:.3f} s (spread {figures['plain_spread']:.3f}),"
            f" prometheus {figures['prometheus_s']:.3f} s (spread "
            f"{figures['prometheus_spread']:.3f}), ratio {figures['ratio']:.3f} "
            f"({args.n:,} events, batch {args.batch_size}, ~{batches} batches; "
            f"the micro cost is {share:.4%} of it)"
        )


if __name__ == "__main__":
    main()

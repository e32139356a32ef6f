"""What read-your-writes costs: a search right after a store, with and without ``min_sequence``.

Usage::

    .venv/bin/python bench/bench_read_your_writes.py              # 300 store+search pairs
    .venv/bin/python bench/bench_read_your_writes.py --pairs 1000 --background 2000

One run, on an embedded nats-server in a temporary directory and an in-process engine with the
settings ``engram serve`` uses (default ``RunnerSettings``): ``--background`` task.executed
events first (so the indexes are not empty), then three phases of ``--pairs`` iterations each,
from one ``MemoryClient`` in the same process:

- ``search only``: a search for a memory stored before the phase (the baseline latency);
- ``eventual``: store a memory with a unique word, then search for it at once (the default
  client): how often the search misses the write, and its latency;
- ``read_your_writes``: the same with ``MemoryClient(consistency="read_your_writes")``: every
  search should find its write; its latency includes waiting for the write's batch.

Printed: found / pairs, p50 and p99 of the search call (ms), and the ratio of each p50 to the
baseline's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from engine_harness import engine_on_embedded_server

from engine import MemoryClient
from engine.logconfig import configure_logging


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _phase(
    memory: MemoryClient, pairs: int, tag: str, store: bool
) -> tuple[int, list[float]]:
    found, took = 0, []
    for i in range(pairs):
        word = f"{tag}{i}x"
        if store:
            await memory.store_execution(
                task_id=f"{tag}-{i}", execution_summary=f"rotated the {word} keys", success=True
            )
        started = time.perf_counter()
        hits = await memory.search_similar(word if store else "background work", mode="lexical")
        took.append(time.perf_counter() - started)
        found += bool(hits) and (not store or hits[0].task_id == f"{tag}-{i}")
    return found, took


async def run(pairs: int, background: int) -> None:
    configure_logging(level="warning")
    async with (
        engine_on_embedded_server("BENCH_RYW") as (settings, engine),
        MemoryClient(settings=settings) as eventual,
        MemoryClient(settings=settings, consistency="read_your_writes") as strict,
    ):
        for i in range(background):
            await eventual.store_execution(
                task_id=f"bg-{i}", execution_summary=f"background work {i}", success=True
            )
        while engine.dispatcher is None:
            await asyncio.sleep(0.05)
        await eventual.search_similar("warm up", min_sequence=eventual.last_written)
        rows = []
        for name, client, store in (
            ("search only", eventual, False),
            ("eventual", eventual, True),
            ("read_your_writes", strict, True),
        ):
            found, took = await _phase(client, pairs, name[:3], store)
            rows.append((name, found, took))
    base = statistics.median(rows[0][2])
    print(f"{pairs} pairs, {background} memories before; search latency from one client")
    print(f"{'phase':<18} {'found':>9} {'p50 ms':>8} {'p99 ms':>8} {'p50/base':>9}")
    for name, found, took in rows:
        p50 = statistics.median(took)
        print(
            f"{name:<18} {found:>4}/{pairs:<4} {1000 * p50:>8.2f} {_ms(took, 0.99):>8.2f} "
            f"{p50 / base:>8.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--background", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.pairs, args.background))


if __name__ == "__main__":
    main()

"""The LangGraph store end to end: EngramStore's search, get and put over NATS, for N items.

Usage::

    .venv/bin/python bench/bench_langgraph_store.py                 # 1,000 and 10,000 items
    .venv/bin/python bench/bench_langgraph_store.py --items 1000 --calls 100

For each size, on an embedded nats-server in a temporary directory and an in-process engine
(default ``RunnerSettings``, as ``engram serve``; snapshots off), one ``EngramStore`` puts N
items under ``("users", "u<i % 50>")`` (values as in ``bench_item_search.py``) in batches of
500 ``PutOp``, then times ``--calls`` sequential calls of each, from the same process:

- ``asearch(("users",))``: newest first, limit 10;
- ``asearch(("users",), filter=...)``;
- ``asearch(("users",), query=...)`` (the first, cold, is reported apart: it embeds every
  candidate), and with a filter too;
- ``aget`` of one key;
- ``aput`` then ``aget`` of the same key at once (read-your-writes: the get waits for the put's
  batch to be applied).

p50 and p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench_item_search import KINDS, QUERIES, _text
from engine_harness import engine_on_embedded_server
from langgraph.store.base import PutOp

from engine.errors import EngineUnavailableError
from engine.logconfig import configure_logging
from engram.langgraph_store import EngramStore


async def _time(call: Callable[[], Awaitable[Any]], calls: int) -> tuple[float, float]:
    took = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        took.append(1000 * (time.perf_counter() - started))
    took.sort()
    return statistics.median(took), took[min(len(took) - 1, int(0.99 * len(took)))]


async def run(count: int, calls: int) -> None:
    configure_logging(level="warning")
    async with engine_on_embedded_server("BENCH_ITEMS") as (settings, _engine):
        rng = random.Random(7)
        async with EngramStore.connect(settings=settings, namespace="bench") as store:
            started = time.perf_counter()
            ops = [
                PutOp(
                    ("users", f"u{i % 50}"),
                    f"k{i}",
                    {"text": _text(rng), "kind": rng.choice(KINDS), "n": rng.randrange(100)},
                )
                for i in range(count)
            ]
            for at in range(0, count, 500):
                await store.abatch(ops[at : at + 500])
            while True:  # until the engine's query service answers
                try:
                    await store.aget(("users", "u0"), "k0")  # waits for every put
                    break
                except EngineUnavailableError:
                    await asyncio.sleep(0.1)
            fill = time.perf_counter() - started
            where = {"kind": "note", "n": {"$gte": 50}}
            started = time.perf_counter()
            await store.asearch(("users",), query=QUERIES[0])
            cold = 1000 * (time.perf_counter() - started)
            queries = iter(QUERIES * calls * 2)
            n = iter(range(10**9))

            async def put_get() -> None:
                key = f"new{next(n)}"
                await store.aput(("users", "fresh"), key, {"text": "just written"})
                assert await store.aget(("users", "fresh"), key) is not None

            rows = {
                "search, newest first": await _time(lambda: store.asearch(("users",)), calls),
                "search, filter": await _time(
                    lambda: store.asearch(("users",), filter=where), calls
                ),
                "search, query (warm)": await _time(
                    lambda: store.asearch(("users",), query=next(queries)), calls
                ),
                "search, query + filter (warm)": await _time(
                    lambda: store.asearch(("users",), query=next(queries), filter=where),
                    calls,
                ),
                "get one key": await _time(lambda: store.aget(("users", "u3"), "k3"), calls),
                "put then get at once": await _time(put_get, calls),
            }
    print(f"{count:,} items: put in {fill:.1f} s ({count / fill:,.0f} items/s, batches of 500)")
    print(f"  {'search, query (cold: embeds every candidate)':44s} {cold:8.1f} ms (one call)")
    for name, (p50, p99) in rows.items():
        print(f"  {name:44s} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--calls", type=int, default=100)
    args = parser.parse_args()
    for count in args.items:
        asyncio.run(run(count, args.calls))


if __name__ == "__main__":
    main()

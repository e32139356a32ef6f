"""What an MCP client sees: store then search at once over ``engram mcp`` (stdio), with the
server's default read-your-writes and with ``--consistency eventual``.

Usage::

    .venv/bin/python bench/bench_mcp.py                 # 100 store+search pairs per mode
    .venv/bin/python bench/bench_mcp.py --pairs 300

One run, on an embedded nats-server in a temporary directory and an in-process engine
(default ``RunnerSettings``, as ``engram serve``): ``--background`` memories first, then for each
mode one ``engram mcp`` subprocess started by the official SDK's client, and ``--pairs``
iterations of store_execution (a unique word) then search_memory for that word (lexical).
Printed per mode: found / pairs, p50 and p99 of the search_memory call and of the
store_execution call (ms, client side: JSON-RPC over stdio included).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import mcp_types as types
import nats
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from engine import MemoryClient
from engine.logconfig import configure_logging
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.app import Engine

REPO = Path(__file__).resolve().parent.parent


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _mode(
    settings: Settings, tmp: Path, mode: str, pairs: int
) -> tuple[int, list[float], list[float]]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engram.cli.main", "mcp", "--consistency", mode],
        env={
            "PYTHONPATH": str(REPO),
            "ENGRAM_NATS_URL": str(settings.nats.url),
            "ENGRAM_STREAM__NAME": settings.stream.name,
            "ENGRAM_DATA_DIR": str(tmp / "mcp"),
        },
    )
    found, stores, searches = 0, [], []
    with (tmp / f"{mode}.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog), cache=None) as client:
            for i in range(pairs):
                word = f"{mode[:3]}{i}x"
                started = time.perf_counter()
                stored = await client.call_tool(
                    "store_execution",
                    {"task_id": f"{mode}-{i}", "execution_summary": f"rotated the {word} keys",
                     "success": True},
                )  # fmt: skip
                stores.append(time.perf_counter() - started)
                assert not stored.is_error
                started = time.perf_counter()
                result = await client.call_tool("search_memory", {"text": word, "mode": "lexical"})
                searches.append(time.perf_counter() - started)
                hits = result.structured_content["hits"] if result.structured_content else []
                found += bool(hits) and hits[0]["task_id"] == f"{mode}-{i}"
                assert all(isinstance(c, types.TextContent) for c in result.content)
    return found, stores, searches


async def run(pairs: int, background: int) -> None:
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        server = EmbeddedServer(tmp / "nats")
        server.start()
        try:
            settings = Settings(
                data_dir=tmp / "data",
                nats=NatsSettings(url=server.url),
                stream=StreamSettings(name="BENCH_MCP"),
                snapshot_every_events=0,
                snapshot_every_s=0,
            )
            nc = await nats.connect(server.url)
            await EventLog(nc, settings.stream).ensure()
            engine = Engine(settings, nc, server.url)
            stop = asyncio.Event()
            task = asyncio.create_task(engine.run(stop))
            async with MemoryClient(settings=settings) as memory:
                for i in range(background):
                    await memory.store_execution(
                        task_id=f"bg-{i}", execution_summary=f"background work {i}", success=True
                    )
                while engine.dispatcher is None:
                    await asyncio.sleep(0.05)
                await memory.search_similar("warm up", min_sequence=memory.last_written)
            rows = [(mode, *await _mode(settings, tmp, mode, pairs))
                    for mode in ("eventual", "read_your_writes")]  # fmt: skip
            stop.set()
            await task
            await nc.close()
        finally:
            server.stop()
    print(f"{pairs} store+search pairs per mode over engram mcp (stdio), {background} memories")
    print(f"{'mode':<18} {'found':>9} {'search p50':>11} {'p99':>8} {'store p50':>10} {'p99':>8}")
    for mode, found, stores, searches in rows:
        print(
            f"{mode:<18} {found:>4}/{pairs:<4} {1000 * statistics.median(searches):>11.2f} "
            f"{_ms(searches, 0.99):>8.2f} {1000 * statistics.median(stores):>10.2f} "
            f"{_ms(stores, 0.99):>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--background", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(run(args.pairs, args.background))


if __name__ == "__main__":
    main()

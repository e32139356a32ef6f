"""The HTTP API against the SDK over NATS, in the same run: store and search latency (p50, p99)
and throughput.

Usage::

    .venv/bin/python bench/bench_http.py                   # 1,000 calls each, 2,000 memories
    .venv/bin/python bench/bench_http.py --calls 3000 --concurrency 32 --background 5000

Three processes, as deployed: an embedded nats-server, ``engram serve`` (the engine) and
``engram http`` (the gateway), each started here on a temporary directory; this process is the
client, with one ``MemoryClient`` (the SDK, over NATS) and one ``httpx.AsyncClient`` (HTTP/1.1,
keep-alive, through the gateway). ``--background`` task.executed events are stored first (so
search has an index to search), then:

- latency: ``--calls`` sequential calls of each kind, SDK and HTTP alternating call by call (so
  both see the same machine): store = ``store_execution`` / ``POST .../executions`` (answers
  once JetStream acknowledged it); search = ``search_similar`` / ``POST .../query/search``
  (hybrid, top 5, a text that matches);
- throughput: ``--calls`` calls of each kind with ``--concurrency`` in flight.

Printed: p50 and p99 (ms) and calls per second of each, and the HTTP/SDK ratio of each. The
issue's target: HTTP search p99 within 2x of the SDK's. The gateway's uvicorn parses HTTP with
httptools when it can import it, else h11 (pure Python, slower): ``PYTHONPATH`` is passed on to
the gateway, so ``PYTHONPATH=/path/with/httptools`` measures that.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from engine import MemoryClient
from engine.logconfig import configure_logging
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engram.cli.serve import serve_command
from engram.http.keys import KeyFile

STREAM = "BENCH_HTTP"
NS = "bench"
WORDS = ["deploy", "rollback", "billing", "kafka", "latency", "cache", "schema", "auth"]


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def _process(argv: list[str], log: Path) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    given = os.environ.get("PYTHONPATH")  # passed on: e.g. where httptools is (see --help)
    repo = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = repo if not given else repo + os.pathsep + given
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            with contextlib.suppress(Exception):
                if await check():
                    return
            await asyncio.sleep(0.1)
    raise RuntimeError(what)  # pragma: no cover


class Callers:
    """One call of each kind, through the SDK and through HTTP."""

    def __init__(self, sdk: MemoryClient, http: httpx.AsyncClient) -> None:
        self.sdk = sdk
        self.http = http
        self.n = 0

    def _text(self) -> str:
        self.n += 1
        return f"{WORDS[self.n % len(WORDS)]} incident {self.n} fixed by restarting the worker"

    async def sdk_store(self) -> None:
        await self.sdk.store_execution(
            task_id=f"s{self.n}", execution_summary=self._text(), success=True
        )

    async def http_store(self) -> None:
        reply = await self.http.post(
            f"/v1/namespaces/{NS}/executions",
            json={"task_id": f"h{self.n}", "execution_summary": self._text(), "success": True},
        )
        if reply.status_code != 201:
            raise RuntimeError(reply.text)

    async def sdk_search(self) -> None:
        self.n += 1
        await self.sdk.search_similar(f"{WORDS[self.n % len(WORDS)]} incident worker", top_k=5)

    async def http_search(self) -> None:
        self.n += 1
        reply = await self.http.post(
            f"/v1/namespaces/{NS}/query/search",
            json={"text": f"{WORDS[self.n % len(WORDS)]} incident worker", "top_k": 5},
        )
        if reply.status_code != 200:
            raise RuntimeError(reply.text)


async def _latency(
    pairs: list[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]]], calls: int
) -> list[tuple[list[float], list[float]]]:
    out = []
    for sdk_call, http_call in pairs:
        sdk_took: list[float] = []
        http_took: list[float] = []
        for _ in range(calls):
            for call, took in ((sdk_call, sdk_took), (http_call, http_took)):
                started = time.perf_counter()
                await call()
                took.append(time.perf_counter() - started)
        out.append((sdk_took, http_took))
    return out


async def _throughput(call: Callable[[], Awaitable[None]], calls: int, concurrency: int) -> float:
    remaining = calls

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return calls / (time.perf_counter() - started)


@contextlib.asynccontextmanager
async def _deployment(tmp: Path) -> AsyncIterator[tuple[Settings, str, str]]:
    """nats-server, engram serve and engram http; yields (settings, gateway URL, key)."""
    server = EmbeddedServer(tmp / "nats")
    server.start()
    try:
        settings = Settings(
            data_dir=tmp / "client",
            nats=NatsSettings(url=server.url),
            stream=StreamSettings(name=STREAM),
        )
        _, key = KeyFile(tmp / "keys.json").add("bench", [NS])
        port = _free_port()
        gateway = [sys.executable, "-m", "engram.cli.main", "http", "--listen"]
        gateway += [f"127.0.0.1:{port}", "--keys", str(tmp / "keys.json"), "--no-mcp"]
        gateway += ["--nats-url", server.url, "--stream", STREAM]
        with (
            _process(serve_command(server.url, STREAM, tmp / "engine"), tmp / "engine.log"),
            _process(gateway, tmp / "gateway.log"),
        ):
            yield settings, f"http://127.0.0.1:{port}", key
    finally:
        server.stop()


async def run(calls: int, concurrency: int, background: int) -> dict[str, Any]:
    configure_logging(level="warning")
    with tempfile.TemporaryDirectory() as tmp:
        async with _deployment(Path(tmp)) as (settings, url, key):
            await _until(lambda: _stream_exists(settings), "the engine did not create the stream")
            limits = httpx.Limits(
                max_connections=concurrency, max_keepalive_connections=concurrency
            )
            async with (
                MemoryClient(settings=settings, namespace=NS) as sdk,
                httpx.AsyncClient(
                    base_url=url,
                    headers={"Authorization": f"Bearer {key}"},
                    limits=limits,
                    timeout=30,
                ) as http,
            ):
                await _until(lambda: _healthy(http), "the gateway did not answer")
                sdk_events = [sdk.event(sdk_payload(i), namespace=NS) for i in range(background)]
                report = await sdk.publish_many(sdk_events)
                last = max(s for s in report.sequences if s is not None)
                await _until(
                    lambda: _settled(sdk, last), "the engine did not catch up", timeout_s=300
                )
                await _idle(sdk)
                callers = Callers(sdk, http)
                for _ in range(50):  # warm both paths
                    await callers.sdk_search()
                    await callers.http_search()
                ((store_sdk, store_http),) = await _latency(
                    [(callers.sdk_store, callers.http_store)], calls
                )
                await _idle(sdk)
                ((search_sdk, search_http),) = await _latency(
                    [(callers.sdk_search, callers.http_search)], calls
                )
                rates = {}
                for name, call in (
                    ("store_sdk", callers.sdk_store),
                    ("store_http", callers.http_store),
                    ("search_sdk", callers.sdk_search),
                    ("search_http", callers.http_search),
                ):
                    # each phase on an idle engine: the one before left it events to project
                    await _idle(sdk)
                    rates[name] = await _throughput(call, calls, concurrency)
    result: dict[str, Any] = {
        "calls": calls,
        "concurrency": concurrency,
        "background": background,
        "http_parser": _parser(),
    }
    for name, took in (
        ("store_sdk", store_sdk),
        ("store_http", store_http),
        ("search_sdk", search_sdk),
        ("search_http", search_http),
    ):
        result[name] = {
            "p50_ms": round(1000 * statistics.median(took), 3),
            "p99_ms": round(_ms(took, 0.99), 3),
            "per_s": round(rates[name], 1),
        }
    return result


def _parser() -> str:
    """What uvicorn parses HTTP with in the gateway (it prefers httptools when importable)."""
    import importlib.util

    return "httptools" if importlib.util.find_spec("httptools") else "h11"


def sdk_payload(i: int) -> Any:
    from engine.events import TaskExecuted

    return TaskExecuted(
        task_id=f"bg{i}",
        execution_summary=f"{WORDS[i % len(WORDS)]} background task {i} finished",
        success=i % 3 != 0,
    )


async def _stream_exists(settings: Settings) -> bool:
    async with MemoryClient(settings=settings):
        return True


async def _healthy(http: httpx.AsyncClient) -> bool:
    return (await http.get("/healthz")).status_code == 200


async def _settled(sdk: MemoryClient, sequence: int) -> bool:
    await sdk.search_similar("warm up", min_sequence=sequence)
    return sdk.last_read is not None and not sdk.last_read.stale


async def _idle(sdk: MemoryClient) -> None:
    """Until the engine has projected everything stored so far (every projection's lag 0)."""
    async with asyncio.timeout(300):
        while True:
            status = await sdk.status()
            if all(p.lag == 0 for p in status.projections.values()):
                return
            await asyncio.sleep(0.2)


def _print(result: dict[str, Any]) -> None:
    print(
        f"{result['calls']} calls of each; throughput with {result['concurrency']} in flight; "
        f"{result['background']} memories before; the gateway parses HTTP with "
        f"{result['http_parser']}"
    )
    print(f"{'call':<12} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9}")
    for name in ("store_sdk", "store_http", "search_sdk", "search_http"):
        row = result[name]
        print(f"{name:<12} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['per_s']:>9.0f}")
    for kind in ("store", "search"):
        sdk, http = result[f"{kind}_sdk"], result[f"{kind}_http"]
        print(
            f"HTTP/SDK {kind}: p50 {http['p50_ms'] / sdk['p50_ms']:.2f}x, "
            f"p99 {http['p99_ms'] / sdk['p99_ms']:.2f}x, "
            f"throughput {http['per_s'] / sdk['per_s']:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--background", type=int, default=2_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    result = asyncio.run(run(args.calls, args.concurrency, args.background))
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)


if __name__ == "__main__":
    main()

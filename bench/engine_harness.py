"""An engine for a benchmark: an embedded nats-server in a temporary directory, a fresh stream
and an in-process ``Engine`` with the settings ``engram serve`` uses (snapshots off, so none
runs beside the timed calls). ``async with engine_on_embedded_server("BENCH_X") as (settings,
engine): ...``; everything is stopped and removed afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import nats

from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.app import Engine

__all__ = ["engine_on_embedded_server"]


@contextlib.asynccontextmanager
async def engine_on_embedded_server(stream: str) -> AsyncIterator[tuple[Settings, Engine]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / "nats")
        server.start()
        try:
            settings = Settings(
                data_dir=Path(tmp) / "data",
                nats=NatsSettings(url=server.url),
                stream=StreamSettings(name=stream),
                snapshot_every_events=0,
                snapshot_every_s=0,
            )
            nc = await nats.connect(server.url)
            await EventLog(nc, settings.stream).ensure()
            engine = Engine(settings, nc, server.url)
            stop = asyncio.Event()
            task = asyncio.create_task(engine.run(stop))
            try:
                yield settings, engine
            finally:
                stop.set()
                await task
                await nc.close()
        finally:
            server.stop()

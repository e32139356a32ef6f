"""Running an in-process engine in a test, and waiting until it has nothing left to do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client as NatsClient

from consumers.runner import RunnerSettings
from engine.settings import Settings
from engram.app import Engine

__all__ = ["FAST", "running", "settle"]

FAST = RunnerSettings(batch_size=100, max_wait_s=0.1)


@contextlib.asynccontextmanager
async def running(settings: Settings, nc: NatsClient, data_dir: Path) -> AsyncIterator[Engine]:
    engine = Engine(
        settings.model_copy(update={"data_dir": data_dir}),
        nc,
        str(settings.nats.url),
        runner_settings=FAST,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        yield engine
    finally:
        stop.set()
        await task


async def settle(engine: Engine, quiet_s: float = 0.6) -> None:
    """Wait until every projection is caught up and no new event arrived for ``quiet_s``."""
    async with asyncio.timeout(30):
        last = -1
        while True:
            await asyncio.sleep(quiet_s)
            status = await engine.status()
            caught_up = status["projections"] and all(
                p["lag"] == 0 for p in status["projections"].values()
            )
            if caught_up and status["last_sequence"] == last:
                return
            last = status["last_sequence"]

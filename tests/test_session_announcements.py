"""session.compacted is published once per compaction on a real nats-server: a second engine
with a fresh state reads the first one's back instead of publishing it again."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nats.aio.client import Client as NatsClient

from consumers.runner import ProjectionRunner, RunnerSettings
from engine.settings import Settings, StreamSettings
from engine.stream import EventLog, ReadRange
from engine.stream.append import Appender
from projections.sessions import SessionCompactor
from tests.test_session_compaction import known_session


async def test_two_engines_announce_each_compaction_once(
    nc: NatsClient, settings: Settings, tmp_path: Path
) -> None:
    """On a real server with a 1 s duplicate window, a second engine (fresh state) started after
    the window reads the first one's session.compacted back and publishes nothing."""
    stream = StreamSettings(name=settings.stream.name, duplicate_window_s=1.0)
    log = EventLog(nc, stream)
    await log.ensure()
    try:
        await log.append_many(known_session())
        for n in (1, 2):
            compactor = SessionCompactor(tmp_path / f"engine{n}")
            runner = ProjectionRunner(
                log.js,
                stream.name,
                compactor,
                durable=f"sessions_{n}_{stream.name}",
                settings=RunnerSettings(batch_size=5, max_wait_s=0.1),
                announcer=compactor,
                appender=Appender(nc, stream.name),
            )
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run(stop))
            async with asyncio.timeout(20):
                while not compactor.read(lambda s: s.announced):
                    await asyncio.sleep(0.05)
            stop.set()
            await task
            compactor.close()
            await asyncio.sleep(1.2)  # past the duplicate window
        bodies = [
            json.loads(m.data)
            async for m in log.read(ReadRange(subject="memory.session.compacted.*"))
        ]
        assert len(bodies) == 1
        assert bodies[0]["data"]["num_memories"] == 16
    finally:
        await log.js.delete_stream(stream.name)

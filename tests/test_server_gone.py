"""An engine whose NATS server goes away keeps its state and stops cleanly when asked: no error
escapes Engine.run (the snapshot policy and the query service's drain used to raise), and what
was projected before is on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

import duckdb
import pytest

from consumers.runner import RunnerSettings
from engine.connection import connect
from engine.events import WorkflowExecuted, make_event
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings
from engine.stream import EventLog
from engram.app import Engine
from projections.projection_set import open_projections
from projections.tables.store import DATABASE_FILE
from tests.engines import settle


@pytest.mark.slow
async def test_engine_stops_cleanly_after_its_server_went_away(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path / "nats")
    server.start()
    settings = Settings(
        data_dir=tmp_path / "data",
        nats=NatsSettings(url=server.url),
        snapshot_every_events=10,
        snapshot_every_s=0,
    )
    nc = await connect(settings.nats, server.url)
    try:
        log = EventLog(nc, settings.stream)
        await log.ensure()
        await log.append_many(
            [
                make_event(
                    WorkflowExecuted(
                        task_type="testing", workflow_steps=["a"], success=True, duration=1.0
                    )
                )
                for _ in range(20)
            ]
        )
        engine = Engine(
            settings, nc, server.url, runner_settings=RunnerSettings(batch_size=10, max_wait_s=0.1)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(engine.run(stop))
        await settle(engine)  # everything projected
        last = (await log.state()).last_sequence  # the workflows and the pattern.learned
        server.stop()
        await asyncio.sleep(7)  # the snapshot policy polls every 5 s
        stop.set()
        await asyncio.wait_for(task, 30)  # returns: no error escapes
    finally:
        await nc.close()
        server.stop()
    with duckdb.connect(str(settings.data_dir / DATABASE_FILE), read_only=True) as db:
        assert db.execute("SELECT count(*) FROM workflows").fetchone() == (20,)
    # The projections that save whole states saved on the way out, with their checkpoints.
    reopened = open_projections(settings)
    try:
        saved = [reopened.learner, reopened.vectors, reopened.sessions, reopened.tables]
        assert [p.checkpoint() for p in saved] == [last] * len(saved)
    finally:
        reopened.close()

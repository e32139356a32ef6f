"""The stream's durability surfaced: ``engram status`` (and the status verb) show its replicas,
storage, limits, duplicate window and the server's fsync interval where engram can know it (the
embedded server it started); the engine warns once at start when a one-replica stream holding
data sits on a server that fsyncs only every two minutes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from engine import MemoryClient
from engine.endpoint import open_nats
from engine.settings import Settings, StreamSettings
from engine.stream import EventLog
from engram.app import Engine
from engram.observability.durability import ALWAYS, DEFAULT_SYNC, UNKNOWN
from tests.cli_runs import engram
from tests.engines import FAST, settle

WARNING = "acknowledged events can be lost on a power failure"


@asynccontextmanager
async def _engine(settings: Settings, nc: NatsClient, url: str) -> AsyncIterator[Engine]:
    engine = Engine(settings, nc, url, runner_settings=FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(engine.run(stop))
    try:
        async with asyncio.timeout(30):
            while not engine.runners:
                await asyncio.sleep(0.01)
        yield engine
    finally:
        stop.set()
        await task


def _warnings(logs: Sequence[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == WARNING]


async def _two_starts(
    settings: Settings,
) -> tuple[dict[str, Any], list[MutableMapping[str, Any]], str]:
    """Start an engine on the embedded server of ``settings`` (an empty stream: no warning),
    store events, stop; start it again (the stream holds data). Returns the status durability,
    the warnings logged at each start, and ``engram status``'s text output meanwhile."""
    async with open_nats(settings) as endpoint:
        with structlog.testing.capture_logs() as first:
            async with _engine(settings, endpoint.nc, endpoint.url) as engine:
                async with MemoryClient(endpoint.url, settings=settings, agent_id="a") as memory:
                    await memory.store_workflow(workflow_steps=["plan"], success=True, duration=1)
                await settle(engine)
        assert not _warnings(first), "warned about an empty stream"
        with structlog.testing.capture_logs() as second:
            async with _engine(settings, endpoint.nc, endpoint.url) as engine:
                durability = (await engine.status())["durability"]
                run = await engram(
                    "status", "--data-dir", settings.data_dir, cwd=settings.data_dir.parent
                )
                assert run.code == 0, run.err
    return durability, _warnings(second), run.out


async def test_the_embedded_servers_default_fsync_interval_is_shown_and_warned_about(
    tmp_path: Path,
) -> None:
    """On the embedded server with JetStream's default sync_interval: the status shows R1, file
    storage, no limits, the 2-minute interval and the warning naming the fix; the second start
    (data in the stream) logs exactly one warning; ``engram status`` prints the same."""
    settings = Settings(data_dir=tmp_path / "data", snapshot_every_events=0, snapshot_every_s=0)
    durability, warnings, text = await _two_starts(settings)

    assert durability["replicas"] == 1
    assert durability["storage"] == "file"
    assert (durability["max_age_s"], durability["max_bytes"], durability["max_msg_size"]) == (
        0.0,
        -1,
        -1,
    )
    assert durability["duplicate_window_s"] == 120.0
    assert durability["sync_interval"] == DEFAULT_SYNC
    assert "ENGRAM_EMBEDDED_SYNC_ALWAYS=true" in durability["warning"]
    assert "ENGRAM_STREAM__REPLICAS=3" in durability["warning"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning", warnings
    assert warnings[0]["sync_interval"] == DEFAULT_SYNC
    assert f"sync_interval: {DEFAULT_SYNC}" in text
    assert "durability: 1 replica(s), file storage" in text
    assert "max_age none, max_bytes none, max_msg_size none, duplicate window 120s" in text
    assert "warning: stream ENGRAM has one replica" in text
    assert "ready: yes" in text


async def test_an_embedded_server_that_fsyncs_every_write_raises_no_warning(
    tmp_path: Path,
) -> None:
    """With ENGRAM_EMBEDDED_SYNC_ALWAYS the embedded server fsyncs every write: the status says
    ``always``, no warning, and nothing is logged at the second start."""
    settings = Settings(
        data_dir=tmp_path / "data",
        embedded_sync_always=True,
        snapshot_every_events=0,
        snapshot_every_s=0,
    )
    durability, warnings, text = await _two_starts(settings)

    assert durability["sync_interval"] == ALWAYS
    assert durability["warning"] is None
    assert warnings == []
    assert "sync_interval: always" in text and "warning:" not in text


async def test_a_given_servers_limits_are_shown_and_its_interval_is_unknown(
    settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """On a server engram did not start, the stream's configured limits and duplicate window are
    shown as the server holds them, the fsync interval is ``unknown`` (a client cannot see it),
    and the start notice about power failures is informational, not a warning."""
    stream = StreamSettings(
        name=settings.stream.name,
        max_age_s=3_600,
        max_bytes=50_000_000,
        max_msg_size=200_000,
        duplicate_window_s=60,
    )
    settings = settings.model_copy(update={"stream": stream})
    log = EventLog(nc, stream)
    await log.ensure()
    try:
        async with MemoryClient(settings=settings, agent_id="a") as memory:
            await memory.store_workflow(workflow_steps=["plan"], success=True, duration=1)
        with structlog.testing.capture_logs() as logs:
            async with _engine(settings, nc, str(settings.nats.url)) as engine:
                durability = (await engine.status())["durability"]
    finally:
        await nc.jetstream().delete_stream(stream.name)
        with contextlib.suppress(NotFoundError):  # the engine created it; it captures subjects
            await nc.jetstream().delete_stream(stream.name + "_DLQ")

    assert durability["max_age_s"] == 3_600
    assert durability["max_bytes"] == 50_000_000
    assert durability["max_msg_size"] == 200_000
    assert durability["duplicate_window_s"] == 60
    assert durability["sync_interval"] == UNKNOWN
    assert "cannot see" in durability["warning"]
    notices = _warnings(logs)
    assert len(notices) == 1 and notices[0]["log_level"] == "info", notices

"""An engine that starts empty on a stream whose early history is gone (compacted or expired)
and finds no snapshot of its namespaces says so, loudly and in its status, instead of serving a
partial state as if it were whole; one with the whole history reports no gap."""

from __future__ import annotations

from nats.aio.client import Client as NatsClient
from structlog.testing import capture_logs

from engine import MemoryClient
from engine.settings import Settings
from engine.stream import EventLog
from tests.engines import running, settle


async def _store(settings: Settings, count: int, start: int = 0) -> None:
    async with MemoryClient(settings=settings) as memory:
        for i in range(start, start + count):
            await memory.store_workflow(workflow_steps=["plan", "ship"], success=True, duration=i)


async def test_a_fresh_engine_on_a_cut_history_reports_where_its_state_starts(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """The first 5 events are purged from the stream (as compaction or max_age would); an
    engine on an empty data directory with no snapshot warns and reports history_from = the
    stream's first sequence; a second engine started before the cut reports None."""
    whole_dir, cut_dir = settings.data_dir / "whole", settings.data_dir / "cut"
    await _store(settings, 5)
    async with running(settings, nc, whole_dir) as whole:
        await settle(whole)
        assert (await whole.status())["history_from"] is None
    await event_log.js.purge_stream(settings.stream.name, seq=6)  # keeps 6 and later
    await _store(settings, 3, start=5)
    first = (await event_log.state()).first_sequence
    assert first == 6
    with capture_logs() as logs:
        async with running(settings, nc, cut_dir) as cut:
            await settle(cut)
            status = await cut.status()
    assert status["history_from"] == first
    assert any(e["event"] == "starting without the stream's early history" for e in logs)
    rows = status["projections"]["tables"]
    assert rows["lag"] == 0

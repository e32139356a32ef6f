"""``/healthz`` and ``/readyz`` of a real engine, and ``engram status`` giving the same verdict:
alive while its event loop answers in time; ready while connected, the stream there and every
projection caught up and not degraded, with the reasons otherwise."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NatsClient

from engine import MemoryClient
from engine.connection import connect
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings
from engine.stream import EventLog
from engine.verbs.replies import StatusReply
from engram.observability.readiness import readiness
from tests.cli_runs import engram
from tests.engines import settle
from tests.faults import FailingCommits
from tests.metrics_scrapes import get, metered, scrape
from tests.servers import free_port


async def _until(condition: Any, what: str, timeout_s: float = 30.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.1)
    assert await condition(), what


async def test_healthz_is_answered_by_the_loop_and_fails_while_it_stalls(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """A running engine's /healthz is 200 with the loop's delay; after the loop was blocked for
    2 s it is 503 saying how late the loop ran; once the stall has left the probe's window it
    is 200 again."""
    async with metered(settings, nc, settings.data_dir / "engine") as engine:
        assert engine.metrics_endpoint is not None
        engine.metrics_endpoint.probe.window_s = 1.0
        healthy = await get(engine, "/healthz")
        assert healthy.status_code == 200
        assert healthy.json()["alive"] is True
        time.sleep(2.0)  # noqa: ASYNC251 - the point: the engine's loop (this one) stalls
        stalled = await get(engine, "/healthz")
        assert stalled.status_code == 503, stalled.text
        assert stalled.json()["alive"] is False
        assert stalled.json()["loop_lag_s"] >= 1.0
        assert "event loop ran" in stalled.json()["reason"]
        await asyncio.sleep(1.5)
        again = await get(engine, "/healthz")
        assert again.status_code == 200, again.text
        missing = await get(engine, "/nothing")
        assert missing.status_code == 404


async def _cli_verdict(settings: Settings, cwd: Path) -> dict[str, Any]:
    run = await engram(
        "status",
        "--json",
        "--nats-url",
        str(settings.nats.url),
        "--stream",
        settings.stream.name,
        "--data-dir",
        settings.data_dir / "cli",
        cwd=cwd,
    )
    assert run.code == 0, run.err
    status: dict[str, Any] = run.json()
    return {"ready": status["ready"], "reasons": status["reasons"]}


async def test_readyz_follows_a_degraded_projection_and_engram_status_agrees(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Ready (200) while caught up. While the tables' commits fail as on a full disk, /readyz
    is 503 naming the degraded projection and its cause, ``engram_ready`` is 0, and ``engram
    status --json`` gives the same verdict with the same reasons; once the disk is back, both
    say ready again. With no engine running, ``engram status`` says why it is not ready."""
    async with (
        metered(settings, nc, settings.data_dir / "engine") as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        await memory.store_workflow(workflow_steps=["plan"], success=True, duration=1.0)
        await settle(engine)
        ready = await get(engine, "/readyz")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "reasons": []}
        assert await _cli_verdict(settings, tmp_path) == ready.json()

        fault = FailingCommits(engine.set.store)
        fault.active = True
        await memory.store_workflow(workflow_steps=["plan"], success=False, duration=2.0)
        tables = next(r for r in engine.runners if r.projection.name == "tables")

        async def degraded() -> bool:
            return tables.degraded

        await _until(degraded, "the tables projection never degraded")
        unready = await get(engine, "/readyz")
        assert unready.status_code == 503
        reasons = unready.json()["reasons"]
        assert unready.json()["ready"] is False
        assert any(
            r.startswith("projection tables is degraded:") and "No space left" in r for r in reasons
        ), reasons
        assert await _cli_verdict(settings, tmp_path) == unready.json()
        assert (await scrape(engine)).value("engram_ready") == 0

        fault.active = False

        async def recovered() -> bool:
            return (await get(engine, "/readyz")).status_code == 200

        await _until(recovered, "/readyz never said ready again")
        assert (await get(engine, "/readyz")).json() == {"ready": True, "reasons": []}
        assert await _cli_verdict(settings, tmp_path) == {"ready": True, "reasons": []}

    stopped = await _cli_verdict(settings, tmp_path)
    assert stopped["ready"] is False
    assert stopped["reasons"] == ["no engine answers on engram.query.status"], stopped["reasons"]


def test_the_verdict_is_one_pure_function_of_the_status() -> None:
    """readiness(): every reason, in a fixed order, from the status alone: NATS down, a
    degraded projection, one lagging beyond the status's own limit; a status that could not
    be read is never ready."""
    projection = {"checkpoint": 5, "last_sequence": 20_005, "durable": "d", "degraded": False}
    status = StatusReply.model_validate(
        {
            "stream": "S",
            "messages": 20_005,
            "bytes": 1,
            "first_sequence": 1,
            "last_sequence": 20_005,
            "projections": {
                "vectors": {**projection, "lag": 20_000},
                "tables": {**projection, "lag": 0, "degraded": True, "reason": "disk full"},
                "recent": {**projection, "lag": 10},
            },
            "snapshots": {},
            "instance": "i",
            "nats_connected": False,
            "ready_max_lag": 10_000,
        }
    )
    verdict = readiness(status)
    assert verdict.ready is False
    assert verdict.reasons == (
        "NATS is not connected",
        "projection tables is degraded: disk full",
        "projection vectors lags 20,000 events behind the stream (more than 10,000)",
    )
    relaxed = status.model_copy(update={"ready_max_lag": 50_000, "nats_connected": True})
    assert readiness(relaxed).reasons == ("projection tables is degraded: disk full",)
    assert readiness(None, problem="stream S is not there") == readiness(
        None, problem="stream S is not there"
    )
    assert readiness(None, problem="stream S is not there").ready is False
    empty = status.model_copy(update={"projections": {}, "nats_connected": True})
    assert readiness(empty).reasons == ("no projection is running",)


async def test_readyz_is_503_while_nats_is_away_and_200_once_it_is_back(tmp_path: Path) -> None:
    """Stop the engine's nats-server: /readyz turns 503 saying NATS is not connected and the
    stream cannot be read, /metrics still answers with ``engram_nats_connected 0`` and
    ``engram_ready 0``; start it again on the same store: /readyz is 200 again and the
    reconnection is counted."""
    port = free_port()
    server = EmbeddedServer(tmp_path / "nats", port=port)
    url = server.start()
    settings = Settings(
        data_dir=tmp_path / "data",
        nats=NatsSettings(url=url),
        snapshot_every_events=0,
        snapshot_every_s=0,
    )
    engine_nc = await connect(settings.nats, url, persistent=True)
    try:
        async with metered(settings, engine_nc, tmp_path / "engine") as engine:
            assert (await get(engine, "/readyz")).status_code == 200
            server.stop()

            async def away() -> bool:
                return (await get(engine, "/readyz")).status_code == 503

            await _until(away, "/readyz stayed 200 with NATS stopped")
            reasons = (await get(engine, "/readyz")).json()["reasons"]
            assert reasons[0] == "NATS is not connected", reasons
            assert any("cannot be read: NATS is away" in r for r in reasons), reasons
            during = await scrape(engine)
            assert during.value("engram_nats_connected") == 0
            assert during.value("engram_ready") == 0

            server = EmbeddedServer(tmp_path / "nats", port=port)
            assert server.start() == url

            async def back() -> bool:
                return (await get(engine, "/readyz")).status_code == 200

            await _until(back, "/readyz never said ready after NATS came back")
            after = await scrape(engine)
            assert after.value("engram_nats_connected") == 1
            assert after.value("engram_nats_reconnects_total") >= 1
    finally:
        await engine_nc.close()
        server.stop()


async def test_readyz_is_503_when_the_stream_is_gone(
    settings: Settings, nc: NatsClient, event_log: EventLog
) -> None:
    """Delete the stream under a running engine: /readyz is 503 saying the stream's state
    cannot be read (the server's own words), while NATS itself is connected."""
    async with metered(settings, nc, settings.data_dir / "engine") as engine:
        assert (await get(engine, "/readyz")).status_code == 200
        await nc.jetstream().delete_stream(settings.stream.name)
        gone = await get(engine, "/readyz")
        assert gone.status_code == 503
        reasons = gone.json()["reasons"]
        assert len(reasons) == 1, reasons
        assert reasons[0].startswith(f"the state of stream {settings.stream.name} cannot be read")
        assert "not found" in reasons[0].lower(), reasons
        await event_log.ensure()  # back, for a clean stop

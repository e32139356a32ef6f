"""Crash safety: SIGKILL the engine while it projects, restart it, and the tables equal a clean
replay (nothing lost, nothing doubled)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from consumers.replay import replay
from engine.settings import Settings
from engine.stream import EventLog
from engram.cli.serve import serve_command
from projections.embedders import HashingEmbedder
from projections.learning import LearnerProjection
from projections.learning.persistence import dump_state
from projections.tables import DATABASE_FILE, TablesProjection, TableStore, table_digests
from projections.vectors.projection import VectorProjection
from tests.histories import realistic_history

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def _serve(settings: Settings, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGRAM_")}
    return subprocess.Popen(
        serve_command(str(settings.nats.url), settings.stream.name, data_dir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _status(nc: NatsClient) -> dict[str, Any] | None:
    try:
        reply = await nc.request("engram.query.status", b"{}", timeout=0.5)
    except Exception:  # not up yet, or being killed
        return None
    body: dict[str, Any] = json.loads(reply.data)
    return body if body.get("projections") else None


async def _checkpoint(nc: NatsClient) -> int | None:
    status = await _status(nc)
    return None if status is None else int(status["projections"]["tables"]["checkpoint"])


async def _settled(nc: NatsClient) -> bool:
    """Every projection caught up, twice in a row (announcements may still be appended)."""
    for _ in range(2):
        status = await _status(nc)
        if status is None or any(p["lag"] for p in status["projections"].values()):
            return False
        await asyncio.sleep(0.5)
    return True


async def test_sigkill_during_projection_then_restart_equals_clean_replay(
    event_log: EventLog, nc: NatsClient, settings: Settings, tmp_path: Path
) -> None:
    """Kill -9 at several points while projecting 20,000 events; the restarted engine ends with
    exactly the tables of a clean replay."""
    data_dir = tmp_path / "engine"
    total = 20_000
    results = await event_log.append_many(realistic_history(0, total // 2))
    assert all(not isinstance(r, Exception) for r in results)
    kills = 0
    seen: list[int] = []
    for round_number, threshold in enumerate((1, 3_000, 9_000, 14_000)):
        process = _serve(settings, data_dir)
        try:
            if round_number == 2:  # more history arrives while the engine runs
                await event_log.append_many(realistic_history(total // 2, total // 2))
            async with asyncio.timeout(60):
                while True:
                    checkpoint = await _checkpoint(nc)
                    if checkpoint is not None and checkpoint >= threshold:
                        seen.append(checkpoint)
                        break
                    await asyncio.sleep(0.01)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
    process = _serve(settings, data_dir)
    try:
        async with asyncio.timeout(120):
            while not await _settled(nc):
                await asyncio.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert kills == 4 and seen == sorted(seen)
    assert seen[-1] < total, "the engine finished before the last kill: the test proved less"

    live = TableStore.open(data_dir)
    assert live.reader().execute("SELECT count(*) FROM workflows").fetchone() == (8_000,)
    clean = TableStore.in_memory()
    embedder = HashingEmbedder()
    clean_vectors = VectorProjection(None, embedder)
    clean_learner = LearnerProjection(None)
    await replay(
        event_log.js, event_log.stream_name, [TablesProjection(clean), clean_vectors, clean_learner]
    )
    assert table_digests(live.reader()) == table_digests(clean.reader())
    live.close()
    # The vector memory and the learner: nothing lost, nothing doubled either.
    live_vectors = VectorProjection(data_dir / "vectors" / embedder.name, embedder)
    assert {k: m.to_json() for k, m in live_vectors.memories.items()} == {
        k: m.to_json() for k, m in clean_vectors.memories.items()
    }
    # Every memory event counted once (identical texts, the decisions "go", are one memory).
    assert sum(m.occurrences for m in live_vectors.memories.values()) == 6_000
    for query in ("did thing 77", "did thing 15012"):
        found = live_vectors.search(namespace="default", text=query, top_k=3)
        assert [h["id"] for h in found] == [
            h["id"] for h in clean_vectors.search(namespace="default", text=query, top_k=3)
        ]
    live_learner = LearnerProjection(data_dir / "patterns")
    assert dump_state(live_learner.state) == dump_state(clean_learner.state)
    assert (data_dir / DATABASE_FILE).exists()

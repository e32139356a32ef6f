"""Blue/green reindex: a new embedder's index is built beside the live one by replay, and the
running engine switches searches over only once it has caught up; vectors never mix."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from consumers.reindex import reindex
from consumers.runner import RunnerSettings
from engine.errors import UnknownEmbedderError
from engine.events import TaskExecuted, make_event
from engine.settings import Settings
from engine.stream import EventLog
from engram.app import Engine
from projections.vectors.active import ACTIVE_FILE
from projections.vectors.index_set import MANIFEST_NAME

ST_MISSING = importlib.util.find_spec("sentence_transformers") is None


def _tasks(start: int, count: int) -> list[object]:
    texts = [
        "the worker leaks memory under load",
        "deployed the release with a canary",
        "slow report query fixed with an index",
    ]
    return [
        make_event(
            TaskExecuted(task_id=f"t{i}", execution_summary=f"{texts[i % 3]} ({i})", success=True),
            event_id=f"task-{i}",
        )
        for i in range(start, start + count)
    ]


async def test_unknown_embedder_is_refused_before_any_work(
    event_log: EventLog, settings: Settings
) -> None:
    """reindex --embedder with an unknown name fails with the known names and changes nothing."""
    with pytest.raises(UnknownEmbedderError, match="hashing"):
        await reindex(event_log.js, event_log.stream_name, settings, "word2vec")
    assert not (settings.vectors_dir / ACTIVE_FILE).exists()


@pytest.mark.skipif(
    ST_MISSING,
    reason="the semantic extra (sentence-transformers) is not "
    "installed: pip install torch==2.13.0 && pip install -e '.[semantic]'",
)
@pytest.mark.timeout(300)
async def test_reindex_switches_a_running_engine_only_when_caught_up(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """The engine serves from the hashing index while minilm's is built; after activation it
    switches, the old index stays on disk, and later events land in the new index only."""
    await event_log.append_many(_tasks(0, 60))  # type: ignore[arg-type]
    engine = Engine(
        settings,
        nc,
        str(settings.nats.url),
        runner_settings=RunnerSettings(batch_size=50, max_wait_s=0.1),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(engine.run(stop))
    try:
        async with asyncio.timeout(60):
            while not engine.runners or any(r.checkpoint < 60 for r in engine.runners):
                await asyncio.sleep(0.05)
        old = engine.set.vectors
        assert old.embedder.name == "hashing"
        report = await reindex(event_log.js, event_log.stream_name, settings, "minilm")
        assert report.messages >= 60
        assert (settings.vectors_dir / ACTIVE_FILE).read_text().strip() == "minilm"
        await event_log.append_many(_tasks(60, 5))  # type: ignore[arg-type]
        async with asyncio.timeout(120):
            while engine.set.vectors.embedder.name != "minilm":
                await asyncio.sleep(0.1)
        new = engine.set.vectors
        async with asyncio.timeout(30):
            while new.memory("task-64") is None:
                await asyncio.sleep(0.05)
        assert len(new.memories) == 65
        assert new.indexes.dimension == 384 and new.embedder.name == "minilm"
        hits = new.search(namespace="default", text="memory leak in a worker process", top_k=3)
        assert all("leaks memory" in h["text"] for h in hits)
        assert (settings.vectors_dir / "hashing").is_dir()  # the old index stays until removed
    finally:
        stop.set()
        await running
    # Each index holds one model's vectors and says which: they never mix.
    for name in ("hashing", "minilm"):
        manifest = json.loads((settings.vectors_dir / name / MANIFEST_NAME).read_text())
        assert manifest["embedder"] == name

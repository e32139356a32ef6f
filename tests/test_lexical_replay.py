"""The lexical index is a projection of the log (issue 13, point 1), on a real nats-server: a
live engine's index equals a clean replay's, a snapshot carries it and snapshot + tail equals a
full replay (same bytes, same answers, same scores in every mode), and a reindex rebuilds it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from consumers.reindex import reindex
from consumers.replay import replay
from consumers.snapshotting import restore_latest, take_snapshot
from engine.events import DecisionLogged, KnowledgeAdded, TaskExecuted, make_event
from engine.settings import Settings
from engine.stream import EventLog
from projections.lexical.store import LEXICAL_DIR
from projections.projection_set import open_projections
from projections.snapshots.stores import DirectorySnapshots
from tests.engines import running, settle

pytestmark = pytest.mark.timeout(180)

SUMMARIES = [
    "fixed JIRA-{n} in getUserName: the login crashed on 2026-01-{d:02d}",
    "deployed billing-api v2.{n} to staging with a canary",
    "rotated the postgres credentials for service {n}",
    "Rotated the postgres credentials for service {n}",  # a repeat: one memory
]
QUERIES = ["JIRA-7 login crash", "billing canary", "postgres credentials", "getUserName"]


def _history(start: int, count: int) -> list[Any]:
    events: list[Any] = []
    for i in range(start, start + count):
        ns = "default" if i % 3 else "team-a"
        text = SUMMARIES[i % 4].format(n=i % 17, d=1 + i % 28)
        if i % 5 == 4:
            data: Any = DecisionLogged(decision_id=f"d{i % 7}", actor="planner", decision=text)
        elif i % 11 == 10:
            data = KnowledgeAdded(kind="procedure", title=f"runbook {i % 4}", content=text)
        else:
            data = TaskExecuted(task_id=f"t{i}", execution_summary=text, success=i % 2 == 0)
        events.append(make_event(data, namespace=ns, event_id=f"lex-{i}"))
    return events


def _lexical_state(directory: Path, settings: Settings) -> dict[str, Any]:
    """The lexical index (bytes) and every mode's answers with scores, as saved on disk."""
    projections = open_projections(settings.model_copy(update={"data_dir": directory}))
    try:
        vectors = projections.vectors
        return {
            "lexical": vectors.lexical.encoded(),
            "occurrences": sum(m.occurrences for m in vectors.memories.values()),
            "answers": [
                [
                    (h["id"], h["similarity_score"], h["duplicates"], h["occurrences"])
                    for h in vectors.search(namespace=ns, text=q, top_k=8, mode=mode)
                ]
                for q in QUERIES
                for ns in ("default", "team-a")
                for mode in ("hybrid", "vector", "lexical")
            ],
        }
    finally:
        projections.close()


async def _replayed(event_log: EventLog, settings: Settings, directory: Path) -> dict[str, Any]:
    projections = open_projections(settings.model_copy(update={"data_dir": directory}))
    try:
        await replay(event_log.js, event_log.stream_name, projections.persistent)
    finally:
        projections.close()
    return _lexical_state(directory, settings)


async def test_a_live_engines_lexical_index_equals_a_clean_replay(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """Events applied live in small batches, with more arriving while it runs, then saved on
    stop: the lexical files reopen to exactly what a replay from scratch builds."""
    await event_log.append_many(_history(0, 400))
    async with running(settings, nc, tmp_path / "live") as engine:
        await settle(engine)
        await event_log.append_many(_history(400, 200))
        await settle(engine)
    live = _lexical_state(tmp_path / "live", settings)
    clean = await _replayed(event_log, settings, tmp_path / "clean")
    assert live == clean
    assert live["occurrences"] == 600  # every memory event counted once, repeats merged
    assert any(hits for hits in live["answers"])
    saved = list((tmp_path / "live" / "vectors" / "hashing" / LEXICAL_DIR).glob("*.bm25"))
    assert {p.name.split("-")[0] for p in saved} == {"default", "team"}


async def test_snapshot_plus_tail_restores_the_same_lexical_index(
    event_log: EventLog, settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    """A snapshot holds the lexical files; restoring it and replaying the tail gives the same
    index bytes, answers and scores as a full replay."""
    await event_log.append_many(_history(0, 300))
    store = DirectorySnapshots(tmp_path / "snapshots")
    manifest = await take_snapshot(nc, settings, store)
    assert any(name.startswith(f"vectors/hashing/{LEXICAL_DIR}/") for name in manifest.files)
    await event_log.append_many(_history(300, 150))

    restored = tmp_path / "restored"
    target = settings.model_copy(update={"data_dir": restored})
    assert await restore_latest(event_log.js, target, store, restored) is not None
    at_snapshot = _lexical_state(restored, settings)
    projections = open_projections(target)
    try:
        assert projections.vectors.checkpoint() == manifest.sequence
        await replay(event_log.js, event_log.stream_name, projections.persistent)
    finally:
        projections.close()
    assert _lexical_state(restored, settings) == await _replayed(
        event_log, settings, tmp_path / "full"
    )
    assert at_snapshot != _lexical_state(restored, settings)  # the tail did change it


async def test_reindex_builds_the_lexical_index_too(
    event_log: EventLog, settings: Settings, tmp_path: Path
) -> None:
    """``engram reindex`` replays into a fresh index directory: its lexical index is built by
    the same replay and equals the one a plain replay builds."""
    await event_log.append_many(_history(0, 200))
    fresh = settings.model_copy(update={"data_dir": tmp_path / "reindexed"})
    await reindex(event_log.js, event_log.stream_name, fresh, "hashing")
    assert (fresh.vectors_dir / "hashing" / LEXICAL_DIR).is_dir()
    assert _lexical_state(fresh.data_dir, settings) == await _replayed(
        event_log, settings, tmp_path / "clean"
    )

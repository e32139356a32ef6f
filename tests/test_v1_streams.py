"""Streams written before wire contract v2 keep working (issue 12).

A v1 stream holds every event on ``memory.<type>`` with the namespace only in the body, as
clients before v2 published them (raw nats-py here, several namespaces). Replayed, it rebuilds
the state of the same events written on v2 subjects (``memory.<type>.<namespace>``), and so does
a stream mixing both; an engine projects a v1 stream (adding its own derived events on v2
subjects) and a replay of that mixed stream rebuilds the engine's state.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from engine.events import Event, encode_event
from engine.settings import Settings, StreamSettings
from engine.stream import EventLog
from projections.projection_set import open_projections
from tests.engines import running, settle
from tests.histories import realistic_history
from tests.states import clean_replay_state, saved_state

pytestmark = pytest.mark.timeout(120)

Layout = Literal["v1", "v2", "mixed"]


def history() -> list[Event]:
    """A realistic history over three namespaces (every fifth event moved to team-b), built
    once: every layout stores the very same events (ids, timestamps) in the same order."""
    events = realistic_history(0, 600)
    return [
        e.model_copy(update={"namespace": "team-b"}) if i % 5 == 4 else e
        for i, e in enumerate(events)
    ]


def _v1(layout: Layout, index: int) -> bool:
    return layout == "v1" or (layout == "mixed" and index % 2 == 0)


@contextlib.asynccontextmanager
async def written(
    nc: NatsClient, settings: Settings, layout: Layout, events: Sequence[Event]
) -> AsyncIterator[Settings]:
    """A stream of its own holding ``events`` in ``layout``, published raw with nats-py (the
    namespace only in the body on a v1 subject); deleted afterwards (every stream here
    captures memory.>, so two cannot coexist)."""
    mine = settings.model_copy(
        update={"stream": StreamSettings(name=f"{settings.stream.name}_{layout.upper()}")}
    )
    log = EventLog(nc, mine.stream)
    await log.ensure()
    try:
        js = nc.jetstream()
        subjects = mine.stream.events
        for index, event in enumerate(events):
            namespace = None if _v1(layout, index) else event.namespace
            await js.publish(
                subjects.subject(event.type, namespace),
                encode_event(event),
                stream=mine.stream.name,
                headers={"Nats-Msg-Id": event.id},
            )
        yield mine
    finally:
        for name in (mine.stream.name, mine.stream.name + "_DLQ"):
            with contextlib.suppress(NotFoundError):
                await log.js.delete_stream(name)


def comparable(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without the checkpoints table, which records when the stream stored its last
    event (two streams store the same events at different times)."""
    tables = {k: v for k, v in state["tables"].items() if k != "checkpoints"}
    return {**state, "tables": tables}


def workflows_per_namespace(settings: Settings) -> dict[str, int]:
    projections = open_projections(settings)
    try:
        rows = projections.store.reader().execute(
            "SELECT namespace, count(*) FROM workflows GROUP BY namespace"
        )
        return dict(rows.fetchall())
    finally:
        projections.close()


async def _subjects(nc: NatsClient, settings: Settings) -> list[str]:
    return [m.subject async for m in EventLog(nc, settings.stream).read()]


async def test_v1_v2_and_mixed_streams_replay_to_the_same_state(
    nc: NatsClient, settings: Settings, tmp_path: Path
) -> None:
    """The same events written on v1 subjects, on v2 subjects, and alternately on both, each
    replayed into a new directory: the three states are equal (tables, learner, sessions,
    memories, the word index and search answers), and the v1 stream really holds v1 subjects
    only."""
    events = history()
    states: dict[Layout, dict[str, Any]] = {}
    for layout in ("v1", "v2", "mixed"):
        async with written(nc, settings, layout, events) as mine:
            subjects = await _subjects(nc, mine)
            states[layout] = await clean_replay_state(nc.jetstream(), mine, tmp_path / layout)
        v1_count = sum(1 for s in subjects if s.count(".") == 2)
        assert v1_count == {"v1": 600, "v2": 0, "mixed": 300}[layout]
    assert states["v1"]["tables"] and states["v1"]["memories"]
    assert comparable(states["v1"]) == comparable(states["v2"])
    assert comparable(states["mixed"]) == comparable(states["v2"])


async def test_an_engine_projects_a_v1_stream_and_a_replay_rebuilds_it(
    nc: NatsClient, settings: Settings, tmp_path: Path
) -> None:
    """An engine started on a v1 stream projects every namespace's events (its own derived
    events go on v2 subjects: the stream is then mixed), and a clean replay of that stream
    rebuilds exactly the engine's state."""
    events = history()
    expected = Counter(e.namespace for e in events if e.type == "workflow.executed")
    assert len(expected) == 3
    async with written(nc, settings, "v1", events) as mine:
        on_disk = mine.model_copy(update={"data_dir": tmp_path / "engine"})
        async with running(mine, nc, on_disk.data_dir) as engine:
            await settle(engine)
        engine_state = saved_state(on_disk)
        replayed = await clean_replay_state(nc.jetstream(), mine, tmp_path / "replayed")
        subjects = await _subjects(nc, mine)
    assert workflows_per_namespace(on_disk) == dict(expected)
    assert replayed == engine_state
    assert all(s.count(".") == 2 for s in subjects[: len(events)])  # the agents' v1 events
    derived = subjects[len(events) :]
    assert any(s.startswith("memory.pattern.learned.") for s in derived)
    assert all(s.count(".") == 3 for s in derived)  # the engine's own: v2

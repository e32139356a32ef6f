"""The vector projection obeys the projection rules: live equals replay (same neighbours),
namespaces never leak, a bad precomputed vector is a dead letter, reuse survives replay."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.deadletters import DeadLetterPublisher
from consumers.replay import replay
from consumers.runner import ProjectionRunner, RunnerSettings
from engine.errors import IndexMismatchError
from engine.events import (
    DecisionLogged,
    DecisionOutcome,
    KnowledgeAdded,
    MemoryRecalled,
    TaskExecuted,
    make_event,
)
from engine.settings import Settings
from engine.stream import EventLog
from projections.embedders import HashingEmbedder
from projections.records import SequencedEvent
from projections.vectors.projection import VectorProjection

T0 = datetime(2026, 11, 20, tzinfo=UTC)
SUMMARIES = [
    "fixed the login crash by resetting the session cache",
    "deployed the api to staging with a canary",
    "analysed churn by plan and wrote the report",
    "memory leak in the worker traced to an unbounded queue",
    "wrote unit tests for the date parser",
    "optimised the slow billing query with an index",
]
QUERIES = ["login crash", "canary deploy", "leak in worker queue", "parser tests", "slow query"]


def _tasks(count: int, namespace: str = "default") -> list[object]:
    return [
        make_event(
            TaskExecuted(
                task_id=f"t{i}", execution_summary=f"{SUMMARIES[i % 6]} #{i}", success=i % 3 != 0
            ),
            namespace=namespace,
            event_id=f"{namespace}-t{i}",
        )
        for i in range(count)
    ]


def _seq(events: Sequence[object], start: int = 1) -> list[SequencedEvent]:
    return [
        SequencedEvent(start + i, T0 + timedelta(seconds=i), e)  # type: ignore[arg-type]
        for i, e in enumerate(events)
    ]


def _projection(directory: Path | None = None) -> VectorProjection:
    return VectorProjection(directory, HashingEmbedder())


def _answers(
    projection: VectorProjection, namespace: str = "default"
) -> list[list[tuple[str, float]]]:
    return [
        [
            (h["id"], h["similarity_score"])
            for h in projection.search(namespace=namespace, text=q, top_k=5)
        ]
        for q in QUERIES
    ]


async def test_live_index_and_replayed_index_give_the_same_neighbours(
    event_log: EventLog, tmp_path: Path
) -> None:
    """Projected live by a runner, or rebuilt by replay, the index answers every query with the
    same memories and the same scores; a save/load round trip keeps them too."""
    await event_log.append_many(_tasks(400))  # type: ignore[arg-type]
    live = _projection(tmp_path / "live")
    runner = ProjectionRunner(
        event_log.js,
        event_log.stream_name,
        live,
        durable=f"v_{event_log.stream_name}",
        settings=RunnerSettings(batch_size=64, max_wait_s=0.1),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(30):
        while runner.checkpoint < 400:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    rebuilt = _projection()
    await replay(event_log.js, event_log.stream_name, [rebuilt], batch_size=500)
    assert _answers(live) == _answers(rebuilt)
    assert all(len(a) == 5 for a in _answers(live))
    live.close()
    reopened = _projection(tmp_path / "live")
    assert reopened.checkpoint() == 400
    assert _answers(reopened) == _answers(rebuilt)


async def test_bad_precomputed_vector_is_a_dead_letter_and_the_rest_is_indexed(
    event_log: EventLog, settings: Settings, tmp_path: Path
) -> None:
    """A task.executed whose embedding has the wrong dimension is dead-lettered with kind
    dimension_mismatch; the events around it are indexed."""
    good = HashingEmbedder().embed(["a precomputed memory"])[0].tolist()
    events = [
        *_tasks(3),
        make_event(
            TaskExecuted(
                task_id="bad",
                execution_summary="bad vector",
                success=True,
                embedding=[0.1, 0.2, 0.3],
            ),
            event_id="bad-vector",
        ),
        make_event(
            TaskExecuted(
                task_id="pre", execution_summary="precomputed", success=True, embedding=good
            ),
            event_id="good-vector",
        ),
    ]
    await event_log.append_many(events)  # type: ignore[arg-type]
    publisher = DeadLetterPublisher(event_log.js, settings.stream)
    await publisher.ensure()
    projection = _projection(tmp_path / "v")
    runner = ProjectionRunner(
        event_log.js,
        event_log.stream_name,
        projection,
        durable=f"d_{event_log.stream_name}",
        dead_letters=publisher,
        settings=RunnerSettings(batch_size=50, max_wait_s=0.1),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    async with asyncio.timeout(20):
        while runner.checkpoint < 5:
            await asyncio.sleep(0.05)
    stop.set()
    await task
    assert projection.memory("bad-vector") is None
    assert projection.memory("good-vector") is not None
    assert {m.id for m in projection.memories.values()} == {
        "default-t0",
        "default-t1",
        "default-t2",
        "good-vector",
    }
    hits = projection.search(namespace="default", vector=good, top_k=1)
    assert hits[0]["id"] == "good-vector" and hits[0]["similarity_score"] > 0.99
    letter = await event_log.js.get_msg(publisher.stream_name, 1)
    assert letter.subject == "engram.deadletter.dimension_mismatch"
    assert b"3-d embedding" in (letter.data or b"")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(SUMMARIES)), min_size=1, max_size=25
    ),
    st.sampled_from(QUERIES),
    st.booleans(),
)
def test_no_query_in_namespace_a_returns_b_memories(
    memories: list[tuple[str, str]], query: str, success_only: bool
) -> None:
    """Whatever is stored, a search in namespace A only ever returns A's memories, one per
    distinct text (a repeated text is one memory whose outcome is its latest)."""
    events = [
        make_event(
            TaskExecuted(task_id=f"t{i}", execution_summary=text, success=i % 2 == 0),
            namespace=ns,
            event_id=f"{ns}-{i}",
        )
        for i, (ns, text) in enumerate(memories)
    ]
    projection = _projection()
    items = _seq(events)
    projection.apply(items, [], items[-1].sequence)
    hits = projection.search(namespace="A", text=query, top_k=50, success_only=success_only)
    assert all(h["namespace"] == "A" and h["id"].startswith("A-") for h in hits)
    latest = {text: i % 2 == 0 for i, (ns, text) in enumerate(memories) if ns == "A"}
    expected = {text for text, succeeded in latest.items() if succeeded or not success_only}
    # one hit per distinct text, each passing the filter; a memory scoring 0 is not a hit
    assert {h["text"] for h in hits} <= expected and len(hits) == len({h["text"] for h in hits})
    assert all(h["similarity_score"] > 0 for h in hits)
    everything = projection.search(
        namespace="A", text=query, top_k=50, success_only=success_only, mode="vector"
    )
    assert len(hits) >= len(everything)  # hybrid finds at least what the vectors alone find


def test_decisions_knowledge_outcomes_and_reuse_survive_replay() -> None:
    """Decisions get their outcome, a knowledge document replaced by id is found once, and
    reused_count (from memory.recalled events) is the same after a replay."""
    events = [
        make_event(
            DecisionLogged(
                decision_id="d1",
                actor="planner",
                decision="use a cache",
                rationale="reads dominate",
            ),
            event_id="dec-1",
        ),
        make_event(DecisionOutcome(decision_id="d1", success=True)),
        make_event(
            KnowledgeAdded(
                kind="procedure", title="Release", content="build then ship", knowledge_id="k"
            ),
            event_id="kb-1",
        ),
        make_event(
            KnowledgeAdded(
                kind="procedure", title="Release", content="build, canary, ship", knowledge_id="k"
            ),
            event_id="kb-2",
        ),
        make_event(MemoryRecalled(memory_ids=["dec-1", "kb-2"])),
        make_event(MemoryRecalled(memory_ids=["dec-1"])),
    ]
    items = _seq(events)
    first, second = _projection(), _projection()
    first.apply(items, [], items[-1].sequence)
    for item in items:
        second.apply([item], [], item.sequence)
    for projection in (first, second):
        [decision] = projection.search(
            namespace="default", text="cache", top_k=5, collections=["decisions"]
        )
        assert (decision["id"], decision["success"], decision["reused_count"]) == ("dec-1", True, 2)
        knowledge = projection.search(
            namespace="default", text="release", top_k=5, collections=["knowledge"]
        )
        assert [(k["id"], k["reused_count"]) for k in knowledge] == [("kb-2", 1)]


def test_an_index_built_by_one_embedder_refuses_another(tmp_path: Path) -> None:
    """Opening a saved index with a different embedder (or dimension) is a clear error."""
    projection = _projection(tmp_path / "v")
    items = _seq(_tasks(3))
    projection.apply(items, [], 3)
    projection.close()
    with pytest.raises(IndexMismatchError, match="hashing"):
        VectorProjection(tmp_path / "v", HashingEmbedder(dimension=128))

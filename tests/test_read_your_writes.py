"""Read your writes: a query carrying ``min_sequence`` (the sequence a write returned) is answered
once the projections its verb reads have applied it, or after the engine's bound marked
``stale`` with the sequence it reflects; ``MemoryClient(consistency="read_your_writes")`` does
this for its own writes. Against a real engine on a real nats-server."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from nats.aio.client import Client as NatsClient

from consumers.queries.freshness import Freshness, Progress
from engine import MemoryClient
from engine.errors import UsageError
from engine.settings import Settings
from engine.stream import EventLog
from engine.verbs.replies import Consistency
from engram.app import Engine
from tests.engines import running, settle

STEPS = ["plan", "apply", "verify"]


async def serving(engine: Engine) -> None:
    """Until the engine answers queries and its projections are caught up."""
    async with asyncio.timeout(30):
        while engine.dispatcher is None:
            await asyncio.sleep(0.02)
    await settle(engine)


async def test_a_store_is_found_by_the_search_right_after_it_200_times_out_of_200(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """Store, then search at once, 200 times: with read_your_writes the memory just stored is
    always the first hit and no answer is stale."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(
            settings=settings, consistency="read_your_writes", ensure_stream=True
        ) as memory,
    ):
        await serving(engine)
        found = 0
        for i in range(200):
            token = f"zebra{i}quokka"
            written = await memory.store_execution(
                task_id=f"t{i}", execution_summary=f"migrated the {token} cluster", success=True
            )
            hits = await memory.search_similar(token, mode="lexical", top_k=1)
            assert memory.last_read is not None and not memory.last_read.stale, i
            assert memory.last_read.sequence >= written
            found += bool(hits) and hits[0].task_id == f"t{i}"
        assert found == 200


async def test_each_projection_verb_waits_for_its_own_projections(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """The table verbs (metrics), the learner's (task_metrics) and the memory verbs (search,
    assemble_context) each reflect a write right after it; a verb that reads no projection
    (status) carries no consistency."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(
            settings=settings, consistency="read_your_writes", ensure_stream=True
        ) as memory,
    ):
        await serving(engine)
        for n in range(1, 4):
            written = await memory.store_workflow(
                task_type="testing", workflow_steps=STEPS, success=True, duration=1.0
            )
            metrics = await memory.table_metrics("testing")
            assert metrics[0].total_executions == n
            learned = await memory.get_task_success_metrics("testing")
            assert learned is not None and learned.total_executions == n
            assert memory.last_read is not None and memory.last_read.sequence >= written
        await memory.add_knowledge(kind="procedure", title="Rotate", content="gryphon rotation")
        context = await memory.assemble_context("gryphon rotation", max_tokens=300)
        assert "gryphon" in " ".join(chunk.text for chunk in context.chunks)
        await memory.status()
        assert memory.last_read is None


async def test_an_unreached_sequence_is_answered_stale_with_the_sequence_it_reflects(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """While the vector projection cannot apply a write, a search asking for it waits the
    engine's bound (0.3 s here) and answers ``stale`` with the sequence it does reflect; once
    the projection moves again the same question is answered fresh, with the write found."""
    settings = settings.model_copy(update={"query_consistency_wait_s": 0.3})
    gate = threading.Event()
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, ensure_stream=True) as memory,
    ):
        await serving(engine)
        await memory.store_execution(task_id="t0", execution_summary="warm up", success=True)
        await settle(engine)
        vectors = engine.set.vectors
        apply = vectors.apply

        def held(*args: Any, **kwargs: Any) -> None:
            gate.wait(timeout=30)
            apply(*args, **kwargs)

        vectors.apply = held  # type: ignore[method-assign]
        try:
            written = await memory.store_execution(
                task_id="t1", execution_summary="the basilisk incident", success=True
            )
            started = time.monotonic()
            hits = await memory.search_similar(
                "basilisk", mode="lexical", min_sequence=written, top_k=3
            )
            waited = time.monotonic() - started
            read = memory.last_read
            assert read is not None and read.stale and read.sequence < written
            assert [h.task_id for h in hits] == []
            assert waited >= 0.3
        finally:
            gate.set()
        hits = await memory.search_similar("basilisk", mode="lexical", min_sequence=written)
        assert memory.last_read == Consistency(sequence=memory.last_read.sequence, stale=False)
        assert memory.last_read.sequence >= written
        assert [h.task_id for h in hits] == ["t1"]


async def test_a_sequence_beyond_the_stream_is_refused_at_once(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """A min_sequence no write returned (beyond the stream's last) is a UsageError naming it,
    answered without waiting (it would only hold a query worker)."""
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        MemoryClient(settings=settings, ensure_stream=True) as memory,
    ):
        await serving(engine)
        last = await memory.store_workflow(workflow_steps=STEPS, success=True, duration=1.0)
        started = time.monotonic()
        with pytest.raises(UsageError, match=rf"min_sequence {last + 1000} is beyond"):
            await memory.search_similar("anything", min_sequence=last + 1000)
        assert time.monotonic() - started < 1.0
        with pytest.raises(UsageError, match="min_sequence must be at least 1"):
            await memory.search_similar("anything", min_sequence=0)


async def test_an_engine_owning_some_tenants_is_fresh_for_another_tenants_later_sequence(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """An engine owning alpha never receives beta's events, so its checkpoints stop at alpha's
    last one: a min_sequence from beta's later write is still answered fresh (its consumers have
    nothing pending), not after the bound."""
    owning = settings.model_copy(update={"namespaces": ("alpha",), "query_consistency_wait_s": 5})
    async with (
        running(owning, nc, tmp_path / "alpha") as engine,
        MemoryClient(settings=settings, namespace="alpha", ensure_stream=True) as alpha,
        MemoryClient(settings=settings, namespace="beta") as beta,
    ):
        await serving(engine)
        await alpha.store_workflow(workflow_steps=STEPS, success=True, duration=1.0)
        later = await beta.store_workflow(workflow_steps=STEPS, success=True, duration=1.0)
        started = time.monotonic()
        metrics = await alpha.table_metrics(min_sequence=later)
        assert alpha.last_read is not None and not alpha.last_read.stale
        assert time.monotonic() - started < 4.0
        assert sum(m.total_executions for m in metrics) == 1


async def test_a_data_directory_read_refuses_a_sequence_to_wait_for(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """``--after-seq`` (``min_sequence``) on a data directory is refused with the reason:
    nothing applies events to it, so there is nothing to wait for."""
    from engram.local_queries import query_local

    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
    with pytest.raises(UsageError, match="waits for a running engine"):
        await query_local(tmp_path / "engine", "metrics", {"min_sequence": 1})


# -- the waiting itself, without a bus ---------------------------------------------------------


class _Applied:
    def __init__(self, checkpoints: dict[str, int], last: int) -> None:
        self.points = checkpoints
        self.last = last

    def checkpoints(self) -> Mapping[str, int]:
        return self.points

    async def settled(self, names: Iterable[str], sequence: int) -> bool:
        return False

    async def last_sequence(self) -> int:
        return self.last


@hsettings(max_examples=40, deadline=None)
@given(
    start=st.dictionaries(st.sampled_from(["tables", "patterns", "vectors"]), st.integers(0, 50)),
    moves=st.lists(
        st.tuples(st.sampled_from(["tables", "patterns", "vectors"]), st.integers(0, 60))
    ),
    wanted=st.integers(1, 60),
    reads=st.sets(st.sampled_from(["tables", "patterns", "vectors", "stream"]), min_size=1),
)
def test_an_answer_is_fresh_exactly_when_every_projection_it_reads_applied_the_sequence(
    start: dict[str, int],
    moves: list[tuple[str, int]],
    wanted: int,
    reads: set[str],
) -> None:
    """Whatever the projections' progress, the consistency returned is fresh iff every
    projection the verb reads reached the sequence (its ``sequence`` the lowest of theirs, at
    least the one asked for), stale otherwise (its ``sequence`` below the one asked for); a
    verb reading only the stream has none."""

    async def scenario() -> Consistency | None:
        points = {"tables": 0, "patterns": 0, "vectors": 0, **start}
        applied = _Applied(points, last=100)
        progress = Progress()
        freshness = Freshness(applied, progress, wait_s=0.05)

        async def advance() -> None:
            for name, sequence in moves:
                await asyncio.sleep(0)
                points[name] = max(points[name], sequence)
                progress.advanced()

        mover = asyncio.create_task(advance())
        answer = await freshness.consistency(reads, wanted)
        await mover
        return answer

    answer = asyncio.run(scenario())
    projections = reads - {"stream"}
    if not projections:
        assert answer is None
        return
    assert answer is not None
    if answer.stale:
        assert answer.sequence < wanted
    else:
        assert answer.sequence >= wanted
    final = {"tables": 0, "patterns": 0, "vectors": 0, **start}
    for name, sequence in moves:
        final[name] = max(final[name], sequence)
    if min(final[name] for name in projections) < wanted:
        assert answer.stale

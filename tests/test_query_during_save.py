"""No query waits for a save: while a projection saves its whole state (seconds on a large
state), queries over that state answer at once and the event loop stays free to renew the
announcer lease. Against a real nats-server and a running engine whose save is made slow."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from consumers.lease import BUCKET
from engine import MemoryClient
from engine.settings import Settings
from engine.stream import EventLog
from projections.learning import persistence as learning_persistence
from projections.learning import projection as learning_projection
from projections.save_policy import SavePolicy
from projections.sessions import persistence as sessions_persistence
from projections.sessions import projection as sessions_projection
from projections.vectors.index_set import IndexSet
from tests.engines import running, settle
from tests.query_subjects import raw_subject

SAVE_S = 3.0
STEPS = ["plan", "write_code", "run_tests"]


class SlowSave:
    """Wraps a persistence write: records when it starts and ends, sleeps ``SAVE_S`` first."""

    def __init__(self, real: Callable[..., Any]) -> None:
        self.real = real
        self.started = threading.Event()
        self.finished = threading.Event()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.started.set()
        try:
            time.sleep(SAVE_S)
            return self.real(*args, **kwargs)
        finally:
            self.finished.set()


def _slow_index_save(slow: SlowSave) -> Callable[..., Any]:
    def save(self: IndexSet, *args: Any, **kwargs: Any) -> Any:
        return slow(self, *args, **kwargs)

    return save


async def _timed(nc: NatsClient, verb: str, body: dict[str, Any]) -> float:
    began = time.perf_counter()
    reply = await nc.request(raw_subject(verb, body), json.dumps(body).encode(), timeout=10)
    elapsed = time.perf_counter() - began
    answer = json.loads(reply.data)
    assert "error" not in answer, answer
    if verb == "patterns":
        assert [p["workflow_steps"] for p in answer["patterns"]] == [STEPS]
    elif verb == "sessions":
        assert answer["sessions"] and answer["sessions"][0]["session_id"] == "s-1"
    else:
        assert answer["hits"], answer
    return elapsed


async def _lease_revision(nc: NatsClient, stream: str) -> int:
    kv = await nc.jetstream().key_value(BUCKET)
    entry = await kv.get(f"announcer.{stream}")
    assert entry.revision is not None
    return entry.revision


@pytest.mark.parametrize("slow_projections", [("patterns", "vectors"), ("sessions",)])
async def test_queries_answer_and_the_lease_is_renewed_while_a_projection_saves(
    settings: Settings,
    nc: NatsClient,
    event_log: EventLog,
    monkeypatch: pytest.MonkeyPatch,
    slow_projections: tuple[str, ...],
) -> None:
    """While the learner and the vector index (or the session compactor) spend 3 s writing
    their state, ``patterns``, ``sessions`` and ``search`` queries each answer in under 100 ms
    (median; none takes a third of the save, against scheduler noise on a shared machine), and
    the announcer lease's KV entry is renewed during the save. Before, a query took the
    learner's lock on the event loop and blocked it (queries, runners, lease) until the save
    ended."""
    async with (
        running(settings, nc, settings.data_dir / "engine") as engine,
        MemoryClient(settings=settings, agent_id="a1") as memory,
    ):
        await memory.start_session("s-1")
        for i in range(3):
            await memory.store_workflow(
                task_type="deployment", workflow_steps=STEPS, success=True, duration=1.0 + i
            )
        await memory.store_execution(
            task_id="t-1",
            execution_summary="rotated the billing credentials",
            success=True,
            session_id="s-1",
        )
        await memory.end_session("s-1", success=True)
        await settle(engine)

        lease = engine._lease
        assert lease is not None
        lease._ttl_s = 1.5  # renew every 0.5 s, so renewals are due within the save

        slow: dict[str, SlowSave] = {}
        if "patterns" in slow_projections:
            slow["patterns"] = SlowSave(learning_persistence.save_state)
            monkeypatch.setattr(learning_projection, "save_state", slow["patterns"])
        if "sessions" in slow_projections:
            slow["sessions"] = SlowSave(sessions_persistence.save_state)
            monkeypatch.setattr(sessions_projection, "save_state", slow["sessions"])
        if "vectors" in slow_projections:
            slow["vectors"] = SlowSave(IndexSet.save)
            monkeypatch.setattr(IndexSet, "save", _slow_index_save(slow["vectors"]))
        for projection in (engine.set.learner, engine.set.sessions, engine.set.vectors):
            projection.save_policy = SavePolicy(every_events=1, min_interval_s=0.0)

        # One event every one of these projections sees: each save is due at once.
        await memory.store_execution(
            task_id="t-2", execution_summary="rotated the billing keys", success=True
        )
        async with asyncio.timeout(10):
            while not all(s.started.is_set() for s in slow.values()):
                await asyncio.sleep(0.01)
        save_began = time.monotonic()
        revision = await _lease_revision(nc, settings.stream.name)

        latencies: dict[str, list[float]] = {"patterns": [], "sessions": [], "search": []}
        bodies: dict[str, dict[str, Any]] = {
            "patterns": {"min_success_rate": 0.5},
            "sessions": {"summary": True},
            "search": {"text": "rotated the billing credentials"},
        }
        while time.monotonic() - save_began < SAVE_S - 0.8:
            for verb, body in bodies.items():
                latencies[verb].append(await _timed(nc, verb, body))
            await asyncio.sleep(0.05)
        renewed = await _lease_revision(nc, settings.stream.name)
        still_saving = not any(s.finished.is_set() for s in slow.values())

        async with asyncio.timeout(10):
            while not all(s.finished.is_set() for s in slow.values()):
                await asyncio.sleep(0.05)
        monkeypatch.undo()  # the engine's closing save runs at full speed

    assert still_saving, "the queries must have run while the saves were in progress"
    for verb, measured in latencies.items():
        assert len(measured) >= 5, (verb, measured)
        assert statistics.median(measured) < 0.1, (verb, measured)
        assert max(measured) < SAVE_S / 3, (verb, measured)
    assert renewed > revision, "the announcer lease was not renewed during the save"

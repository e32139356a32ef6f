"""Concurrent single appends on one client share one bounded window of acks (``AckRouter``):
each caller still gets its own sequence or its own error, never more than ``max_in_flight``
acks are awaited at once, and an ack that never comes fails its caller after the timeout.
Against real nats-servers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from engine import MemoryClient
from engine.errors import ConcurrencyConflictError, PublishFailedError
from engine.events import WorkflowExecuted
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engine.stream._ack_window import AckRouter

STEPS = ["plan", "apply"]


async def test_concurrent_stores_each_get_their_own_sequence_within_the_window(
    settings: Settings, event_log: EventLog
) -> None:
    """600 concurrent store_workflow calls with a window of 16: 600 distinct sequences, each
    the one the stream holds the call's event at, and at most 16 acks awaited at any time."""
    narrow = settings.model_copy(update={"publish_max_in_flight": 16})
    async with MemoryClient(settings=narrow, agent_id="a") as memory:
        router: AckRouter = memory.log._appender._router
        most = 0
        publish = router._nc.publish

        async def counting(*args: object, **kwargs: object) -> None:
            nonlocal most
            most = max(most, len(router._waiting))
            await publish(*args, **kwargs)  # type: ignore[arg-type]

        router._nc.publish = counting  # type: ignore[method-assign]
        try:
            sequences = await asyncio.gather(
                *(
                    memory.store_workflow(
                        workflow_steps=STEPS, success=True, duration=float(i), event_id=f"e{i}"
                    )
                    for i in range(600)
                )
            )
        finally:
            router._nc.publish = publish  # type: ignore[method-assign]
        assert len(set(sequences)) == 600
        assert 1 < most <= 16
        stored = {json.loads(m.data)["id"]: m.sequence async for m in event_log.read()}
        assert stored == {f"e{i}": sequence for i, sequence in enumerate(sequences)}
        assert memory.last_written == max(sequences)


async def test_one_callers_error_is_its_own(settings: Settings, event_log: EventLog) -> None:
    """Among concurrent appends, the one whose expected subject sequence is stale raises
    ConcurrencyConflictError; the others are stored."""
    async with MemoryClient(settings=settings) as memory:
        first = await memory.publish(memory.event(_workflow(0.0)), expected_last_subject_seq=0)
        results = await asyncio.gather(
            memory.publish(memory.event(_workflow(1.0)), expected_last_subject_seq=0),
            *(
                memory.store_workflow(workflow_steps=STEPS, success=True, duration=2.0)
                for _ in range(20)
            ),
            return_exceptions=True,
        )
        assert isinstance(results[0], ConcurrencyConflictError)
        assert all(isinstance(r, int) and r > first for r in results[1:])


async def test_an_ack_that_never_comes_fails_its_caller_after_the_timeout(tmp_path: Path) -> None:
    """With the server stopped (SIGSTOP) after the client connected, concurrent appends fail
    with PublishFailedError naming the missing acknowledgement, within about the timeout (1 s
    here, swept every quarter of it), and the client appends again once the server resumes."""
    with EmbeddedServer(tmp_path / "nats") as server:
        settings = Settings(
            data_dir=tmp_path / "data",
            nats=NatsSettings(url=server.url, request_timeout_s=1.0),
            stream=StreamSettings(name="ACKS"),
        )
        async with MemoryClient(settings=settings, ensure_stream=True) as memory:
            await memory.store_workflow(workflow_steps=STEPS, success=True, duration=1.0)
            pid = server._process.pid if server._process is not None else None
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                results = await asyncio.gather(
                    *(
                        memory.store_workflow(workflow_steps=STEPS, success=True, duration=1.0)
                        for _ in range(5)
                    ),
                    return_exceptions=True,
                )
                took = time.monotonic() - started
            finally:
                os.kill(pid, signal.SIGCONT)
            assert all(isinstance(r, PublishFailedError) for r in results), results
            assert "no acknowledgement" in str(results[0])
            assert 0.9 <= took < 3.0
            assert await memory.store_workflow(workflow_steps=STEPS, success=True, duration=1.0)


def _workflow(duration: float) -> WorkflowExecuted:
    return WorkflowExecuted(workflow_steps=STEPS, success=True, duration=duration)

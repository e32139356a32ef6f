"""Two engines on ONE nats-server, each with its own stream, event prefix and service prefix:
neither sees the other's events, dead letters or queries, and nothing travels on the default
subjects (``memory.>``, ``engram.>``)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.errors import NotFoundError

from consumers.deadletter_view import read_dead_letters
from engine import MemoryClient
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from tests.engines import running, settle

pytestmark = pytest.mark.timeout(120)


def _settings(tmp_path: Path, url: str, stream: str, team: str) -> Settings:
    return Settings(
        data_dir=tmp_path / team,
        nats=NatsSettings(url=url),
        stream=StreamSettings(
            name=f"{stream}_{team.upper()}",
            subject_prefix=f"{team}.memory",
            service_prefix=f"{team}.engram",
        ),
    )


@contextlib.asynccontextmanager
async def _cleanup(nc: NatsClient, *settings: Settings) -> AsyncIterator[None]:
    try:
        yield
    finally:
        js = nc.jetstream()
        for one in settings:
            for name in (one.stream.name, one.stream.name + "_DLQ"):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(name)


async def _publish(settings: Settings, task_type: str, count: int) -> None:
    async with MemoryClient(settings=settings, namespace="ns") as client:
        for i in range(count):
            await client.store_workflow(
                task_type=task_type,
                workflow_steps=["plan", f"{task_type}-{i % 2}"],
                success=i % 4 != 0,
                duration=1.0,
            )


async def test_two_engines_with_two_prefixes_on_one_server_never_see_each_other(
    nats_url: str, nc: NatsClient, stream_name: str, tmp_path: Path
) -> None:
    """Engines a and b (streams *_A and *_B, prefixes a.memory / a.engram and b.memory /
    b.engram) run side by side on one server. Each stream holds only its own prefix's
    subjects, with its own workflows, its learner's pattern.learned and its usage events;
    each engine's tables hold only its own workflows; a malformed message on a.memory is a
    dead letter of a only, under a.engram.deadletter; each SDK's queries are answered by its
    own engine; and a subscriber on the default subjects hears nothing."""
    a = _settings(tmp_path, nats_url, stream_name, "a")
    b = _settings(tmp_path, nats_url, stream_name, "b")
    default_heard: list[str] = []

    async def on_default(msg: Msg) -> None:
        default_heard.append(msg.subject)

    listeners = [await nc.subscribe(s, cb=on_default) for s in ("memory.>", "engram.>")]
    async with (
        _cleanup(nc, a, b),
        running(a, nc, a.data_dir) as engine_a,
        running(b, nc, b.data_dir) as engine_b,
    ):
        await settle(engine_a)  # the streams exist once the engines run
        await _publish(a, "alpha", 24)
        await _publish(b, "beta", 16)
        await nc.jetstream().publish("a.memory.task.executed", b"{not json")
        async with MemoryClient(settings=a) as client_a, MemoryClient(settings=b) as client_b:
            await settle(engine_a)
            await settle(engine_b)
            status_a, status_b = await client_a.status(), await client_b.status()
            flows_a = await client_a.workflow_metrics(every_namespace=True)
            flows_b = await client_b.workflow_metrics(every_namespace=True)
            await client_a.get_task_context("alpha work")  # a context.suggested of a's
        await settle(engine_a)
        tables_a = engine_a.set.store.reader().execute("SELECT task_type FROM workflows")
        types_a = {row[0] for row in tables_a.fetchall()}
        dead_a = await read_dead_letters(nc.jetstream(), a.stream)
        dead_b = await read_dead_letters(nc.jetstream(), b.stream)
        subjects: dict[str, list[str]] = {}
        for one in (a, b):
            log = EventLog(nc, one.stream)
            subjects[one.stream.subject_prefix] = [m.subject async for m in log.read()]
            info = await log.js.stream_info(one.stream.name)
            assert info.config.subjects == [f"{one.stream.subject_prefix}.>"]
            dlq = await log.js.stream_info(one.stream.name + "_DLQ")
            assert dlq.config.subjects == [f"{one.stream.service_prefix}.deadletter.>"]
    for listener in listeners:
        await listener.unsubscribe()

    assert (status_a.stream, status_b.stream) == (a.stream.name, b.stream.name)
    assert {f["task_type"] for f in flows_a} == {"alpha"} == types_a
    assert {f["task_type"] for f in flows_b} == {"beta"}
    assert sum(f["executions"] for f in flows_a) == 24
    assert sum(f["executions"] for f in flows_b) == 16
    for prefix, other in (("a.memory", "b.memory"), ("b.memory", "a.memory")):
        seen = subjects[prefix]
        assert all(s.startswith(prefix + ".") for s in seen), seen
        assert not any(s.startswith(other) for s in seen)
    assert subjects["a.memory"].count("a.memory.workflow.executed.ns") == 24
    assert subjects["b.memory"].count("b.memory.workflow.executed.ns") == 16
    assert "a.memory.pattern.learned.ns" in subjects["a.memory"]  # the learner's announcements
    assert "b.memory.pattern.learned.ns" in subjects["b.memory"]
    # the usage event of a query, in the asking client's namespace
    assert "a.memory.context.suggested.default" in subjects["a.memory"]
    assert not any(".context.suggested." in s for s in subjects["b.memory"])
    assert dead_a["total"] >= 1 and dead_b["total"] == 0
    assert {d["subject"] for d in dead_a["dead_letters"]} == {"a.memory.task.executed"}
    assert {d["kind"] for d in dead_a["dead_letters"]} == {"invalid_json"}
    assert default_heard == []

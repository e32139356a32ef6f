"""Resolving where NATS is: an explicit URL, a running embedded server, or a new one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from nats.aio.client import Client as NatsClient

from engine.connection import connect
from engine.server import EmbeddedServer, read_server_record, start_lock
from engine.settings import Settings

__all__ = ["NatsEndpoint", "open_nats"]


@dataclass(frozen=True, slots=True)
class NatsEndpoint:
    """A live connection and where it came from."""

    nc: NatsClient
    url: str
    source: str
    """``url`` (given), ``embedded-running`` (found in the data dir) or ``embedded-started``."""


@asynccontextmanager
async def open_nats(settings: Settings, *, persistent: bool = False) -> AsyncIterator[NatsEndpoint]:
    """Connect as configured: ``nats.url``, else the embedded server recorded in the data
    directory, else start one there for the duration of the block (its store persists).
    """
    server: EmbeddedServer | None = None
    if settings.nats.url:
        url, source = settings.nats.url, "url"
    else:
        # Two commands starting at once on one data dir must not start two servers.
        with start_lock(settings.server_dir):
            record = read_server_record(settings.server_dir)
            if record is not None:
                url, source = record.url, "embedded-running"
            else:
                server = EmbeddedServer(
                    settings.server_dir,
                    port=settings.embedded_port,
                    sync_always=settings.embedded_sync_always,
                )
                url, source = server.start(), "embedded-started"
    try:
        # persistent: reconnect for as long as it runs (engram serve), not give up after 5 s.
        nc = await connect(settings.nats, url, persistent=persistent)
        try:
            yield NatsEndpoint(nc=nc, url=url, source=source)
        finally:
            await nc.drain()
    finally:
        if server is not None:
            server.stop()

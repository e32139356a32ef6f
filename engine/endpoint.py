"""Resolving where NATS is: an explicit URL, a running embedded server, or a new one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from nats.aio.client import Client as NatsClient
from nats.errors import Error as NatsError

from engine.connection import connect
from engine.server import EmbeddedServer, read_server_record, start_lock
from engine.settings import Settings

__all__ = ["NatsEndpoint", "close_connection", "open_nats"]

log = structlog.get_logger(__name__)

CLOSE_TIMEOUT_S = 2.0
"""How long closing a connection whose server is away may take before it is abandoned."""


@dataclass(frozen=True, slots=True)
class NatsEndpoint:
    """A live connection and where it came from."""

    nc: NatsClient
    url: str
    source: str
    """``url`` (given), ``embedded-running`` (found in the data dir) or ``embedded-started``."""
    server: EmbeddedServer | None = None
    """The embedded server this block started (``embedded-started``), else None."""


async def close_connection(nc: NatsClient, *, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Drain ``nc`` when it is connected, else close it: during an outage there is nothing to
    drain (nats-py raises ConnectionReconnectingError), and a stop must not wait for NATS.
    Never raises: what was buffered for a server that is gone is dropped (never acknowledged,
    so nothing acknowledged is lost)."""
    if nc.is_connected:
        try:
            await nc.drain()
            return
        except (NatsError, OSError, TimeoutError) as exc:  # lost while draining: close the rest
            log.warning("NATS connection closed without draining", error=repr(exc))
    if nc.is_closed:
        return
    try:
        async with asyncio.timeout(timeout_s):
            # nats-py flushes what it buffered while reconnecting into the dead socket.
            await nc.close()
    except (NatsError, OSError, TimeoutError) as exc:
        log.debug("NATS connection closed while the server is away", error=repr(exc))


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
            yield NatsEndpoint(nc=nc, url=url, source=source, server=server)
        finally:
            await close_connection(nc)
    finally:
        if server is not None:
            server.stop()

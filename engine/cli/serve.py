"""engram serve: run every projection live and the query service until told to stop."""

from __future__ import annotations

import argparse
import asyncio
import signal

import structlog

from engine.cli._common import EXIT_OK
from engine.connection import redact_url
from engine.endpoint import open_nats
from engine.settings import Settings

__all__ = ["add_sql_flag", "cmd_serve"]

log = structlog.get_logger(__name__)


def add_sql_flag(parser: argparse.ArgumentParser) -> None:
    """``--enable-sql``: answer the operator verb ``sql`` over NATS (settings.query_sql)."""
    parser.add_argument(
        "--enable-sql",
        action="store_true",
        default=None,
        dest="enable_sql",
        help="answer engram sql over NATS, in its sandbox (default: ENGRAM_QUERY_SQL, else off)",
    )


async def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start (or connect to) NATS, run the engine, stop cleanly on SIGINT/SIGTERM.

    The engine creates the stream, or raises its limits to the settings'; it lowers them only
    with ``--allow-stream-downgrade`` (``settings.stream.allow_downgrade``)."""
    from consumers.app import Engine

    if getattr(args, "enable_sql", None):
        settings = settings.model_copy(update={"query_sql": True})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # A persistent connection: after an outage of any length the engine reconnects by itself.
    async with open_nats(settings, persistent=True) as endpoint:
        engine = Engine(settings, endpoint.nc, endpoint.url)
        log.info(
            "engram serving",
            nats_url=redact_url(endpoint.url),
            server=endpoint.source,
            stream=settings.stream.name,
            data_dir=str(settings.data_dir),
            sql_over_nats=settings.query_sql,
        )
        await engine.run(stop)
        log.info("engram stopped")
    return EXIT_OK

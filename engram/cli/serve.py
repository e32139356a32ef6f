"""engram serve: run every projection live and the query service until told to stop."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from engine.connection import redact_url
from engine.endpoint import open_nats
from engine.errors import ConfigurationError, EmbeddedServerError
from engine.server import EmbeddedServer
from engine.settings import Settings, parse_namespaces
from engine.supervisor import ServerSupervisor
from engram.cli._common import EXIT_OK

__all__ = [
    "add_namespaces_flag",
    "add_operator_flags",
    "cmd_serve",
    "serve_command",
    "with_metrics",
    "with_namespaces",
]

log = structlog.get_logger(__name__)


def serve_command(
    nats_url: str, stream: str, data_dir: Path, namespaces: Sequence[str] | None = None
) -> list[str]:
    """The command line that runs an engine as a process of its own (this interpreter's
    ``engram serve``), owning ``namespaces`` (None: every one): for supervisors, tests and
    benchmarks that start, kill and restart engines."""
    argv = [sys.executable, "-m", "engram.cli.main", "serve", "--nats-url", nats_url]
    argv += ["--stream", stream, "--data-dir", str(data_dir)]
    if namespaces is not None:
        argv += ["--namespaces", ",".join(namespaces)]
    return argv


def add_operator_flags(parser: argparse.ArgumentParser) -> None:
    """``--enable-sql`` / ``--enable-export``: answer the operator verbs ``sql`` / ``export``
    over NATS (settings.query_sql / settings.query_export)."""
    parser.add_argument(
        "--enable-sql",
        action="store_true",
        default=None,
        dest="enable_sql",
        help="answer engram sql over NATS, in its sandbox (default: ENGRAM_QUERY_SQL, else off)",
    )
    parser.add_argument(
        "--enable-export",
        action="store_true",
        default=None,
        dest="enable_export",
        help="answer engram export over NATS, writing under <data dir>/exports "
        "(default: ENGRAM_QUERY_EXPORT, else off)",
    )
    add_namespaces_flag(parser, "project and answer only these tenants")
    parser.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. "
        "127.0.0.1:9464 (default: ENGRAM_METRICS_LISTEN, else none; no authentication: "
        "keep it on loopback or behind a firewall)",
    )


def add_namespaces_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """``--namespaces alpha,beta``: settings.namespaces (``ENGRAM_NAMESPACES``)."""
    parser.add_argument(
        "--namespaces",
        metavar="NS[,NS...]",
        help=f"{what}, e.g. alpha,beta (default: ENGRAM_NAMESPACES, else every namespace; "
        "engines owning disjoint sets share one stream)",
    )


def with_namespaces(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` with the namespaces of ``--namespaces`` when given (each checked against
    the namespace pattern: ConfigurationError, exit 2, naming it)."""
    text = getattr(args, "namespaces", None)
    if text is None:
        return settings
    try:
        namespaces = parse_namespaces(text)
    except ValueError as exc:
        raise ConfigurationError(f"--namespaces: {exc}") from None
    if namespaces is None:
        raise ConfigurationError("--namespaces names no namespace (omit it for every one)")
    return settings.model_copy(update={"namespaces": namespaces})


def with_metrics(args: argparse.Namespace, settings: Settings) -> Settings:
    """``settings`` listening for metrics where ``--metrics`` says (ConfigurationError, exit
    2, for an address that is not HOST:PORT)."""
    listen = getattr(args, "metrics", None)
    if listen is None:
        return settings
    from engram.observability.endpoint import parse_listen

    parse_listen(listen)
    return settings.model_copy(update={"metrics_listen": listen})


async def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """Start (or connect to) NATS, run the engine, stop cleanly on SIGINT/SIGTERM.

    The engine creates the stream, or raises its limits to the settings'; it lowers them only
    with ``--allow-stream-downgrade`` (``settings.stream.allow_downgrade``). An embedded server
    that serve started is supervised: restarted when it dies; when it keeps dying the engine
    stops and EmbeddedServerError is raised (exit 1)."""
    from engram.app import Engine

    if getattr(args, "enable_sql", None):
        settings = settings.model_copy(update={"query_sql": True})
    if getattr(args, "enable_export", None):
        settings = settings.model_copy(update={"query_export": True})
    settings = with_namespaces(args, settings)
    settings = with_metrics(args, settings)
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
            export_over_nats=settings.query_export,
            namespaces="all" if settings.namespaces is None else ",".join(settings.namespaces),
        )
        watch = asyncio.create_task(_supervise(endpoint.server, stop), name="server-supervisor")
        http = _http_beside(args, settings, endpoint.url, stop)  # engram serve --http
        try:
            await engine.run(stop)
        finally:
            stop.set()
            failure = await watch
            if http is not None:
                await http  # raises what stopped the gateway (and with it the engine)
        log.info("engram stopped")
    if failure is not None:
        raise failure
    return EXIT_OK


async def _supervise(
    server: EmbeddedServer | None, stop: asyncio.Event
) -> EmbeddedServerError | None:
    """Restart the embedded server serve started until ``stop``; when it keeps dying, stop the
    engine and return the error (raised once the engine has stopped cleanly)."""
    if server is None:  # a given server, or one another command started: not ours to keep
        await stop.wait()
        return None
    try:
        await ServerSupervisor(server).run(stop)
    except EmbeddedServerError as exc:
        log.error("stopping: the embedded nats-server cannot be kept running", error=str(exc))
        stop.set()
        return exc
    return None


def _http_beside(
    args: argparse.Namespace, settings: Settings, nats_url: str, stop: asyncio.Event
) -> asyncio.Task[None] | None:
    """The HTTP gateway beside the engine with ``--http`` (the http extra), else None."""
    if not getattr(args, "http", None):
        return None
    from engram.cli.http_verbs import http_beside

    return http_beside(args, settings, nats_url, stop)

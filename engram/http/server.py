"""Running the HTTP API: uvicorn on an address, until told to stop.

``engram http`` runs it as a process of its own; ``engram serve --http`` runs it beside the
engine, in the engine's process and event loop. Either way the gateway talks to the engine over
NATS only. Signals are the caller's: uvicorn's own handlers are not installed (the caller sets
``stop``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn
from starlette.types import ASGIApp

from engine.errors import ConfigurationError
from engine.settings import Settings
from engram.http.app import McpMount, create_app
from engram.http.gateway import Gateway
from engram.http.keys import KeyRing
from engram.http.limits import DEFAULT_MAX_BODY_BYTES

__all__ = [
    "Prepared",
    "bind",
    "mcp_mount",
    "parse_listen",
    "prepare_gateway",
    "run_prepared",
    "serve_app",
]

log = structlog.get_logger(__name__)

GRACE_S = 3.0
"""How long a stop waits for open requests (and event streams) before cutting them."""


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port); ConfigurationError otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host or int(port) > 65_535:
        raise ConfigurationError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def bind(listen: str) -> socket.socket:
    """A listening socket on ``listen`` (port 0: any free port; ``sock.getsockname()`` says
    which)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say so, and
    # without it a response's body waits for the client's delayed ACK of its headers (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The caller owns the signals (engram serve stops the engine and the gateway together).
        yield


async def serve_app(
    app: ASGIApp,
    sock: socket.socket,
    stop: asyncio.Event,
    *,
    on_ready: Callable[[], None] | None = None,
    on_stop: Callable[[], None] | None = None,
) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set (``on_stop`` is called then, before
    the server closes; open requests get ``GRACE_S``)."""
    config = uvicorn.Config(
        app,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(GRACE_S),
        server_header=False,
        proxy_headers=False,
    )
    server = _Server(config)

    async def watch() -> None:
        while not server.started:  # noqa: ASYNC110 - uvicorn sets a flag, not an event
            await asyncio.sleep(0.02)
        if on_ready is not None:
            on_ready()
        await stop.wait()
        if on_stop is not None:
            on_stop()
        server.should_exit = True

    watcher = asyncio.create_task(watch(), name="http-stop")
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def mcp_mount(gateway: Gateway) -> McpMount | None:
    """The MCP server's streamable HTTP app for ``/mcp`` on the gateway's client, or None
    when the ``mcp`` extra is not installed (then ``/mcp`` is a 404)."""
    try:
        from engram.mcp.http import mcp_asgi_app
    except ImportError as exc:
        log.info("no MCP at /mcp: the mcp extra is not installed", error=str(exc))
        return None
    mcp = mcp_asgi_app(gateway.client)
    return McpMount(mcp, mcp.lifespan)


@dataclass(frozen=True, slots=True)
class Prepared:
    """A gateway ready to serve: its app, its bound socket and where it listens."""

    app: ASGIApp
    sock: socket.socket
    url: str
    keys: Path
    closing: asyncio.Event
    """Set on stop: the open event streams end at once instead of holding the stop."""


def prepare_gateway(
    settings: Settings,
    listen: str,
    keys_path: Path,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    with_mcp: bool = True,
) -> Prepared:
    """Read the keys and bind ``listen`` now (ConfigurationError when either fails: before an
    engine beside it starts); nothing is connected yet."""
    keys = KeyRing(keys_path)
    sock = bind(listen)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    gateway = Gateway(settings)
    app = create_app(
        gateway, keys, max_body_bytes=max_body_bytes, mcp=mcp_mount(gateway) if with_mcp else None
    )
    return Prepared(app, sock, f"http://{shown}:{port}", keys_path, app.state.closing)


async def run_prepared(prepared: Prepared, stop: asyncio.Event) -> None:
    """Serve a prepared gateway until ``stop``."""

    def ready() -> None:
        log.info("engram http listening", url=prepared.url, keys=str(prepared.keys))

    try:
        await serve_app(
            prepared.app, prepared.sock, stop, on_ready=ready, on_stop=prepared.closing.set
        )
    finally:
        prepared.sock.close()

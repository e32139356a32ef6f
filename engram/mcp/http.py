"""The MCP server over streamable HTTP, for the HTTP API to mount at ``/mcp``.

The namespace of each call comes from the API key the HTTP layer authenticated
(``request.state.engram_key``; see ``engram.mcp.tenancy``), so the host must authenticate
``/mcp`` requests before they reach this app (an ASGI or HTTP middleware: a route dependency does
not run for a mounted app) and must run ``app.lifespan()`` in its own lifespan (Starlette does
not run a mounted app's lifespan)::

    mcp = mcp_asgi_app(client)
    app.mount("/mcp", mcp)                 # or Route("/mcp", mcp) to serve /mcp without a slash
    async with mcp.lifespan(): ...         # inside the host's lifespan

Stateless JSON responses: every POST is one exchange, no session to keep or to steal (each call
resolves its namespace from its own request's key), and any replica can answer it.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import Receive, Scope, Send

from engine.client import MemoryClient
from engram.mcp.calls import ClientSource, ConsistencyMode, Memory
from engram.mcp.server import build_server
from engram.mcp.tenancy import NAMESPACE_HEADER, namespace_from_key

__all__ = ["NAMESPACE_HEADER", "McpAsgiApp", "mcp_asgi_app"]

MAX_BODY_BYTES = 4 * 1024 * 1024
"""The largest MCP request body accepted (413 above)."""


class McpAsgiApp:
    """An ASGI app serving MCP, and the lifespan its host must run around it."""

    def __init__(self, manager: StreamableHTTPSessionManager, memory: Memory) -> None:
        self._manager = manager
        self.memory = memory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._manager.handle_request(scope, receive, send)

    def lifespan(self) -> AbstractAsyncContextManager[None]:
        """Enter once, in the host's lifespan, before serving (and exit at shutdown)."""
        return self._manager.run()


def mcp_asgi_app(
    client: MemoryClient | ClientSource,
    *,
    consistency: ConsistencyMode = "read_your_writes",
    transport_security: TransportSecuritySettings | None = None,
    max_request_body_size: int = MAX_BODY_BYTES,
) -> McpAsgiApp:
    """MCP over streamable HTTP on ``client``: a connected client owned by the host, or an
    async callable giving it for each call (e.g. the gateway's ``client``, which connects
    lazily; while it raises, calls are tool errors saying engram is unavailable).
    Read-your-writes holds per namespace: a read waits for the last write this app made in that
    namespace."""
    memory = Memory(client, consistency=consistency)
    server: Any = build_server(memory, namespace_from_key)
    manager = StreamableHTTPSessionManager(
        app=server,
        json_response=True,
        stateless=True,
        security_settings=transport_security,
        max_request_body_size=max_request_body_size,
    )
    return McpAsgiApp(manager, memory)

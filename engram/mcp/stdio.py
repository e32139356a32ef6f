"""``engram mcp``: the MCP server over stdio, for one namespace, as a desktop or coding agent
starts it (a subprocess speaking JSON-RPC on its stdin and stdout; logs go to stderr)."""

from __future__ import annotations

from mcp.server.stdio import stdio_server

from engine.client import MemoryClient
from engine.settings import Settings
from engram.mcp.calls import ConsistencyMode, Memory
from engram.mcp.server import build_server
from engram.mcp.tenancy import fixed_namespace

__all__ = ["serve_stdio"]


async def serve_stdio(
    settings: Settings,
    *,
    namespace: str = "default",
    consistency: ConsistencyMode = "read_your_writes",
    agent_id: str | None = None,
) -> None:
    """Serve MCP on stdin/stdout until the client closes stdin. Every call is about
    ``namespace``. Connects first (NATS URL from ``settings``, else the embedded server of the
    data directory), so a missing stream or engine address fails before the protocol starts."""
    namespace_of = fixed_namespace(namespace)
    client = MemoryClient(settings=settings, namespace=namespace, agent_id=agent_id)
    async with client:
        server = build_server(Memory(client, consistency=consistency), namespace_of)
        async with stdio_server() as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())

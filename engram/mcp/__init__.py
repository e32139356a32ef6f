"""engram as a Model Context Protocol server: tools to remember and recall, resources of what
was learned; over stdio (``engram mcp``) or streamable HTTP (mounted by the HTTP API at
``/mcp``). Needs the ``mcp`` extra (the official SDK)."""

from engram.mcp.calls import ConsistencyMode, Memory
from engram.mcp.server import build_server, tool_list
from engram.mcp.tenancy import NAMESPACE_HEADER, fixed_namespace, namespace_from_key
from engram.mcp.tools import READ_TOOLS, TOOLS, WRITE_TOOLS

__all__ = [
    "NAMESPACE_HEADER",
    "READ_TOOLS",
    "TOOLS",
    "WRITE_TOOLS",
    "ConsistencyMode",
    "Memory",
    "build_server",
    "fixed_namespace",
    "namespace_from_key",
    "tool_list",
]

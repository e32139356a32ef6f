"""The MCP server: the official SDK's low-level ``Server`` with engram's tools and resources.

The low-level server rather than the SDK's decorator API (``MCPServer``): the tools are derived
from the event and verb models at run time (``tools.input_schema``), not written as Python
functions, and every call must resolve its namespace before it runs.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.shared.exceptions import MCPError

from engine.errors import (
    ConnectionFailedError,
    EngineUnavailableError,
    EngramError,
    PermissionDeniedError,
    StreamNotFoundError,
    UsageError,
)
from engram.mcp import resources
from engram.mcp.calls import Memory
from engram.mcp.results import error_result, output_schema
from engram.mcp.tenancy import NamespaceOf
from engram.mcp.tools import TOOLS, ReadTool, WriteTool, input_schema

__all__ = ["INSTRUCTIONS", "build_server", "tool_list"]

RESOURCE_NOT_FOUND = -32002
"""The protocol's error code for a resource URI the server does not have."""

INSTRUCTIONS = (
    "engram is your long-term memory, shared with the other agents of your namespace. Before a "
    "task: get_task_context for advice, get_best_workflow for steps that worked, search_memory "
    "for similar past work. After a task: store_execution (what you did and how it went) and, "
    "for multi-step work, store_workflow. Log choices worth revisiting with log_decision and "
    "later record_outcome; keep lasting documents with add_knowledge; say whether a learned "
    "pattern helped with give_feedback. Reads reflect your own writes at once."
)

Context = ServerRequestContext[Any, Any]


def _version() -> str:
    for name in metadata.packages_distributions().get("engram", []):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return ""


def _tool(tool: WriteTool | ReadTool) -> types.Tool:
    read = isinstance(tool, ReadTool)
    return types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=input_schema(tool),
        output_schema=output_schema(tool),
        annotations=types.ToolAnnotations(
            read_only_hint=read,
            destructive_hint=False,
            idempotent_hint=read,  # a write appends a new event each time
            open_world_hint=False,
        ),
    )


def tool_list() -> list[types.Tool]:
    """Every tool as the protocol lists it (the same for every caller)."""
    return [_tool(tool) for tool in TOOLS.values()]


def _resource_error(exc: Exception) -> MCPError:
    if isinstance(exc, resources.UnknownResourceError):
        return MCPError(RESOURCE_NOT_FOUND, str(exc))
    if isinstance(exc, UsageError):
        return MCPError(types.INVALID_PARAMS, str(exc))
    if isinstance(exc, PermissionDeniedError):
        return MCPError(types.INVALID_REQUEST, f"refused: {exc}")
    if isinstance(exc, EngineUnavailableError | ConnectionFailedError | StreamNotFoundError):
        return MCPError(types.INTERNAL_ERROR, f"engram is unavailable, try again later: {exc}")
    return MCPError(types.INTERNAL_ERROR, str(exc))


def build_server(memory: Memory, namespace_of: NamespaceOf, *, name: str = "engram") -> Server[Any]:
    """An MCP server answering with ``memory`` about the namespace ``namespace_of`` finds for
    each request (see ``engram.mcp.tenancy``)."""
    tools = tool_list()

    async def list_tools(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(ctx: Context, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            namespace = namespace_of(ctx.request)
        except EngramError as exc:
            return error_result(f"no memory for this call: {exc}")
        return await memory.call(params.name, params.arguments, namespace)

    async def list_resources(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        try:
            listed = await resources.list_resources(memory, namespace_of(ctx.request))
        except EngramError as exc:
            raise _resource_error(exc) from None
        return types.ListResourcesResult(resources=listed)

    async def list_templates(
        ctx: Context, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=resources.templates())

    async def read_resource(
        ctx: Context, params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        try:
            contents = await resources.read(memory, str(params.uri), namespace_of(ctx.request))
        except EngramError as exc:
            raise _resource_error(exc) from None
        return types.ReadResourceResult(contents=[contents])

    return Server(
        name,
        version=_version(),
        title="engram memory",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read_resource,
    )

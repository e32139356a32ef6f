"""An MCP client session against ``engram mcp`` run the way an MCP host runs it: a subprocess
speaking over stdio, started by the official SDK's own client."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import mcp_types as types
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client

from engine.settings import Settings
from tests.cli_runs import REPO

__all__ = ["mcp_stdio", "structured", "text_of"]


@contextlib.asynccontextmanager
async def mcp_stdio(
    settings: Settings,
    workdir: Path,
    *args: str,
    mode: str = "auto",
    log_name: str = "mcp-server.log",
) -> AsyncIterator[Client]:
    """``python -m engram.cli.main mcp ARGS`` with ENGRAM_NATS_URL and the stream of
    ``settings``, its stderr written to ``workdir/log_name``. ``mode``: the client's protocol
    negotiation (``auto``: the newest era; ``legacy``: the initialize handshake most hosts use
    today)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "engram.cli.main", "mcp", *args],
        env={
            "PYTHONPATH": str(REPO),
            "ENGRAM_NATS_URL": str(settings.nats.url),
            "ENGRAM_STREAM__NAME": settings.stream.name,
            "ENGRAM_DATA_DIR": str(workdir / "mcp-data"),
        },
        cwd=str(workdir),
    )
    with (workdir / log_name).open("w") as errlog:
        transport = stdio_client(params, errlog=errlog)
        async with Client(transport, cache=None, mode=mode) as client:
            yield client


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


def structured(result: types.CallToolResult) -> dict[str, Any]:
    """The structured result of a successful call (failing the test with the error text)."""
    assert not result.is_error, text_of(result)
    value = result.structured_content
    assert isinstance(value, dict)
    # the text block carries the same JSON after its summary line
    assert json.loads(text_of(result).split("\n", 1)[1]) == value
    return value

"""MCP at /mcp of the HTTP API, behind its API keys: the official SDK's streamable HTTP client
with an alpha key lists the tools, stores and recalls in alpha (the namespace from the key);
without a key it gets 401 before MCP sees the request. A real gateway, engine and nats-server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

pytest.importorskip("mcp")  # a safety net only: CI installs the mcp extra

import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from engine.settings import Settings
from engine.stream import EventLog
from tests.engines import running
from tests.http_gateway import auth, engine_serving, gateway, make_keys
from tests.mcp_sessions import structured


async def test_mcp_is_served_at_slash_mcp_behind_the_keys(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """No key: 401 problem. alpha's key: tools listed; store_execution lands on
    memory.task.executed.alpha; search_memory finds it (read-your-writes)."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        gateway(settings, tmp_path / "keys.json", mcp=True) as url,
    ):
        await engine_serving(engine)
        async with httpx.AsyncClient(base_url=url) as http:
            anonymous = await http.post(
                "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            )
            assert anonymous.status_code == 401
            assert anonymous.json()["kind"] == "unauthorized"
        async with (
            httpx2.AsyncClient(headers=auth(keys["alpha"]), timeout=30) as raw,
            Client(streamable_http_client(f"{url}/mcp", http_client=raw), cache=None) as client,
        ):
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"store_execution", "search_memory"} <= tools
            stored = structured(
                await client.call_tool(
                    "store_execution",
                    {
                        "task_id": "m1",
                        "execution_summary": "rotated the okapi keys",
                        "success": True,
                    },
                )
            )
            assert stored["namespace"] == "alpha"
            message = await event_log.js.get_msg(settings.stream.name, stored["sequence"])
            assert message.subject == "memory.task.executed.alpha"
            assert json.loads(message.data or b"{}")["data"]["task_id"] == "m1"
            hits = structured(await client.call_tool("search_memory", {"text": "okapi keys"}))[
                "hits"
            ]
            assert [hit["task_id"] for hit in hits] == ["m1"]

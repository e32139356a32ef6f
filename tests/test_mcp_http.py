"""MCP over streamable HTTP (``engram.mcp.http.mcp_asgi_app``) as the HTTP API mounts it at
``/mcp``: a real uvicorn on a free port, the official SDK's client, a real engine. The host's
authentication is stood in for by a middleware that leaves the key on ``request.state.engram_key``
as the HTTP API's does; every call's namespace comes from that key (and its Engram-Namespace
header), never from the arguments."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp")  # a safety net only: CI installs the mcp extra

import httpx2
import mcp_types as types
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from nats.aio.client import Client as NatsClient
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from engine import MemoryClient
from engine.settings import Settings
from engine.stream import EventLog
from engram.mcp.http import McpAsgiApp, mcp_asgi_app
from tests.engines import running, settle
from tests.mcp_sessions import structured, text_of


@dataclass(frozen=True)
class Key:
    name: str
    namespaces: tuple[str, ...]
    operator: bool = False


KEYS = {"alpha-key": Key("alpha", ("alpha",)), "both-key": Key("both", ("alpha", "beta"))}


class KeyAuth:
    """The HTTP API's contract, reduced: a bearer key, else 401; the key on the request's state."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = Headers(scope=scope).get("authorization", "").removeprefix("Bearer ")
            key = KEYS.get(token)
            if key is None:
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            scope.setdefault("state", {})["engram_key"] = key
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def _serving(mcp: McpAsgiApp) -> AsyncIterator[str]:
    """The host app on a free port; yields the MCP URL."""
    host = Starlette(
        routes=[Mount("/mcp", app=mcp)],
        middleware=[Middleware(KeyAuth)],
        lifespan=lambda _app: mcp.lifespan(),
    )
    server = uvicorn.Server(uvicorn.Config(host, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def _client(
    url: str, key: str, namespace: str | None = None, *, mode: str = "auto"
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {key}"}
    if namespace is not None:
        headers["Engram-Namespace"] = namespace
    async with (
        httpx2.AsyncClient(headers=headers, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), cache=None, mode=mode) as client,
    ):
        yield client


async def _store(client: Client, text: str) -> dict[str, Any]:
    result = await client.call_tool(
        "store_execution", {"task_id": text[:8], "execution_summary": text, "success": True}
    )
    return structured(result)


async def test_mcp_over_http_takes_the_namespace_from_the_key(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """A key for alpha writes and recalls in alpha; a key holding alpha and beta must name one
    in the Engram-Namespace header (else a tool error), may use either, and is refused any
    other; a key for alpha naming beta is refused; a namespace argument is refused. Resources
    are the key's namespace's. A body over the limit is 413, and no key is 401."""
    async with running(settings, nc, tmp_path / "engine") as engine:
        await settle(engine)
        async with MemoryClient(settings=settings) as sdk:
            mcp = mcp_asgi_app(_source(sdk))  # as the gateway gives its client
            async with _serving(mcp) as url:
                async with _client(url, "alpha-key") as alpha:
                    stored = await _store(alpha, "alpha rotated the billing credentials")
                    assert stored["namespace"] == "alpha"
                    hits = structured(
                        await alpha.call_tool("search_memory", {"text": "billing credentials"})
                    )["hits"]
                    assert [h["text"] for h in hits] == ["alpha rotated the billing credentials"]
                    refused = await alpha.call_tool(
                        "search_memory", {"text": "billing", "namespace": "beta"}
                    )
                    assert refused.is_error and "namespace" in text_of(refused)
                    (contents,) = (await alpha.read_resource("engram://learning")).contents
                    assert isinstance(contents, types.TextResourceContents)
                    assert '"namespace": "alpha"' in contents.text

                async with _client(url, "both-key") as both:
                    unnamed = await both.call_tool("list_patterns", {})
                    assert unnamed.is_error and "Engram-Namespace" in text_of(unnamed)

                async with _client(url, "both-key", "beta", mode="legacy") as beta:
                    assert beta.protocol_version < "2026"  # the initialize handshake
                    beta_stored = await _store(beta, "beta tuned the kafka lag alarm")
                    assert beta_stored["namespace"] == "beta"
                    hits = structured(
                        await beta.call_tool("search_memory", {"text": "billing credentials kafka"})
                    )["hits"]
                    assert [h["text"] for h in hits] == ["beta tuned the kafka lag alarm"]

                for key, namespace in [("both-key", "gamma"), ("alpha-key", "beta")]:
                    async with _client(url, key, namespace, mode="legacy") as other:
                        result = await other.call_tool("list_patterns", {})
                        assert result.is_error and f"'{namespace}'" in text_of(result)

                async with httpx2.AsyncClient() as raw:
                    anonymous = await raw.post(url + "/", json={})
                    assert anonymous.status_code == 401
                    too_big = await raw.post(
                        url + "/",
                        content=b"x" * (5 * 1024 * 1024),
                        headers={
                            "Authorization": "Bearer alpha-key",
                            "Content-Type": "application/json",
                            "Accept": "application/json, text/event-stream",
                        },
                    )
                    assert too_big.status_code == 413

        async with MemoryClient(settings=settings, namespace="alpha") as check:
            found = await check.search_similar(
                "kafka lag alarm", top_k=10, min_sequence=beta_stored["sequence"]
            )
            texts = [h.text for h in found]
            assert "beta tuned the kafka lag alarm" not in texts


def _source(client: MemoryClient) -> Any:
    async def source() -> MemoryClient:
        return client

    return source

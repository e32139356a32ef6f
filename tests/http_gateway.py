"""Running the HTTP gateway in a test: a real uvicorn on a free port, real keys, real NATS."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from engine.settings import Settings
from engram.app import Engine
from engram.http.keys import KeyFile
from engram.http.server import prepare_gateway, run_prepared
from tests.engines import settle

__all__ = ["KEYS", "auth", "engine_serving", "gateway", "make_keys"]

KEYS = {
    "alpha": (["alpha"], False),
    "beta": (["beta"], False),
    "both": (["alpha", "beta"], False),
    "ops": (["alpha"], True),
}
"""Key name -> (namespaces, operator)."""


PAYLOADS: dict[str, dict[str, Any]] = {
    "workflow.executed": {"workflow_steps": ["plan"], "success": True, "duration": 2.0},
    "task.executed": {"task_id": "t1", "execution_summary": "did it", "success": True},
    "decision.logged": {"decision_id": "d1", "actor": "planner", "decision": "ship"},
    "decision.outcome": {"decision_id": "d1", "success": True},
    "pattern.feedback": {"pattern_id": "p1", "helpful": True},
    "session.started": {"session_id": "s1"},
    "session.ended": {"session_id": "s1", "success": True},
    "knowledge.added": {"kind": "procedure", "title": "deploy", "content": "run it"},
    "item.put": {"path": ["prefs"], "key": "k1", "value": {"tone": "terse"}},
    "item.deleted": {"path": ["prefs"], "key": "k1"},
    "cache.put": {"prompt": "what is zebra?", "response": "a cluster", "ttl": 60},
    "cache.evicted": {"prompt": "what is zebra?"},
}
"""A payload of each agent event type that its write routes accept."""


def make_keys(path: Path) -> dict[str, str]:
    """A keys file at ``path`` holding ``KEYS``; returns each key (the file keeps hashes)."""
    keys = KeyFile(path)
    return {name: keys.add(name, spaces, operator=op)[1] for name, (spaces, op) in KEYS.items()}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def gateway(
    settings: Settings, keys_path: Path, *, max_body_bytes: int = 1_048_576, mcp: bool = False
) -> AsyncIterator[str]:
    """The gateway on 127.0.0.1 and a free port until the block ends; yields its base URL."""
    prepared = prepare_gateway(
        settings, "127.0.0.1:0", keys_path, max_body_bytes=max_body_bytes, with_mcp=mcp
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_prepared(prepared, stop))
    try:
        async with asyncio.timeout(10), httpx.AsyncClient(base_url=prepared.url) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/openapi.json")).status_code == 200:
                        break
                await asyncio.sleep(0.02)
        yield prepared.url
    finally:
        stop.set()
        await task


async def engine_serving(engine: Engine) -> None:
    """Until the engine answers queries and its projections are caught up."""
    async with asyncio.timeout(30):
        while engine.dispatcher is None:
            await asyncio.sleep(0.02)
    await settle(engine)

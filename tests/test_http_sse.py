"""``GET /v1/namespaces/{ns}/patterns/stream``: Server-Sent Events of one tenant's
pattern.learned, as the engine announces them; the event id is the stream sequence, and
Last-Event-ID resumes after it. A tenant's stream never carries another tenant's announcements.
A real engine learns from workflows written through the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from engine.settings import Settings
from engine.stream import EventLog
from tests.engines import running
from tests.http_gateway import auth, engine_serving, gateway, make_keys

pytest.importorskip("fastapi")

STEPS = ["plan", "apply", "verify"]


class Listener:
    """The events of one open stream, parsed as they arrive."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.opened = asyncio.Event()
        self.arrived = asyncio.Event()

    async def read(self, response: httpx.Response) -> None:
        frame: dict[str, str] = {}
        async for line in response.aiter_lines():
            if line.startswith("retry:"):
                self.opened.set()
            if not line:
                if "data" in frame:
                    self.events.append(
                        {
                            "id": int(frame["id"]),
                            "event": frame["event"],
                            "data": json.loads(frame["data"]),
                        }
                    )
                    self.arrived.set()
                frame = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(": ")
            frame[field] = value

    async def until(self, count: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(15):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.events


@contextlib.asynccontextmanager
async def listening(
    http: httpx.AsyncClient, namespace: str, token: str, last_event_id: int | None = None
) -> AsyncIterator[Listener]:
    headers = auth(token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    listener = Listener()
    async with http.stream(
        "GET", f"/v1/namespaces/{namespace}/patterns/stream", headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        task = asyncio.create_task(listener.read(response))
        try:
            async with asyncio.timeout(5):
                await listener.opened.wait()
            yield listener
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


async def _learn(
    http: httpx.AsyncClient, namespace: str, token: str, task_type: str, runs: int
) -> None:
    for n in range(runs):
        reply = await http.post(
            f"/v1/namespaces/{namespace}/workflows",
            json={
                "task_type": task_type,
                "workflow_steps": STEPS,
                "success": True,
                "duration": 1.0 + n,
            },
            headers=auth(token),
        )
        assert reply.status_code == 201, reply.text


async def test_a_tenant_hears_its_own_patterns_and_resumes_by_sequence(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """alpha's stream and beta's are open while both tenants' workflows are written: each
    hears pattern.learned events of its own namespace only (the data is the stored event, the
    id its stream sequence, whose subject is memory.pattern.learned.<ns>). Reconnecting with
    Last-Event-ID = a sequence replays exactly the announcements after it, then new ones; one
    that is not a sequence is a 422."""
    keys = make_keys(tmp_path / "keys.json")
    async with (
        running(settings, nc, tmp_path / "engine") as engine,
        gateway(settings, tmp_path / "keys.json") as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        await engine_serving(engine)
        async with (
            listening(http, "alpha", keys["alpha"]) as alpha,
            listening(http, "beta", keys["beta"]) as beta,
        ):
            await _learn(http, "beta", keys["beta"], "billing", 4)
            await _learn(http, "alpha", keys["alpha"], "deploy", 4)
            heard_alpha = await alpha.until(1)
            heard_beta = await beta.until(1)
            await asyncio.sleep(1.0)  # anything else that was going to arrive
        for namespace, heard in (("alpha", alpha.events), ("beta", beta.events)):
            assert heard, namespace
            for event in heard:
                assert event["event"] == "pattern.learned"
                assert event["data"]["type"] == "pattern.learned"
                assert event["data"]["namespace"] == namespace
                stored = await event_log.js.get_msg(settings.stream.name, event["id"])
                assert stored.subject == f"memory.pattern.learned.{namespace}"
                assert json.loads(stored.data or b"{}")["id"] == event["data"]["id"]
        assert {e["data"]["data"]["task_type"] for e in heard_alpha} == {"deploy"}
        assert {e["data"]["data"]["task_type"] for e in heard_beta} == {"billing"}
        ids = [e["id"] for e in alpha.events]
        assert ids == sorted(ids)

        # Resume after the first announcement: the rest come again, in order, and then new ones.
        first = ids[0]
        async with listening(http, "alpha", keys["alpha"], last_event_id=first) as resumed:
            replayed = await resumed.until(len(ids) - 1) if len(ids) > 1 else []
            assert [e["id"] for e in replayed] == ids[1:]
            await _learn(http, "alpha", keys["alpha"], "review", 4)
            fresh = await resumed.until(len(ids))
            assert fresh[len(ids) - 1]["id"] > ids[-1]
            assert fresh[len(ids) - 1]["data"]["data"]["task_type"] == "review"
            assert all(e["data"]["namespace"] == "alpha" for e in fresh)

        # A key holding both namespaces may listen to either; a bad Last-Event-ID is a 422.
        async with listening(http, "beta", keys["both"], last_event_id=0) as again:
            assert [e["id"] for e in await again.until(len(heard_beta))] == [
                e["id"] for e in heard_beta
            ]
        bad = await http.get(
            "/v1/namespaces/alpha/patterns/stream",
            headers={**auth(keys["alpha"]), "Last-Event-ID": "yesterday"},
        )
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "Last-Event-ID"
        huge = await http.get(
            "/v1/namespaces/alpha/patterns/stream",
            headers={**auth(keys["alpha"]), "Last-Event-ID": str(2**64)},
        )
        assert huge.status_code == 422 and huge.json()["kind"] == "usage"


async def test_stopping_the_gateway_ends_open_streams_at_once(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """A gateway asked to stop while a client listens ends the stream (the client sees its
    end) within about a second, instead of holding the stop until the grace period."""
    keys = make_keys(tmp_path / "keys.json")
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(timeout=30) as http:
        async with gateway(settings, tmp_path / "keys.json") as url:
            response = await http.send(
                http.build_request(
                    "GET", f"{url}/v1/namespaces/alpha/patterns/stream", headers=auth(keys["alpha"])
                ),
                stream=True,
            )
            assert response.status_code == 200
            lines = response.aiter_lines()
            assert (await anext(lines)).startswith("retry:")
            started = loop.time()
        stopped = loop.time() - started
        async with asyncio.timeout(5):
            rest = [line async for line in lines]
        await response.aclose()
    assert stopped < 2.0
    assert all(not line or line.startswith(":") for line in rest)


@pytest.mark.parametrize("header", ["\u00b2", "\u0663", "1" * 25, "-1", "1e3"])
def test_a_last_event_id_that_is_not_ascii_digits_is_a_422_not_a_crash(header: str) -> None:
    """'²' and Arabic-Indic digits pass str.isdigit() but are no stream sequence: refused with
    a usage problem (once an unhandled ValueError, a 500)."""
    from engram.http.problems import ProblemError
    from engram.http.sse import _resume_after

    with pytest.raises(ProblemError) as refused:
        _resume_after(header, None)
    assert refused.value.status == 422
    assert _resume_after("42", None) == 42

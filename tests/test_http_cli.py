"""The two ways to run the HTTP API, as processes the way a user starts them: ``engram http``
(a gateway of its own, beside an engine) and ``engram serve --http`` (the gateway inside the
engine's process). Each stores and finds a memory over HTTP and stops cleanly on SIGTERM; an
unusable keys file or address stops them before they serve (exit 2)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client as NatsClient

from engine.settings import Settings
from engine.stream import EventLog
from tests.cli_runs import ENGRAM, cli_env, engram
from tests.engines import running
from tests.http_gateway import auth, engine_serving, make_keys
from tests.servers import free_port

pytest.importorskip("fastapi")


@contextlib.asynccontextmanager
async def _process(*args: str, cwd: Path, url: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``engram ARGS`` running until the block ends (then SIGTERM: it must exit 0 within 15 s),
    once ``url``/healthz answers 200."""
    log = (cwd / "process.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        *ENGRAM, *args, cwd=cwd, env=cli_env(), stdout=log, stderr=log
    )
    try:
        async with asyncio.timeout(30), httpx.AsyncClient() as http:
            while True:
                assert proc.returncode is None, (cwd / "process.log").read_text()
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{url}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(15):
                code = await proc.wait()
        except TimeoutError:
            proc.kill()
            raise
        finally:
            log.close()
    assert code == 0, (cwd / "process.log").read_text()


async def _store_and_find(url: str, token: str) -> None:
    async with httpx.AsyncClient(base_url=url, headers=auth(token), timeout=15) as http:
        stored = await http.post(
            "/v1/namespaces/alpha/memory/store",
            json={
                "task_id": "c1",
                "execution_summary": "drained the capybara queue",
                "success": True,
            },
        )
        assert stored.status_code == 201, stored.text
        found = await http.post(
            "/v1/namespaces/alpha/memory/search",
            json={"text": "capybara queue", "min_sequence": stored.json()["sequence"]},
        )
        assert found.status_code == 200, found.text
        assert [hit["task_id"] for hit in found.json()["hits"]] == ["c1"]


async def test_engram_http_beside_an_engine(
    settings: Settings, nc: NatsClient, event_log: EventLog, tmp_path: Path
) -> None:
    """``engram http --listen --keys --nats-url --stream``, an engine running elsewhere: the
    seed's store then search (with min_sequence) finds it; SIGTERM: exit 0."""
    keys = make_keys(tmp_path / "keys.json")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["http", "--listen", f"127.0.0.1:{port}", "--keys", str(tmp_path / "keys.json")]
    args += ["--nats-url", str(settings.nats.url), "--stream", settings.stream.name]
    async with running(settings, nc, tmp_path / "engine") as engine:
        await engine_serving(engine)
        async with _process(*args, cwd=tmp_path, url=url):
            await _store_and_find(url, keys["alpha"])


async def test_engram_serve_with_http(
    settings: Settings, event_log: EventLog, tmp_path: Path
) -> None:
    """``engram serve --http ADDR --http-keys PATH``: the engine and the gateway in one
    process; store then search over HTTP; SIGTERM stops both (exit 0)."""
    keys = make_keys(tmp_path / "keys.json")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["serve", "--nats-url", str(settings.nats.url), "--stream", settings.stream.name]
    args += ["--data-dir", str(tmp_path / "data"), "--http", f"127.0.0.1:{port}"]
    args += ["--http-keys", str(tmp_path / "keys.json")]
    async with _process(*args, cwd=tmp_path, url=url):
        await _store_and_find(url, keys["alpha"])


async def test_unusable_keys_or_address_exit_2(settings: Settings, tmp_path: Path) -> None:
    """A missing keys file, a keys file others may write, or a malformed --listen: exit 2 with
    the reason, before anything is served."""
    make_keys(tmp_path / "keys.json")
    nats = ["--nats-url", str(settings.nats.url)]
    missing = await engram("http", "--keys", tmp_path / "nope.json", *nats, cwd=tmp_path)
    assert missing.code == 2 and "does not exist" in missing.err
    bad = await engram(
        "http", "--listen", "localhost", "--keys", tmp_path / "keys.json", *nats, cwd=tmp_path
    )
    assert bad.code == 2 and "HOST:PORT" in bad.err
    (tmp_path / "keys.json").chmod(0o666)
    loose = await engram("http", "--keys", tmp_path / "keys.json", *nats, cwd=tmp_path)
    assert loose.code == 2 and "writable by others" in loose.err

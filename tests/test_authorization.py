"""deploy/auth: a nats-server with an ``engine`` and an ``agent`` user, run as the example says.

The example's authorization file is included verbatim by a test server (free port, temporary
store). Agents store events and ask queries; they cannot publish what the engine derives nor
create, change, purge or delete the stream; the engine user runs a whole engine.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import StreamConfig
from pydantic import SecretStr

from engine import MemoryClient
from engine.events import MemoryRecalled, encode_event, make_event
from engine.events.registry import AGENT_TYPES, DERIVED_TYPES, subject_for
from engine.server import find_nats_server
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.signing import SIGNATURE_HEADER
from engine.stream import EventLog
from engine.stream.engine_key import BUCKET
from tests.engines import running, settle
from tests.servers import configured_server

AUTH = Path(__file__).resolve().parent.parent / "deploy" / "auth"
PASSWORDS = {"NATS_ENGINE_PASSWORD": "engine-secret", "NATS_AGENT_PASSWORD": "agent-secret"}
ENGINE_KEY = SecretStr("an engine key of at least thirty-two characters")
SHORT = 0.5
"""Seconds to wait for an answer a permission violation never brings."""


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), **PASSWORDS}


def _permissions(role: str, direction: str, rule: str) -> set[str]:
    """The subjects of ``ROLE = { direction: { rule: [...] } }`` in the example (comments cut)."""
    text = re.sub(r"#[^\n]*", "", (AUTH / "authorization.conf").read_text())
    role_block = text[text.index(f"{role} = {{") :]
    block = role_block[role_block.index(f"{direction}: {{") :]
    listing = block[block.index(f"{rule}: [") :]
    listing = listing[: listing.index("]")]
    return set(re.findall(r'"([^"]+)"', listing))


def test_the_example_follows_the_registry() -> None:
    """Agents are allowed every agent event subject and denied every derived one (the registry
    decides which are which), on v2 subjects (memory.<type>.<namespace>, any namespace) and
    v1 ones (memory.<type>, old clients), and both configs of deploy/auth parse."""
    allowed = _permissions("AGENT", "publish", "allow")
    denied = _permissions("AGENT", "publish", "deny")
    for namespace in ("*", None):
        assert {subject_for(t, namespace) for t in AGENT_TYPES} <= allowed
        assert {subject_for(t, namespace) for t in DERIVED_TYPES} <= denied
        assert not {subject_for(t, namespace) for t in DERIVED_TYPES} & allowed
    assert "memory.>" not in allowed
    listed = allowed | denied | _permissions("AGENT", "subscribe", "allow")
    known = {subject_for(t, ns) for t in (*AGENT_TYPES, *DERIVED_TYPES) for ns in ("*", None)}
    assert {s for s in listed if s.startswith("memory.")} <= known
    checked = subprocess.run(
        [str(find_nats_server()), "-c", str(AUTH / "nats-server.conf"), "-t"],
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


@pytest.fixture
def secured_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server that includes deploy/auth/authorization.conf as it is."""
    directory = tmp_path / "secured"
    directory.mkdir()
    shutil.copy(AUTH / "authorization.conf", directory / "authorization.conf")
    with configured_server(directory, 'include "authorization.conf"\n', env=_env()) as url:
        yield url


def _settings(url: str, user: str, data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        nats=NatsSettings(url=url, user=user, password=PASSWORDS[f"NATS_{user.upper()}_PASSWORD"]),
        stream=StreamSettings(),  # ENGRAM, the name the example's agent may look up
        engine_key=ENGINE_KEY if user == "engine" else None,
    )


@pytest.fixture
async def engine_nc(secured_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(
        secured_url, user="engine", password=PASSWORDS["NATS_ENGINE_PASSWORD"]
    )
    yield client
    await client.close()


@pytest.fixture
async def violations(secured_url: str) -> AsyncIterator[tuple[NatsClient, list[str]]]:
    """A plain nats-py client logged in as ``agent``, and the errors the server sent it."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    client = await nats.connect(
        secured_url,
        user="agent",
        password=PASSWORDS["NATS_AGENT_PASSWORD"],
        error_cb=on_error,
    )
    yield client, errors
    await client.close()


async def test_an_agent_stores_events_but_cannot_forge_nor_touch_the_stream(
    secured_url: str,
    engine_nc: NatsClient,
    violations: tuple[NatsClient, list[str]],
    tmp_path: Path,
) -> None:
    """As ``agent``: MemoryClient stores a workflow (on its v2 subject); publishing
    memory.pattern.learned (v2 or v1), and creating, updating, purging or deleting a stream,
    are permission violations that change nothing."""
    log = EventLog(engine_nc, StreamSettings())
    await log.ensure()
    agent_settings = _settings(secured_url, "agent", tmp_path / "a")
    async with MemoryClient(settings=agent_settings, ensure_stream=False) as memory:
        sequence = await memory.store_workflow(
            task_type="testing", workflow_steps=["plan", "code"], success=True, duration=1.0
        )
    assert sequence == 1

    agent, errors = violations
    js = agent.jetstream(timeout=SHORT)
    attempts = {
        "memory.pattern.learned": js.publish("memory.pattern.learned", b"{}"),
        "memory.pattern.learned.team-a": js.publish("memory.pattern.learned.team-a", b"{}"),
        "$js.api.stream.create.other": js.add_stream(StreamConfig(name="OTHER", subjects=["x"])),
        "$js.api.stream.update.engram": js.update_stream(
            StreamConfig(name="ENGRAM", subjects=["memory.>"], max_msgs=1)
        ),
        "$js.api.stream.purge.engram": js.purge_stream("ENGRAM"),
        "$js.api.stream.delete.engram": js.delete_stream("ENGRAM"),
    }
    for subject, attempt in attempts.items():
        with pytest.raises(TimeoutError):
            await attempt
        assert any(f'publish to "{subject}"' in e.lower() for e in errors), (subject, errors)
    info = await engine_nc.jetstream().stream_info("ENGRAM")
    assert (info.state.messages, info.config.max_msgs, info.config.subjects) == (
        1,
        -1,
        ["memory.>"],
    )
    assert [s.config.name for s in await engine_nc.jetstream().streams_info()] == ["ENGRAM"]


async def test_the_engine_user_runs_an_engine_agents_query_and_listen(
    secured_url: str,
    engine_nc: NatsClient,
    violations: tuple[NatsClient, list[str]],
    tmp_path: Path,
) -> None:
    """As ``engine`` (with ENGRAM_ENGINE_KEY) a whole engine runs: it creates the stream,
    projects what an agent stored, answers the agent's queries and announces a signed
    pattern.learned that the agent hears. The agent cannot read the engine's key bucket."""
    engine_settings = _settings(secured_url, "engine", tmp_path / "engine")
    agent_settings = _settings(secured_url, "agent", tmp_path / "agent")
    agent, errors = violations
    heard: list[Msg] = []

    async def on_learned(msg: Msg) -> None:
        heard.append(msg)

    async with running(engine_settings, engine_nc, engine_settings.data_dir) as engine:
        async with asyncio.timeout(10):
            while engine.key is None or not engine.runners:
                await asyncio.sleep(0.05)
        await agent.subscribe("memory.pattern.learned.*", cb=on_learned)
        async with MemoryClient(settings=agent_settings, ensure_stream=False) as memory:
            for _ in range(4):
                await memory.store_workflow(
                    task_type="testing", workflow_steps=["plan", "code"], success=True, duration=1
                )
            await memory.store_execution(
                task_id="t-1", execution_summary="deployed the service", success=True
            )
            await settle(engine)
            best = await memory.get_best_workflow_for_task("testing")
            hits = await memory.search_similar("deployed the service")
        await settle(engine)  # the usage event (memory.recalled) the search published
        key = engine.key
        assert key is not None
        metrics = engine.set.learner.read(lambda s: dict(s.announced))
    assert best is not None and best.workflow_steps == ["plan", "code"]
    assert hits and hits[0].task_id == "t-1"
    assert metrics  # the engine read its own announcements back: verified
    assert heard and all(key.genuine(m.data, dict(m.headers or {})) for m in heard)
    assert all(SIGNATURE_HEADER in (m.headers or {}) for m in heard)

    recalled = make_event(MemoryRecalled(memory_ids=[hits[0].id]))
    with pytest.raises(TimeoutError):
        await agent.jetstream(timeout=SHORT).key_value(BUCKET)
    with pytest.raises(TimeoutError):
        await agent.jetstream(timeout=SHORT).publish(
            "memory.memory.recalled", encode_event(recalled)
        )
    assert any("kv_engram_engine" in e.lower() for e in errors)
    assert any('"memory.memory.recalled"' in e.lower() for e in errors)

"""A tenant's agent may not ask for the stream's info (review of issue 12: it leaked every tenant).

``$JS.API.STREAM.INFO.<stream>`` was allowed to every agent, so that MemoryClient could look the
stream up; but ``stream_info(subjects_filter="memory.>")`` lists every subject the stream holds,
each naming its tenant, with counts. Now agents (engram auth's and deploy/auth's) are refused
stream info and the stream list, and MemoryClient (and ``engram publish``) treat that refusal as
"the stream is not ours to inspect": they go on, publish and query; with no stream capturing the
subject, the first append fails naming the stream.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from engine import MemoryClient
from engine.connection import connect
from engine.errors import PermissionDeniedError, PublishFailedError
from engine.settings import NatsSettings, Settings, StreamSettings
from engine.stream import EventLog
from engram.auth import plan_users
from engram.cli.auth_verbs import write_authorization
from engram.cli.main import main
from tests.engines import running, settle
from tests.servers import authorized_server, credentials

ENGINE_KEY = "an engine key of at least thirty-two characters"
QUICK = 2.0
"""Seconds within which a refusal is reported (the request timeout, 5 s, is well above it)."""
DEPLOY_AUTH = Path(__file__).resolve().parent.parent / "deploy" / "auth"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """engram auth's files for tenants alpha and beta."""
    out = tmp_path_factory.mktemp("stream-info-tenants")
    write_authorization(out, plan_users(["alpha", "beta"]))
    return out


@pytest.fixture
def url(generated: Path, tmp_path: Path) -> Iterator[str]:
    """A nats-server running the generated authorization.conf as it is."""
    with authorized_server(generated, tmp_path / "server") as found:
        yield found


def _settings(generated: Path, url: str, user: str, data_dir: Path) -> Settings:
    environ = credentials(generated, user)
    extra = {"ENGRAM_ENGINE_KEY": ENGINE_KEY} if user == "engine" else {}
    return Settings.load(
        {
            **environ,
            **extra,
            "ENGRAM_NATS__URL": url,
            "ENGRAM_NATS__REQUEST_TIMEOUT_S": "5",
            "ENGRAM_DATA_DIR": str(data_dir),
        }
    )


@pytest.fixture
async def engine_nc(generated: Path, url: str) -> AsyncIterator[NatsClient]:
    """The engine user's connection, with the stream created."""
    client = await connect(_settings(generated, url, "engine", Path("unused")).nats, url)
    await EventLog(client, StreamSettings()).ensure()
    yield client
    await client.close()


async def test_agent_alpha_is_refused_the_stream_info(
    generated: Path, url: str, engine_nc: NatsClient, tmp_path: Path
) -> None:
    """With beta's events in the stream, agent-alpha's ``stream_info("ENGRAM",
    subjects_filter="memory.>")`` and the stream list are permission violations (a plain
    client gets the -ERR, no answer), and EventLog.lookup raises PermissionDeniedError at once;
    the engine's own stream info lists beta's subject (what alpha would have seen)."""
    beta = _settings(generated, url, "agent-beta", tmp_path / "beta")
    async with MemoryClient(settings=beta, namespace="beta") as memory:
        await memory.store_execution(task_id="b-1", execution_summary="secret", success=True)
    info = await engine_nc.jetstream().stream_info("ENGRAM", subjects_filter="memory.>")
    assert info.state.subjects == {"memory.task.executed.beta": 1}

    alpha = _settings(generated, url, "agent-alpha", tmp_path / "alpha")
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc).lower())

    client = await nats.connect(
        url,
        user="agent-alpha",
        password=alpha.nats.password or "",
        inbox_prefix=alpha.nats.inbox_prefix,
        error_cb=on_error,
    )
    try:
        js = client.jetstream(timeout=QUICK)
        with pytest.raises(TimeoutError):
            await js.stream_info("ENGRAM", subjects_filter="memory.>")
        with pytest.raises(TimeoutError):
            await js.streams_info()
    finally:
        await client.close()
    for subject in ("$js.api.stream.info.engram", "$js.api.stream.list"):
        assert f'nats: permissions violation for publish to "{subject}"' in errors, errors

    sdk = await connect(alpha.nats, url)
    try:
        started = time.monotonic()
        with pytest.raises(PermissionDeniedError) as refused:
            await EventLog(sdk, alpha.stream).lookup()
        assert time.monotonic() - started < QUICK
        assert refused.value.subject == "$js.api.stream.info.engram"
    finally:
        await sdk.close()


async def test_memory_client_as_alpha_publishes_and_queries_without_the_stream_info(
    generated: Path,
    url: str,
    engine_nc: NatsClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """MemoryClient as agent-alpha (refused the stream's info) enters, stores two events
    (sequences 1 and 2) and, with an engine running as ``engine``, finds its execution by
    search; ``engram publish`` as agent-alpha stores one too."""
    engine_settings = _settings(generated, url, "engine", tmp_path / "engine")
    alpha = _settings(generated, url, "agent-alpha", tmp_path / "alpha")
    async with running(engine_settings, engine_nc, engine_settings.data_dir) as engine:
        async with asyncio.timeout(10):
            while engine.key is None or not engine.runners:
                await asyncio.sleep(0.05)
        async with MemoryClient(settings=alpha, namespace="alpha") as memory:
            first = await memory.store_execution(
                task_id="t-1", execution_summary="deployed the service", success=True
            )
            second = await memory.store_workflow(workflow_steps=["a"], success=True, duration=1)
            assert (first, second) == (1, 2)
            await settle(engine)
            hits = await memory.search_similar("deployed the service")
        assert [h.task_id for h in hits][:1] == ["t-1"]
    capsys.readouterr()
    with monkeypatch.context() as patched:
        patched.setattr("engram.cli.main.configure_logging", lambda **_: None)
        for key, value in _environ(generated, url, "agent-alpha").items():
            patched.setenv(key, value)
        argv = ["publish", "workflow.executed", "--namespace", "alpha", "--data"]
        data = '{"workflow_steps": ["a"], "success": true, "duration": 1}'
        code = await asyncio.to_thread(main, [*argv, data])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "stored workflow.executed" in printed.out
    info = await engine_nc.jetstream().stream_info("ENGRAM", subjects_filter="memory.>")
    assert info.state.subjects is not None
    assert info.state.subjects["memory.workflow.executed.alpha"] == 2


def _environ(generated: Path, url: str, user: str) -> dict[str, str]:
    return {**credentials(generated, user), "ENGRAM_NATS__URL": url}


async def test_without_a_stream_the_first_append_names_it(
    generated: Path, url: str, tmp_path: Path
) -> None:
    """No stream on the server: MemoryClient as agent-alpha still enters (it cannot tell), and
    its first append raises PublishFailedError naming the subject, the stream and how it is
    created, at once (no stream answers: not a timeout)."""
    alpha = _settings(generated, url, "agent-alpha", tmp_path / "alpha")
    async with MemoryClient(settings=alpha, namespace="alpha") as memory:
        started = time.monotonic()
        with pytest.raises(PublishFailedError) as failed:
            await memory.store_workflow(workflow_steps=["a"], success=True, duration=1)
        assert time.monotonic() - started < QUICK
    message = str(failed.value)
    assert "memory.workflow.executed.alpha" in message
    assert "stream ENGRAM" in message and "engram serve" in message


# -- deploy/auth's shared agent ---------------------------------------------------------------

PASSWORDS = {"NATS_ENGINE_PASSWORD": "engine-secret", "NATS_AGENT_PASSWORD": "agent-secret"}


@pytest.fixture
def deploy_auth_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server that includes deploy/auth/authorization.conf as it is."""
    env = {"PATH": os.environ.get("PATH", ""), **PASSWORDS}
    with authorized_server(DEPLOY_AUTH, tmp_path / "secured", env=env) as found:
        yield found


async def test_deploy_auth_agent_is_refused_the_stream_info_and_still_publishes(
    deploy_auth_url: str, tmp_path: Path
) -> None:
    """deploy/auth's ``agent``: ``stream_info`` is a permission violation, and MemoryClient as
    ``agent`` stores a workflow (sequence 1) anyway."""
    engine = await nats.connect(deploy_auth_url, user="engine", password="engine-secret")
    try:
        await EventLog(engine, StreamSettings()).ensure()
        agent = NatsSettings(url=deploy_auth_url, user="agent", password="agent-secret")
        sdk = await connect(agent, deploy_auth_url)
        try:
            with pytest.raises(PermissionDeniedError):
                await EventLog(sdk, StreamSettings()).lookup()
        finally:
            await sdk.close()
        settings = Settings(data_dir=tmp_path, nats=agent, stream=StreamSettings())
        async with MemoryClient(settings=settings) as memory:
            assert await memory.store_workflow(workflow_steps=["a"], success=True, duration=1) == 1
    finally:
        await engine.close()

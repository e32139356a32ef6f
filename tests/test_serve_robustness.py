"""``engram serve`` under attack, as a real subprocess on real nats-servers: it restarts the
embedded server it started when that dies, stops cleanly during an outage, and refuses a missing
engine key before it changes anything on the broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import BucketNotFoundError, NotFoundError

from engine.connection import connect
from engine.errors import EmbeddedServerError, EngramError
from engine.events import Event, WorkflowExecuted, make_event
from engine.server import RECORD_FILE, EmbeddedServer, read_server_record
from engine.settings import NatsSettings, StreamSettings
from engine.stream import EventLog
from engine.stream.engine_key import BUCKET
from engine.supervisor import RestartPolicy, ServerSupervisor, describe_exit
from tests.cli_runs import ENGRAM, cli_env, engram
from tests.servers import configured_server


def _workflow(task_type: str) -> Event:
    data = WorkflowExecuted(task_type=task_type, workflow_steps=["a"], success=True, duration=1)
    return make_event(data)


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


@asynccontextmanager
async def serving(*args: str | Path, cwd: Path) -> AsyncIterator[tuple[Any, Path]]:
    """``engram serve ARGS`` as a subprocess (its log in ``cwd/serve.log``), once its engine
    runs; SIGTERM and wait on the way out (the test reads ``returncode``)."""
    log_path = cwd / "serve.log"
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *ENGRAM, "serve", *map(str, args), cwd=cwd, env=cli_env(), stdout=log_file,
            stderr=log_file,
        )  # fmt: skip
    try:
        await _until(lambda: "engine running" in _text(log_path) or proc.returncode is not None)
        assert proc.returncode is None, _text(log_path)
        yield proc, log_path
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _until(condition: Any, timeout_s: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.1)


async def _append_until_stored(url: str, events: list[Event], timeout_s: float = 30.0) -> None:
    """Append ``events`` to ENGRAM at ``url``, retrying (same ids: stored once) until the
    stream answers: a restarted server may still be recovering it."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            nc = await connect(NatsSettings(), url)
            try:
                log = EventLog(nc, StreamSettings(), timeout_s=2.0)
                for event in events:
                    await log.append(event)
                return
            finally:
                await nc.close()
        except (EngramError, TimeoutError, OSError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


def _executions(reply: dict[str, Any]) -> int:
    return sum(int(m["total_executions"]) for m in reply["metrics"])


# -- 1. the embedded server is supervised ---------------------------------------------------


@pytest.mark.slow
async def test_serve_restarts_its_embedded_server_after_kill_9(tmp_path: Path) -> None:
    """kill -9 of the nats-server that ``engram serve`` started: serve logs it once with the
    exit status and starts it again on the same URL and store (server.json names the new pid);
    the engine reconnects and projects the events published before and after; status works."""
    data = tmp_path / "data"
    async with serving("--data-dir", data, cwd=tmp_path) as (proc, log_path):
        first = read_server_record(data / "nats")
        assert first is not None
        await _append_until_stored(first.url, [_workflow("before") for _ in range(3)])

        os.kill(first.pid, signal.SIGKILL)
        await _until(
            lambda: (r := read_server_record(data / "nats")) is not None and r.pid != first.pid,
            what="the embedded server to be restarted",
        )
        second = read_server_record(data / "nats")
        assert second is not None and second.url == first.url
        assert json.loads((data / "nats" / RECORD_FILE).read_text())["pid"] == second.pid
        await _append_until_stored(first.url, [_workflow("after") for _ in range(2)])

        counted = -1
        deadline = time.monotonic() + 40
        while counted != 5 and time.monotonic() < deadline:
            metrics = await engram("metrics", "--json", "--data-dir", data, cwd=tmp_path)
            if metrics.code == 0:
                counted = _executions(metrics.json())
            await asyncio.sleep(0.3)
        assert counted == 5, _text(log_path)
        status = await engram("status", "--json", "--data-dir", data, cwd=tmp_path)
        assert status.code == 0, status.err
        assert status.json()["engine"] == "running"
        assert proc.returncode is None
    assert proc.returncode == 0, _text(log_path)
    log_text = _text(log_path)
    assert log_text.count("embedded nats-server exited unexpectedly") == 1
    assert "killed by SIGKILL" in log_text
    assert not (data / "nats" / RECORD_FILE).exists()  # the restarted server was stopped too


@pytest.mark.slow
async def test_serve_exits_1_when_its_embedded_server_keeps_dying(tmp_path: Path) -> None:
    """A server killed again each time it comes back: after five deaths in a row soon after
    starting, serve stops the engine and exits 1 with one clear line (no traceback)."""
    data = tmp_path / "data"
    async with serving("--data-dir", data, cwd=tmp_path) as (proc, log_path):
        killed: set[int] = set()
        deadline = time.monotonic() + 60
        while proc.returncode is None and time.monotonic() < deadline:
            record = read_server_record(data / "nats")
            if record is not None and record.pid not in killed:
                os.kill(record.pid, signal.SIGKILL)
                killed.add(record.pid)
            await asyncio.sleep(0.05)
        assert proc.returncode == 1, _text(log_path)
    log_text = _text(log_path)
    assert len(killed) == RestartPolicy().max_quick_failures
    assert "engram: the embedded nats-server keeps dying (5 times in a row" in log_text
    assert "Traceback" not in log_text
    assert log_text.count("embedded nats-server exited unexpectedly") == 4


def test_restart_policy_backs_off_then_gives_up() -> None:
    """The first death is restarted at once, the next ones after 0.5, 1, 2 ... s (capped);
    the fifth in a row is not restarted."""
    policy = RestartPolicy(max_delay_s=1.5)
    assert [policy.delay(n) for n in range(1, 6)] == [0.0, 0.5, 1.0, 1.5, 1.5]
    assert [policy.gives_up(n) for n in range(1, 6)] == [False] * 4 + [True]
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(1) == "exit status 1"


async def test_supervisor_restarts_on_the_same_port_and_counts_quick_deaths(
    tmp_path: Path,
) -> None:
    """In process: a killed server comes back on the same URL with its store (the stream and
    its events are there); a server that ran longer than ``stable_s`` starts a new count; a
    second death soon after a restart, with max_quick_failures=2, raises EmbeddedServerError
    naming the exit and the log."""
    server = EmbeddedServer(tmp_path / "srv")
    url = server.start()
    clock = [0.0]
    supervisor = ServerSupervisor(
        server, RestartPolicy(stable_s=10.0, max_quick_failures=2), poll_s=0.02,
        clock=lambda: clock[0],
    )  # fmt: skip
    stop = asyncio.Event()
    task = asyncio.create_task(supervisor.run(stop))
    try:
        nc = await connect(NatsSettings(), url)
        await EventLog(nc, StreamSettings(name="KEPT")).ensure()
        await EventLog(nc, StreamSettings(name="KEPT")).append(_workflow("kept"))
        await nc.close()
        for restarts in (1, 2):
            pid = server.pid
            assert pid is not None
            clock[0] += 60.0  # it ran long enough: a fresh failure each time
            os.kill(pid, signal.SIGKILL)
            await _until(lambda n=restarts: supervisor.restarts == n, what="restart")
            assert server.url == url and server.pid != pid
            assert supervisor.quick_failures == 1
        nc = await connect(NatsSettings(), url)
        state = await EventLog(nc, StreamSettings(name="KEPT")).state()
        await nc.close()
        assert state.messages == 1
        assert (tmp_path / "srv" / "nats-server.log.1").exists()  # the dead server's log

        pid = server.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # at once after the restart: the second quick death
        with pytest.raises(EmbeddedServerError, match="keeps dying") as info:
            await asyncio.wait_for(task, 30)
        assert str(server.log_file) in str(info.value)
        assert "killed by SIGKILL" in str(info.value)
    finally:
        stop.set()
        if not task.done():
            await task
        server.stop()


# -- 2. a stop during an outage --------------------------------------------------------------


@pytest.mark.slow
async def test_sigterm_during_a_nats_outage_exits_0_promptly(tmp_path: Path) -> None:
    """SIGTERM to ``engram serve`` while its (given) NATS server is down: it closes instead of
    draining, leaves the announcer lease to expire instead of waiting to release it, and exits
    0 within a few seconds, without a traceback."""
    server = EmbeddedServer(tmp_path / "own-nats")
    url = server.start()
    try:
        async with serving("--nats-url", url, "--data-dir", tmp_path / "d", cwd=tmp_path) as (
            proc,
            log_path,
        ):
            # Holding the announcer lease, whose release would wait for the server.
            await _until(lambda: "announcer lease taken" in _text(log_path), what="the lease")
            server.stop()
            await _until(lambda: "NATS connection lost" in _text(log_path), what="the outage")
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
            elapsed = time.monotonic() - started
    finally:
        server.stop()
    log_text = _text(log_path)
    assert proc.returncode == 0, log_text
    assert elapsed < 4.0, (elapsed, log_text)
    assert "Traceback" not in log_text
    assert "engram stopped" in log_text


# -- 3. preconditions before any change ------------------------------------------------------


@pytest.fixture
def password_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server with JetStream that asks for user ``u`` / password ``p``."""
    config = 'authorization { user: "u", password: "p" }\n'
    with configured_server(tmp_path / "secured", config) as url:
        yield url


async def test_serve_refuses_a_missing_engine_key_before_creating_anything(
    password_url: str, tmp_path: Path
) -> None:
    """With credentials and no ENGRAM_ENGINE_KEY, serve exits 2 asking for the key, and the
    broker is as before: no stream, no key bucket, and no "stream created" in its log."""
    run = await engram(
        "serve",
        "--nats-url",
        password_url,
        "--nats-user",
        "u",
        "--nats-password",
        "p",
        "--data-dir",
        tmp_path / "d",
        cwd=tmp_path,
    )
    assert run.code == 2, run.err
    assert "ENGRAM_ENGINE_KEY" in run.err
    assert "stream created" not in run.err
    nc = await connect(NatsSettings(user="u", password="p"), password_url)
    try:
        js = nc.jetstream()
        with pytest.raises(NotFoundError):
            await js.stream_info("ENGRAM")
        with pytest.raises(BucketNotFoundError):
            await js.key_value(BUCKET)
        assert await js.streams_info() == []
    finally:
        await nc.close()

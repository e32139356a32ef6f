"""Real nats-servers with a configuration of a test's own (authorization, for example)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from engine.server import find_nats_server

__all__ = ["authorized_server", "configured_server", "credentials", "free_port"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server that must keep its port
    across a restart)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def configured_server(
    directory: Path, config: str, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """A nats-server with JetStream on a free loopback port under ``directory``, whose config
    is the port and store lines followed by ``config`` (it may ``include`` files placed in
    ``directory``); yields its URL and terminates it afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "server.conf"
    path.write_text(
        'listen: "127.0.0.1:-1"\n'
        f'ports_file_dir: "{directory}"\n'
        f'jetstream {{ store_dir: "{directory / "js"}" }}\n' + config
    )
    log = directory / "nats-server.log"
    process = subprocess.Popen(
        [str(find_nats_server()), "-c", str(path), "-l", str(log)],
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ports = directory / f"nats-server_{process.pid}.ports"
        deadline = time.monotonic() + 15
        while not (ports.exists() and "Server is ready" in _text(log)):
            assert process.poll() is None, _text(log)
            assert time.monotonic() < deadline, "the configured nats-server did not start"
            time.sleep(0.02)
        yield str(json.loads(ports.read_text())["nats"][0])
    finally:
        process.terminate()
        process.wait(timeout=10)


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def authorized_server(
    source: Path, directory: Path, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """A nats-server whose config includes ``source/authorization.conf`` as it is (``engram
    auth``'s output, or a deploy/ example), run under ``directory``; yields its URL."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "authorization.conf", directory / "authorization.conf")
    with configured_server(directory, 'include "authorization.conf"\n', env=env) as url:
        yield url


def credentials(out: Path, user: str) -> dict[str, str]:
    """The credentials file ``engram auth`` wrote under ``out`` for ``user``, as an environment."""
    text = (out / "credentials" / f"{user}.env").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if line and line[0] != "#")

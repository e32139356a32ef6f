"""Keeping the embedded nats-server of ``engram serve`` alive: restart it when it dies.

A server that exits without being asked to (killed, crashed, out of memory) is started again
on the same port and store, so the engine's persistent connection finds it where it was and
its projections resume from their checkpoints. Each death is logged once with its exit status.
A server that keeps dying soon after each start is restarted with growing pauses, and after
``max_quick_failures`` in a row the supervisor gives up with EmbeddedServerError, so that
``engram serve`` exits non-zero and its own supervisor (systemd, Kubernetes ...) sees it.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from engine.backoff import retry_delay, wait_or_stop
from engine.errors import EmbeddedServerError
from engine.server import EmbeddedServer, start_lock

__all__ = ["RestartPolicy", "ServerSupervisor", "describe_exit"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """When to restart a dead server, and when to give up.

    A death within ``stable_s`` of the server's start (or a restart that fails) is a quick
    failure; a server that ran longer starts a new count. The first quick failure is restarted
    at once, the next ones after ``base_delay_s``, doubling up to ``max_delay_s``; the
    ``max_quick_failures``-th in a row is not restarted.
    """

    stable_s: float = 30.0
    max_quick_failures: int = 5
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0

    def delay(self, quick_failures: int) -> float:
        """Seconds to wait before restarting after ``quick_failures`` (1-based) in a row."""
        if quick_failures <= 1:
            return 0.0
        return retry_delay(quick_failures - 1, self.base_delay_s, self.max_delay_s)

    def gives_up(self, quick_failures: int) -> bool:
        return quick_failures >= self.max_quick_failures


def describe_exit(status: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL`` (a Popen return code, negative for signals)."""
    if status >= 0:
        return f"exit status {status}"
    try:
        return f"killed by {signal.Signals(-status).name}"
    except ValueError:
        return f"killed by signal {-status}"


class ServerSupervisor:
    """Watches one started EmbeddedServer (``run``) and restarts it when it dies by itself."""

    def __init__(
        self,
        server: EmbeddedServer,
        policy: RestartPolicy | None = None,
        *,
        poll_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.server = server
        self.policy = policy or RestartPolicy()
        self.poll_s = poll_s
        self._clock = clock
        self.restarts = 0
        """Successful restarts so far."""
        self.quick_failures = 0
        self._started_at = clock()

    async def _pause(self, stop: asyncio.Event, seconds: float) -> None:
        await wait_or_stop(stop, seconds)

    def _restart(self) -> str:
        # Under the start lock, as every command that may start a server on this directory.
        with start_lock(self.server.server_dir):
            return self.server.restart()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set. Raises EmbeddedServerError when the server died
        ``max_quick_failures`` times in a row soon after starting (or could not be started)."""
        while not stop.is_set():
            await self._pause(stop, self.poll_s)
            status = self.server.exit_status()
            if status is None or stop.is_set():
                continue
            ran_s = self._clock() - self._started_at
            self.quick_failures = self.quick_failures + 1 if ran_s < self.policy.stable_s else 1
            reason = describe_exit(status)
            while True:
                if self.policy.gives_up(self.quick_failures):
                    raise EmbeddedServerError(
                        f"the embedded nats-server keeps dying ({self.quick_failures} times in "
                        f"a row within {self.policy.stable_s:.0f} s of starting; last: "
                        f"{reason}): giving up; see {self.server.log_file}"
                    )
                delay = self.policy.delay(self.quick_failures)
                log.error(
                    "embedded nats-server exited unexpectedly; restarting it",
                    reason=reason,
                    pid=self.server.pid,
                    ran_s=round(ran_s, 1),
                    restart_in_s=delay,
                    failures_in_a_row=self.quick_failures,
                )
                await self._pause(stop, delay)
                if stop.is_set():
                    return
                try:
                    url = await asyncio.to_thread(self._restart)
                except EmbeddedServerError as exc:
                    self.quick_failures += 1
                    reason, ran_s = f"restart failed: {exc}", 0.0
                    continue
                break
            self._started_at = self._clock()
            self.restarts += 1
            log.warning(
                "embedded nats-server restarted; the engine reconnects and catches up",
                url=url,
                pid=self.server.pid,
                restarts=self.restarts,
            )

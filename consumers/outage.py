"""Watching the engine's NATS connection: an outage is logged once when it begins and once when
it ends, with its duration, and the runners wait for the connection instead of failing in a loop.

The watch polls the client's own state (``is_connected`` and its reconnect count), so it works
with any nats-py client whoever connected it. The reconnecting itself is nats-py's, with the
persistent policy of ``engine.connection.connect(..., persistent=True)``: forever, with backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog
from nats.aio.client import Client as NatsClient

from engine.backoff import wait_or_stop

__all__ = ["ConnectionWatch"]

log = structlog.get_logger(__name__)


class ConnectionWatch:
    """Follows one NATS connection (``run``) and answers whether it is usable (``is_up``).

    ``settling`` is True while the connection is down and for ``grace_s`` after it came back:
    errors then are echoes of the outage (JetStream recovering its streams, requests sent
    before the cut), which the runners retry quietly instead of logging each one.
    """

    def __init__(
        self,
        nc: NatsClient,
        *,
        poll_s: float = 0.1,
        grace_s: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nc = nc
        self.poll_s = poll_s
        self.grace_s = grace_s
        self._clock = clock
        self.down_since: float | None = None
        """When the current outage began (the clock's time), or None while connected."""
        self.restored_at: float | None = None
        self.outages = 0
        self.last_outage_s: float | None = None
        self._reconnects = self._reconnect_count()

    def _reconnect_count(self) -> int:
        return int(self._nc.stats.get("reconnects", 0))

    def is_up(self) -> bool:
        return bool(self._nc.is_connected)

    def settling(self) -> bool:
        if not self.is_up() or self.down_since is not None:
            return True
        return self.restored_at is not None and self._clock() - self.restored_at < self.grace_s

    async def wait_up(self, stop: asyncio.Event) -> None:
        """Return once the connection is usable again (at once if it is), or when ``stop``."""
        while not self.is_up() and not stop.is_set():
            await wait_or_stop(stop, self.poll_s)

    def check(self) -> None:
        """Note a change of state since the last call and log it (one line each way)."""
        now = self._clock()
        reconnects = self._reconnect_count()
        if not self.is_up():
            if self.down_since is None:
                self.down_since = now
                log.warning("NATS connection lost; reconnecting until it is back")
            return
        if self.down_since is None and reconnects == self._reconnects:
            return
        # Back (or a reconnect too brief for a poll to see the connection down).
        began = self.down_since if self.down_since is not None else now
        self.down_since = None
        self._reconnects = reconnects
        self.restored_at = now
        self.outages += 1
        self.last_outage_s = now - began
        log.warning(
            "NATS connection restored; projections resume from their checkpoints",
            outage_s=round(self.last_outage_s, 1),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``."""
        while not stop.is_set():
            self.check()
            await wait_or_stop(stop, self.poll_s)
